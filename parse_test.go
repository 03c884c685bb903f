package tpo_test

import (
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tpoproject/tpo"
)

func mathNaN() float64 { return math.NaN() }

func TestParseImproved(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"<improved_response>hi</improved_response>", "hi", true},
		{"  <improved_response>\n  hi there \n</improved_response>\n", "hi there", true},
		{"Sure! <IMPROVED_RESPONSE>x</Improved_Response> done", "x", true},
		{"< improved_response >x</ improved_response >", "x", true},
		{"<improved_response>cut off at the end", "cut off at the end", true},
		{"<improved_response>first</improved_response> and <improved_response>second</improved_response>", "second", true},
		{"<improved_response>kept</improved_response><improved_response>  </improved_response>", "kept", true},
		{"<improved_response>broken <improved_response>good</improved_response>", "good", true},
		{"no tags", "", false},
		{"<improved_response></improved_response>", "", false},
		{"<improved_response>   ", "", false},
		{"</improved_response>text", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := tpo.ParseImproved(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseImproved(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func FuzzParseImproved(f *testing.F) {
	for _, s := range []string{"<improved_response>a</improved_response>", "<improved_response>", "< /improved_response>", "<<improved_response>>x", "\xff<improved_response>\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := tpo.ParseImproved(s)
		if ok && (got == "" || strings.TrimSpace(got) != got) {
			t.Errorf("ParseImproved(%q) = %q, true: want non-empty trimmed text", s, got)
		}
		if !ok && got != "" {
			t.Errorf("ParseImproved(%q) = %q, false", s, got)
		}
		if ok && !strings.Contains(s, got) {
			t.Errorf("ParseImproved(%q) = %q: not a substring of the input", s, got)
		}
	})
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"short", 100, "short"},
		{"short", 0, "short"},
		{strings.Repeat("a", 50), 30, strings.Repeat("a", 14) + "\n[... truncated]"},
		{"one two three four five six seven eight nine ten", 40, "one two three four five\n[... truncated]"},
	}
	for _, tt := range tests {
		if got := tpo.Truncate(tt.in, tt.max); got != tt.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func FuzzTruncate(f *testing.F) {
	f.Add("héllo wörld ünïcode", 10)
	f.Add(strings.Repeat("日本語", 20), 17)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max > 1<<20 || max < -10 {
			return
		}
		got := tpo.Truncate(s, max)
		if max <= 0 || len(s) <= max {
			if got != s {
				t.Errorf("Truncate(%q, %d) changed a text within budget: %q", s, max, got)
			}
			return
		}
		if max >= 32 && len(got) > max {
			t.Errorf("Truncate(%q, %d) = %d bytes, over budget", s, max, len(got))
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Errorf("Truncate split a UTF-8 sequence: %q", got)
		}
	})
}

func TestRenderQuery(t *testing.T) {
	single := []tpo.Message{{Role: "user", Content: "hi"}}
	if got := tpo.RenderQuery(single); got != "hi" {
		t.Errorf("single turn: got %q", got)
	}
	multi := []tpo.Message{{Role: "system", Content: "be kind"}, {Role: "user", Content: "a"}, {Role: "assistant", Content: "b"}, {Role: "user", Content: "c"}}
	want := "[System]\nbe kind\n\n[User]\na\n\n[Assistant]\nb\n\n[User]\nc"
	if got := tpo.RenderQuery(multi); got != want {
		t.Errorf("multi turn: got %q, want %q", got, want)
	}
}
