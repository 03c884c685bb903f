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
		in           string
		want         string
		wantUnclosed bool
		wantOK       bool
	}{
		{"<improved_response>hi</improved_response>", "hi", false, true},
		{"  <improved_response>\n  hi there \n</improved_response>\n", "hi there", false, true},
		{"Sure! <IMPROVED_RESPONSE>x</Improved_Response> done", "x", false, true},
		{"< improved_response >x</ improved_response >", "x", false, true},
		{"<improved_response>cut off at the end", "cut off at the end", true, true},
		{"<improved_response>first</improved_response> and <improved_response>second</improved_response>", "second", false, true},
		{"<improved_response>kept</improved_response><improved_response>  </improved_response>", "kept", false, true},
		{"<improved_response>broken <improved_response>good</improved_response>", "good", false, true},
		// What small instruct models write after the block is never the answer.
		{"<improved_response>\nThe answer.\n</improved_response>\n\nI put the answer inside <improved_response> tags.", "The answer.", false, true},
		{"<improved_response>A</improved_response>\nNote: <improved_response>B", "A", false, true},
		{"Here it is: <improved_response>only an opening tag\nand more", "only an opening tag\nand more", true, true},
		{"<improved_response></improved_response> then <improved_response>rest", "rest", true, true},
		{"no tags", "", false, false},
		{"<improved_response></improved_response>", "", false, false},
		{"<improved_response>   ", "", false, false},
		{"</improved_response>text", "", false, false},
		{"", "", false, false},
	}
	for _, tt := range tests {
		got, unclosed, ok := tpo.ParseImproved(tt.in)
		if got != tt.want || unclosed != tt.wantUnclosed || ok != tt.wantOK {
			t.Errorf("ParseImproved(%q) = %q, %v, %v; want %q, %v, %v", tt.in, got, unclosed, ok, tt.want, tt.wantUnclosed, tt.wantOK)
		}
	}
}

func FuzzParseImproved(f *testing.F) {
	for _, s := range []string{"<improved_response>a</improved_response>", "<improved_response>", "< /improved_response>", "<<improved_response>>x", "\xff<improved_response>\xfe",
		"<improved_response>a</improved_response> see <improved_response> tags"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, unclosed, ok := tpo.ParseImproved(s)
		if ok && (got == "" || strings.TrimSpace(got) != got) {
			t.Errorf("ParseImproved(%q) = %q, true: want non-empty trimmed text", s, got)
		}
		if !ok && (got != "" || unclosed) {
			t.Errorf("ParseImproved(%q) = %q, %v, false", s, got, unclosed)
		}
		if ok && !strings.Contains(s, got) {
			t.Errorf("ParseImproved(%q) = %q: not a substring of the input", s, got)
		}
		// A closed block always wins over an unclosed one, and an
		// unclosed block runs to the end of the text.
		if unclosed && !strings.HasSuffix(strings.TrimSpace(s), got) {
			t.Errorf("ParseImproved(%q) = %q unclosed, but it does not run to the end", s, got)
		}
		if !unclosed && ok {
			if _, _, again := tpo.ParseImproved(s + " <improved_response> trailing"); !again {
				t.Errorf("ParseImproved lost the closed block of %q when text followed", s)
			}
			if g2, u2, _ := tpo.ParseImproved(s + " <improved_response> trailing"); g2 != got || u2 {
				t.Errorf("ParseImproved(%q + trailing open tag) = %q, %v; want %q from the closed block", s, g2, u2, got)
			}
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
