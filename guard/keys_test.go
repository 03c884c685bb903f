package guard

import (
	"net/http"
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	k, err := NewKeys([]string{" k1 ", "k2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		key  string
		want bool
	}{{"k1", true}, {" k2\t", true}, {"k3", false}, {"", false}, {" k1 k2", false}} {
		if got := k.Match(tt.key); got != tt.want {
			t.Errorf("Match(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
	if !k.Required() || (Keys{}).Required() {
		t.Error("Required: want true with keys, false without")
	}
	for _, bad := range [][]string{{" "}, {"a", "", "b"}} {
		if _, err := NewKeys(bad); err == nil || !strings.Contains(err.Error(), "is blank") {
			t.Errorf("NewKeys(%q) = %v, want a blank key refused", bad, err)
		}
	}
}

func TestBearer(t *testing.T) {
	for _, tt := range []struct {
		header, want string
		ok           bool
	}{{"Bearer abc", "abc", true}, {"bearer  abc ", " abc ", true}, {"Bearer ", "", true}, {"Basic abc", "", false}, {"", "", false}} {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		if got, ok := Bearer(r); got != tt.want || ok != tt.ok {
			t.Errorf("Bearer(%q) = %q, %v; want %q, %v", tt.header, got, ok, tt.want, tt.ok)
		}
	}
}
