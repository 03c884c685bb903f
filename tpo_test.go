package tpo_test

import (
	"fmt"
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
