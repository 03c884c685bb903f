package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tpoproject/tpo/httpx"
)

// retryCounts counts the retried requests of a command by server and
// reason, for one summary line at the end instead of a warning each.
type retryCounts struct {
	mu sync.Mutex
	by map[retryKey]int
}

type retryKey struct{ name, url, reason string }

// ObserveRetry implements httpx.RetryObserver.
func (c *retryCounts) ObserveRetry(r httpx.Retry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.by == nil {
		c.by = map[retryKey]int{}
	}
	c.by[retryKey{r.Name, r.URL, r.Reason}]++
}

// summary is "retries: policy 12 (429: 9, 503: 3); reward 2 (connection
// error: 2)", most retried server first, or "" when nothing was retried.
// A server with several replicas that were retried is named with each
// replica's URL.
func (c *retryCounts) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.by) == 0 {
		return ""
	}
	urls := map[string]map[string]bool{}
	for k := range c.by {
		if urls[k.name] == nil {
			urls[k.name] = map[string]bool{}
		}
		urls[k.name][k.url] = true
	}
	type server struct {
		label   string
		total   int
		reasons map[string]int
	}
	servers := map[string]*server{}
	for k, n := range c.by {
		label := k.name
		if len(urls[k.name]) > 1 {
			label += " " + k.url
		}
		s := servers[label]
		if s == nil {
			s = &server{label: label, reasons: map[string]int{}}
			servers[label] = s
		}
		s.total += n
		s.reasons[k.reason] += n
	}
	list := make([]*server, 0, len(servers))
	for _, s := range servers {
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b *server) int {
		return cmp.Or(cmp.Compare(b.total, a.total), cmp.Compare(a.label, b.label))
	})
	parts := make([]string, len(list))
	for i, s := range list {
		parts[i] = fmt.Sprintf("%s %d (%s)", s.label, s.total, countsText(s.reasons))
	}
	return "retries: " + strings.Join(parts, "; ")
}

// countsText is "429: 9, 503: 3": most frequent first, ties by name.
func countsText(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
