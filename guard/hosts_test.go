package guard

import (
	"slices"
	"strings"
	"testing"
)

func TestHostsAllows(t *testing.T) {
	h, err := ParseHosts([]string{"localhost", "*.localhost", "127.0.0.1", "[::1]", "GPU-Box.Example.com.", "*.lab.example"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"localhost:8080", true},
		{"LOCALHOST.:8080", true},
		{"app.localhost:8080", true},
		{"127.0.0.1:8080", true},
		{"127.0.0.1", true},
		{"[::1]:8080", true},
		{"[::1]", true},
		{"[::ffff:127.0.0.1]:80", true}, // the same address, IPv4-mapped
		{"gpu-box.example.com", true},
		{"gpu-box.example.com:443", true},
		{"a.b.lab.example", true},
		{"", true}, // HTTP/1.0 without Host: not a browser
		{"lab.example", false},
		{"evil.example:8080", false},
		{"localhost.evil.example", false},
		{"evil-localhost", false},
		{"127.0.0.2:8080", false},
		{"10.0.0.5", false},
		{"[::2]:80", false},
		{"gpu-box", false},
		{"gpu-box.example.com.evil.example", false},
	}
	for _, tt := range tests {
		if got := h.Allows(tt.host); got != tt.want {
			t.Errorf("Allows(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	if want := "localhost, *.localhost, 127.0.0.1, ::1, gpu-box.example.com, *.lab.example"; h.String() != want {
		t.Errorf("String() = %q, want %q", h.String(), want)
	}
	var none *Hosts
	if !none.Allows("anything") || !none.Any() {
		t.Error("a nil Hosts refuses a host")
	}
	all, _ := ParseHosts([]string{"*"})
	if !all.Allows("evil.example") || !all.Any() {
		t.Error("* refuses a host")
	}
}

func TestParseHostsErrors(t *testing.T) {
	for _, p := range []string{"", "gpu-box:8080", "http://gpu-box", "a..b", "*.", "gpu box", "a/b", "*x"} {
		if _, err := ParseHosts([]string{p}); err == nil {
			t.Errorf("ParseHosts(%q) accepted it", p)
		} else if !strings.Contains(err.Error(), "host pattern") {
			t.Errorf("ParseHosts(%q): error %q does not say what is wrong", p, err)
		}
	}
}

func TestDefaultHosts(t *testing.T) {
	tests := []struct {
		addr string
		want []string // among the hosts
		not  []string
	}{
		{"127.0.0.1:8080", []string{"localhost", "127.0.0.1", "::1"}, []string{"0.0.0.0"}},
		{"10.1.2.3:80", []string{"localhost", "10.1.2.3"}, nil},
		{"gpu-box:80", []string{"gpu-box", "localhost"}, nil},
		{"[::1]:80", []string{"::1", "localhost"}, nil},
		{":8080", []string{"localhost", "127.0.0.1"}, []string{"", "0.0.0.0", "::"}},
		{"0.0.0.0:8080", []string{"localhost"}, []string{"0.0.0.0"}},
	}
	for _, tt := range tests {
		got := DefaultHosts(tt.addr)
		for _, w := range tt.want {
			if !slices.Contains(got, w) {
				t.Errorf("DefaultHosts(%q) = %v, lacks %q", tt.addr, got, w)
			}
		}
		for _, n := range tt.not {
			if slices.Contains(got, n) {
				t.Errorf("DefaultHosts(%q) = %v, has %q", tt.addr, got, n)
			}
		}
		if _, err := ParseHosts(got); err != nil {
			t.Errorf("DefaultHosts(%q) = %v: %v", tt.addr, got, err)
		}
	}
}

// FuzzHosts checks that a pattern that parses allows itself, with and
// without a port, and that nothing panics.
func FuzzHosts(f *testing.F) {
	for _, s := range []string{"localhost", "*.example.com", "::1", "[::1]", "10.0.0.1", "*", "a_b.c", "x:1", "ünï"} {
		f.Add(s, s+":80")
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		h, err := ParseHosts([]string{pattern})
		_ = (*Hosts)(nil).Allows(host)
		if err != nil {
			return
		}
		h.Allows(host)
		p := strings.TrimSpace(pattern)
		if strings.HasPrefix(p, "*.") {
			p = "x" + p[1:]
		}
		if !h.Allows(p) {
			t.Errorf("pattern %q does not allow %q", pattern, p)
		}
		if a, ok := parseAddr(p); ok && a.Is6() {
			p = "[" + a.String() + "]"
		}
		if !h.Allows(p + ":8080") {
			t.Errorf("pattern %q does not allow %q", pattern, p+":8080")
		}
	})
}
