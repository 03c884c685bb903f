package pep440

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Version
		norm string
	}{
		{"0.11.1", Version{Release: []int{0, 11, 1}, Post: -1, Dev: -1}, "0.11.1"},
		{"0.10.1.1", Version{Release: []int{0, 10, 1, 1}, Post: -1, Dev: -1}, "0.10.1.1"},
		{"0.11.1rc2", Version{Release: []int{0, 11, 1}, Pre: "rc", PreN: 2, Post: -1, Dev: -1}, "0.11.1rc2"},
		{"0.12.0+cu128", Version{Release: []int{0, 12, 0}, Post: -1, Dev: -1, Local: "cu128"}, "0.12.0+cu128"},
		{"0.6.3.post1", Version{Release: []int{0, 6, 3}, Post: 1, Dev: -1}, "0.6.3.post1"},
		{"0.11.1.dev123+gabcdef", Version{Release: []int{0, 11, 1}, Post: -1, Dev: 123, Local: "gabcdef"}, "0.11.1.dev123+gabcdef"},
		{" v1.0-RC.1 ", Version{Release: []int{1, 0}, Pre: "rc", PreN: 1, Post: -1, Dev: -1}, "1.0rc1"},
		{"1.0c3", Version{Release: []int{1, 0}, Pre: "rc", PreN: 3, Post: -1, Dev: -1}, "1.0rc3"},
		{"1.0alpha", Version{Release: []int{1, 0}, Pre: "a", Post: -1, Dev: -1}, "1.0a0"},
		{"1.0-2", Version{Release: []int{1, 0}, Post: 2, Dev: -1}, "1.0.post2"},
		{"1.0.rev", Version{Release: []int{1, 0}, Post: 0, Dev: -1}, "1.0.post0"},
		{"1.0b1.post2.dev3+ubuntu.1", Version{Release: []int{1, 0}, Pre: "b", PreN: 1, Post: 2, Dev: 3, Local: "ubuntu.1"}, "1.0b1.post2.dev3+ubuntu.1"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if !slices.Equal(got.Release, tt.want.Release) || got.Pre != tt.want.Pre || got.PreN != tt.want.PreN ||
			got.Post != tt.want.Post || got.Dev != tt.want.Dev || got.Local != tt.want.Local {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if s := got.String(); s != tt.norm {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, s, tt.norm)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "latest", "0.11.x", "1..2", ".1", "1.0+", "1.0+a..b", "1.0 rc1 extra", "99999999999999999999999.1", "1.0rc99999999999999999999999"} {
		if v, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, v)
		}
	}
}

func TestOrder(t *testing.T) {
	// Each version sorts strictly before the next.
	ordered := []string{
		"0.6.3", "0.6.3.post1", "0.10.1", "0.10.1.1", "0.11.0",
		"0.11.1.dev1", "0.11.1.dev123+gabcdef", "0.11.1a1", "0.11.1b2", "0.11.1rc1.dev4", "0.11.1rc1", "0.11.1rc2",
		"0.11.1", "0.11.1+abc", "0.11.1+abc.5", "0.11.1+cu128", "0.11.1+5", "0.11.1.post1.dev2", "0.11.1.post1",
		"0.11.2", "0.12.0", "1",
	}
	for i := range ordered {
		a := MustParse(ordered[i])
		if c := a.Compare(a); c != 0 {
			t.Errorf("%s compared with itself = %d", a, c)
		}
		for j := i + 1; j < len(ordered); j++ {
			b := MustParse(ordered[j])
			if !a.Less(b) || b.Less(a) || a.Compare(b) != -1 || b.Compare(a) != 1 {
				t.Errorf("want %s < %s", ordered[i], ordered[j])
			}
		}
	}
	// Trailing zeros do not count.
	if MustParse("1.0.0").Compare(MustParse("1")) != 0 {
		t.Error("1.0.0 != 1")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0.11.1", "0.11.1rc2", "0.12.0+cu128", "0.6.3.post1", "0.11.1.dev123+gabcdef", "1.0-2", "v1!2"} {
		f.Add(s)
	}
	ref := MustParse("0.11.1")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			return
		}
		// The normal form reads back as an equal version.
		w, err := Parse(v.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", s, v.String(), err)
		}
		if v.Compare(w) != 0 || w.String() != v.String() {
			t.Fatalf("%q: normal form %q reads back as %q", s, v.String(), w.String())
		}
		if v.Compare(ref) != -ref.Compare(v) {
			t.Fatalf("%q: Compare is not antisymmetric against %s", s, ref)
		}
	})
}
