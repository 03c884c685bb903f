// Package guard protects tpo's HTTP servers (tpo serve, tpo ui) from
// requests they should not serve and from clients that hold their
// resources: requests for a host name the server does not answer to (a page
// of another site reaching it through DNS rebinding), clients that stop
// reading their responses, and clients that trickle their request bodies.
package guard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// Hosts is the set of host names a server answers to, matched against the
// Host header of each request. A page of another site that reaches the
// server through DNS rebinding sends its own host name, so it is refused.
type Hosts struct {
	any      bool
	names    map[string]bool // lower case, no trailing dot, no brackets
	addrs    map[netip.Addr]bool
	suffixes []string // ".example.com" for "*.example.com"
	patterns []string
}

// ParseHosts reads host patterns: a host name or IP address ("gpu-box",
// "10.0.0.5", "::1" or "[::1]"), "*.example.com" (every name under
// example.com, not example.com itself), or "*" (every host: no check). Names
// are compared without regard to case or a trailing dot; ports are not part
// of a pattern.
func ParseHosts(patterns []string) (*Hosts, error) {
	h := &Hosts{names: map[string]bool{}, addrs: map[netip.Addr]bool{}}
	for _, p := range patterns {
		if err := h.add(p); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *Hosts) add(p string) error {
	orig := p
	p = strings.TrimSpace(p)
	if p == "*" {
		h.any = true
		h.patterns = append(h.patterns, p)
		return nil
	}
	if a, ok := parseAddr(p); ok {
		h.addrs[a] = true
		h.patterns = append(h.patterns, a.String())
		return nil
	}
	name := normalName(p)
	wild := strings.HasPrefix(name, "*.")
	if wild {
		name = name[2:]
	}
	if err := checkName(name); err != nil {
		return fmt.Errorf("host pattern %q: %w", orig, err)
	}
	if wild {
		h.suffixes = append(h.suffixes, "."+name)
		h.patterns = append(h.patterns, "*."+name)
		return nil
	}
	h.names[name] = true
	h.patterns = append(h.patterns, name)
	return nil
}

// checkName accepts the characters of DNS names (and of the underscores
// some internal names have); it refuses ports, paths and empty labels.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty host name")
	}
	if strings.Contains(name, "://") {
		return errors.New("want a host name, not a URL")
	}
	if strings.Contains(name, ":") {
		return errors.New("want a host name or address without a port")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return errors.New("empty label in host name")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("character %q is not allowed in a host name (want a name like gpu-box.example.com, *.example.com, an IP address or *)", r)
			}
		}
	}
	return nil
}

// parseAddr reads an IP address, bracketed or not, without a zone.
func parseAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

func normalName(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// Allows reports whether host, the Host header of a request (with or
// without a port), is in the set. A request without a Host (HTTP/1.0) is
// allowed: browsers always send one.
func (h *Hosts) Allows(host string) bool {
	if h == nil || h.any || host == "" {
		return true
	}
	if hp, _, err := net.SplitHostPort(host); err == nil {
		host = hp
	}
	if a, ok := parseAddr(host); ok {
		return h.addrs[a]
	}
	name := normalName(host)
	if h.names[name] {
		return true
	}
	for _, s := range h.suffixes {
		if strings.HasSuffix(name, s) && len(name) > len(s) {
			return true
		}
	}
	return false
}

// Any reports whether the set allows every host.
func (h *Hosts) Any() bool { return h == nil || h.any }

// String lists the patterns, comma-separated.
func (h *Hosts) String() string {
	if h == nil {
		return "*"
	}
	return strings.Join(h.patterns, ", ")
}

// LoopbackHosts are the names of the local machine as seen from itself.
var LoopbackHosts = []string{"localhost", "*.localhost", "127.0.0.1", "::1"}

// DefaultHosts returns the hosts a server listening on addr (host:port)
// answers to by default: the loopback names and the listen host; when the
// listen host is a wildcard (":8080", "0.0.0.0:8080", "[::]:8080"), the
// machine's host name and the addresses of its network interfaces.
func DefaultHosts(addr string) []string {
	out := slices.Clone(LoopbackHosts)
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	a, isAddr := parseAddr(host)
	if host != "" && !(isAddr && a.IsUnspecified()) {
		return appendNew(out, host)
	}
	if name, err := os.Hostname(); err == nil && checkName(normalName(name)) == nil {
		out = appendNew(out, normalName(name))
	}
	ifaddrs, _ := net.InterfaceAddrs()
	for _, ia := range ifaddrs {
		if pfx, err := netip.ParsePrefix(ia.String()); err == nil && !pfx.Addr().IsLinkLocalUnicast() {
			out = appendNew(out, pfx.Addr().WithZone("").Unmap().String())
		}
	}
	return out
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
