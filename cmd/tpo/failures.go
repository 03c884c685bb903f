package main

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// maxReasons is how many different errors a failure summary lists.
const maxReasons = 5

// failureTally groups the errors of failed items by reason, so that a run
// whose 805 items all failed for the same reason says it once.
type failureTally struct {
	data    string // the dataset path: "DATA:LINE: " prefixes are locations, not reasons
	n       int
	reasons map[string]*reason
}

// reason is one distinct error and where it happened.
type reason struct {
	text  string // the first error's text, or its shape once others differed
	n     int
	where []place // the items or dataset lines
	lines bool    // where holds dataset lines
	first int     // the first item's position in the input, for ties
}

// place is where a reason happened: an item id or a dataset line, and its
// position in the input.
type place struct {
	seq  int
	name string
}

// maxWhere is how many items or lines of one reason are listed.
const maxWhere = 3

// add records that item id, at position seq of the input, failed with
// the error text err.
func (t *failureTally) add(seq int, id, err string) {
	if t.reasons == nil {
		t.reasons = map[string]*reason{}
	}
	text, where, lines := t.normalize(id, err)
	key := shape(text)
	r := t.reasons[key]
	if r == nil {
		r = &reason{text: text, lines: lines, first: seq}
		t.reasons[key] = r
	} else if r.text != text {
		r.text = key
	}
	r.first = min(r.first, seq)
	t.n++
	r.n++
	r.where = append(r.where, place{seq, where})
}

var locationRE = regexp.MustCompile(`^(.*?):(\d+): `)

// countRE finds the numbers in an error that say which step or response
// failed, or how long a text was: they differ from item to item when the
// cause is the same.
var countRE = regexp.MustCompile(`\b(step|steps|response|responses|to) \d+\b|\b\d+ tokens\b`)

// shape is an error's text with its step and response numbers and token
// counts replaced by #, so that one cause met at different responses is
// one reason: "tokenizing response #: ... 404 Not Found". Other numbers
// (HTTP statuses, limits) stay: they tell causes apart.
func shape(text string) string {
	return countRE.ReplaceAllStringFunc(text, func(m string) string {
		if w, _, ok := strings.Cut(m, " "); ok && w != "" && (w[0] < '0' || w[0] > '9') {
			return w + " #"
		}
		return "# tokens"
	})
}

// normalize splits an item's error into its reason and where it happened:
// a dataset error "data.jsonl:17: field ..." is the reason
// "data.jsonl: field ..." at line 17, and the item's own id is left out
// of the reason.
func (t *failureTally) normalize(id, err string) (text, where string, lines bool) {
	if m := locationRE.FindStringSubmatch(err); m != nil && t.data != "" && m[1] == t.data {
		return m[1] + ": " + err[len(m[0]):], m[2], true
	}
	return strings.TrimPrefix(err, "item "+strconv.Quote(id)+": "), id, false
}

// describe says why items failed, as a headline ("5 of 805 items
// failed") with a note and indented lines under it: the single error when
// they all failed with the same one, else the most common errors first, at
// most max of them, with counts and a few of the items each.
func (t *failureTally) describe(headline, hint string, max int) string {
	if t.n == 0 {
		return ""
	}
	rs := make([]*reason, 0, len(t.reasons))
	for _, r := range t.reasons {
		rs = append(rs, r)
	}
	var b strings.Builder
	b.WriteString(headline)
	if len(rs) == 1 && t.n > 1 {
		b.WriteString(", all with the same error")
	}
	b.WriteString(hint)
	if len(rs) == 1 {
		r := rs[0]
		b.WriteString("\n  " + r.text)
		if t.n == 1 {
			b.WriteString(r.whereText())
		}
		return b.String()
	}
	slices.SortFunc(rs, func(a, b *reason) int {
		return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.first, b.first))
	})
	for i, r := range rs {
		if i == max {
			rest := 0
			for _, r := range rs[max:] {
				rest += r.n
			}
			fmt.Fprintf(&b, "\n  and %s with %s (see the error field of the results)",
				plural(rest, "item", "items"), plural(len(rs)-max, "other error", "other errors"))
			break
		}
		fmt.Fprintf(&b, "\n  %s: %s%s", plural(r.n, "item", "items"), r.text, r.whereText())
	}
	return b.String()
}

// whereText lists the first items or lines of a reason: " (items a, b, c
// and 12 more)".
func (r *reason) whereText() string {
	slices.SortFunc(r.where, func(a, b place) int { return cmp.Compare(a.seq, b.seq) })
	var listed []string
	for _, p := range r.where[:min(len(r.where), maxWhere)] {
		listed = append(listed, p.name)
	}
	list := strings.Join(listed, ", ")
	if more := r.n - len(listed); more > 0 {
		list += fmt.Sprintf(" and %d more", more)
	}
	noun := "item"
	if r.lines {
		noun = "line"
	}
	if r.n > 1 {
		noun += "s"
	}
	return " (" + noun + " " + list + ")"
}
