package ui

import (
	"strings"
	"testing"
	"time"
)

func render(segs []diffSeg) string {
	var b strings.Builder
	for _, s := range segs {
		switch s.Op {
		case opDelete:
			b.WriteString("[-" + s.Text + "-]")
		case opInsert:
			b.WriteString("{+" + s.Text + "+}")
		default:
			b.WriteString(s.Text)
		}
	}
	return b.String()
}

func TestWordDiff(t *testing.T) {
	tests := []struct {
		a, b, want string
	}{
		{"", "", ""},
		{"same text", "same text", "same text"},
		{"", "new", "{+new+}"},
		{"old", "", "[-old-]"},
		{"the cat sat", "the dog sat", "the [-cat-]{+dog+} sat"},
		{"a b c d", "a c d e", "a [-b -]c d{+ e+}"},
		{"one two three", "zero one two three", "{+zero +}one two three"},
		{"line one\nline two", "line one\nline 2", "line one\nline [-two-]{+2+}"},
		{"keep  spaces", "keep spaces", "keep[-  -]{+ +}spaces"},
		{"héllo wörld", "héllo world", "héllo [-wörld-]{+world+}"},
	}
	for _, tt := range tests {
		segs, exact := wordDiff(tt.a, tt.b)
		if got := render(segs); got != tt.want || !exact {
			t.Errorf("wordDiff(%q, %q) = %q (exact %v), want %q", tt.a, tt.b, got, exact, tt.want)
		}
	}
}

func TestWordDiffStats(t *testing.T) {
	segs, _ := wordDiff("the quick brown fox", "the slow brown dog jumps")
	removed, added := diffStats(segs)
	if removed != 2 || added != 3 {
		t.Errorf("diffStats = -%d +%d, want -2 +3 (%s)", removed, added, render(segs))
	}
}

// TestWordDiffLongTexts checks that texts too different for the table are
// diffed coarsely, fast, and still reconstruct both sides.
func TestWordDiffLongTexts(t *testing.T) {
	var a, b strings.Builder
	a.WriteString("shared start ")
	b.WriteString("shared start ")
	for i := range 5000 {
		a.WriteString("a")
		a.WriteString(strings.Repeat("x", i%7))
		a.WriteString(" ")
		b.WriteString("b")
		b.WriteString(strings.Repeat("y", i%5))
		b.WriteString(" ")
	}
	a.WriteString("shared end")
	b.WriteString("shared end")
	t0 := time.Now()
	segs, exact := wordDiff(a.String(), b.String())
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("diff of long texts took %v", d)
	}
	if exact {
		t.Error("a diff of 10000 by 10000 differing tokens claims to be exact")
	}
	checkDiff(t, a.String(), b.String(), segs)
	if segs[0].Op != opEqual || segs[0].Text != "shared start " || segs[len(segs)-1].Text != " shared end" {
		t.Errorf("common prefix and suffix not kept: first %q, last %q", segs[0].Text, segs[len(segs)-1].Text)
	}
}

// checkDiff checks that the equal and deleted segments give a, the equal
// and inserted ones b, and that no two neighbours have the same kind.
func checkDiff(t *testing.T, a, b string, segs []diffSeg) {
	t.Helper()
	var ga, gb strings.Builder
	for i, s := range segs {
		if s.Text == "" {
			t.Errorf("segment %d is empty", i)
		}
		if i > 0 && segs[i-1].Op == s.Op {
			t.Errorf("segments %d and %d have the same kind", i-1, i)
		}
		if s.Op != opInsert {
			ga.WriteString(s.Text)
		}
		if s.Op != opDelete {
			gb.WriteString(s.Text)
		}
	}
	if ga.String() != a || gb.String() != b {
		t.Errorf("the diff does not rebuild its texts:\n a %q\n got %q\n b %q\n got %q", a, ga.String(), b, gb.String())
	}
}

func FuzzWordDiff(f *testing.F) {
	f.Add("the cat sat", "the dog sat")
	f.Add("", "x")
	f.Add("a\tb\r\nc", "a b c")
	f.Add("\xff\xfe bad utf8", "bad utf8 \xff")
	f.Add("  lead", "lead  ")
	f.Fuzz(func(t *testing.T, a, b string) {
		segs, exact := wordDiff(a, b)
		checkDiff(t, a, b, segs)
		if exact && a == b && len(segs) > 1 {
			t.Errorf("equal texts gave %d segments", len(segs))
		}
	})
}

func TestSplitWords(t *testing.T) {
	for _, s := range []string{"", " ", "a", "a b", "  a  b  ", "a\n\nb\tc", "日本 語"} {
		toks := splitWords(s)
		if strings.Join(toks, "") != s {
			t.Errorf("splitWords(%q) = %q: does not rebuild", s, toks)
		}
		for i := 1; i < len(toks); i++ {
			if strings.TrimSpace(toks[i]) == "" == (strings.TrimSpace(toks[i-1]) == "") {
				t.Errorf("splitWords(%q) = %q: neighbours of one kind", s, toks)
			}
		}
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"longer text", 6, "longer…"},
		{"héllo", 2, "h…"},
		{"日本語", 4, "日…"},
	}
	for _, tt := range tests {
		if got := truncate(tt.s, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}
