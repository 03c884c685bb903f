package tpo_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
)

func TestRefString(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{tpo.Ref{Step: 0, Index: 2}, "step 0 #2"},
		{&tpo.Ref{Step: 1, Index: 3}, "step 1 #3"},
	} {
		if got := fmt.Sprintf("%v", tc.v); got != tc.want {
			t.Errorf("%#v printed as %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestQuoteTag(t *testing.T) {
	a := tpo.QuoteTag("q", "response")
	if len(a) != 12 || a != tpo.QuoteTag("q", "response") {
		t.Errorf("QuoteTag is %q: want 12 hex digits, the same for the same texts", a)
	}
	// The boundaries between texts count.
	if tpo.QuoteTag("q", "response") == tpo.QuoteTag("qr", "esponse") || tpo.QuoteTag("a") == tpo.QuoteTag("b") {
		t.Error("different texts gave the same tag")
	}
	if got := tpo.WithoutTag("end "+a+" end", a); strings.Contains(got, a) {
		t.Errorf("WithoutTag left the tag: %q", got)
	}
	if got := tpo.WithoutTag("keep", ""); got != "keep" {
		t.Errorf("WithoutTag with no tag changed the text: %q", got)
	}
}

func TestItemOrderKey(t *testing.T) {
	for _, tc := range []struct {
		in      tpo.ItemOrder
		key     string
		desc    bool
		wantErr bool
	}{
		{"", "seq", false, false}, {"-score", "score", true, false}, {"duration", "duration", false, false},
		{"-", "seq", true, false}, {"bogus", "", false, true}, {"--score", "", false, true},
	} {
		key, desc, err := tc.in.Key()
		if key != tc.key || desc != tc.desc || (err != nil) != tc.wantErr {
			t.Errorf("%q.Key() = %q, %v, %v", tc.in, key, desc, err)
		}
	}
}
