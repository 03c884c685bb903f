package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/pgtest"
	"github.com/tpoproject/tpo/postgres"
)

// testStore is a store the UI reads and a fixture is written to.
type testStore interface {
	Store
	tpo.Store
}

// storeKinds are the stores the UI's answers to odd requests are checked
// against: SQLite, and PostgreSQL when $TPO_TEST_POSTGRES names a database.
var storeKinds = []struct {
	name string
	open func(t *testing.T) testStore
}{
	{"sqlite", func(t *testing.T) testStore { return openStore(t) }},
	{"postgres", func(t *testing.T) testStore {
		db, err := postgres.Open(context.Background(), pgtest.Schema(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}},
}

// TestQueryLimits: a search text longer than MaxQueryLength characters is
// a 400 naming the parameter and the limit, on the runs page and a run's
// page; at the limit, with every character one that a LIKE pattern
// escapes, it is searched.
func TestQueryLimits(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) {
			db := sk.open(t)
			fixture(t, db)
			h := newHandler(t, Options{Store: db})
			long := strings.Repeat("a", MaxQueryLength+1)
			for _, tt := range []struct {
				target, param string
			}{
				{"/ui/runs/r1?q=" + long, "q"},
				{"/ui/runs/r1?status=done&q=" + strings.Repeat("a", 60000), "q"},
				{"/ui/?q=" + long, "q"},
				{"/ui/?deleted=" + long, "deleted"},
			} {
				r := get(t, h, tt.target)
				want := fmt.Sprintf("at most %d", MaxQueryLength)
				if r.code != http.StatusBadRequest || !strings.Contains(r.body, "parameter "+tt.param+" ") || !strings.Contains(r.body, want) {
					t.Errorf("GET %.60s...: %d, want 400 naming %s and %q", tt.target, r.code, tt.param, want)
				}
			}
			for _, q := range []string{
				strings.Repeat("%", MaxQueryLength), strings.Repeat(`\`, MaxQueryLength), strings.Repeat("_", MaxQueryLength),
				strings.Repeat("🙂", MaxQueryLength), "  " + strings.Repeat("b", MaxQueryLength) + "  ",
			} {
				for _, p := range []string{"/ui/runs/r1", "/ui/"} {
					if r := get(t, h, p+"?q="+url.QueryEscape(q)); r.code != http.StatusOK || !strings.Contains(r.body, "match the filter") {
						t.Errorf("GET %s?q=%.20q... (%d characters): %d, want 200 and no match", p, q, len(q), r.code)
					}
				}
			}
		})
	}
}

// TestOddRequestsAreNot500: what a client puts in a URL (a NUL byte,
// invalid UTF-8, LIKE wildcards, a page number past any) never makes the
// store fail: the answer is what it is for any other text.
func TestOddRequestsAreNot500(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) {
			db := sk.open(t)
			fixture(t, db)
			h := newHandler(t, Options{Store: db})
			for _, tt := range []struct {
				target string
				code   int
				want   string
			}{
				{"/ui/runs/r1?q=%00", 200, ""}, // SQLite's LIKE ends a pattern at a NUL
				{"/ui/runs/r1?q=%ff%fe", 200, "No items match"},
				{"/ui/runs/r1?q=%25", 200, "No items match"},
				{"/ui/runs/r1?q=_", 200, "No items match"},
				{"/ui/runs/r1?q=x%2Fy", 200, "1 item matches"},
				{"/ui/?q=%00%ff", 200, "No runs match"},
				{"/ui/?deleted=%00%ff", 200, "was deleted"},
				{"/ui/?page=9223372036854775807", 200, "No runs"},
				{"/ui/?page=184467440737095517", 200, "No runs"},
				{"/ui/runs/r1?page=9223372036854775807", 200, "No items"},
				{"/ui/runs/r1?page=184467440737095517", 200, "No items"},
				{"/ui/runs/%00", 404, "Not found"},
				{"/ui/runs/%ff", 404, "Not found"},
				{"/ui/runs/%00/progress", 404, "Not found"},
				{"/ui/runs/%ff/curves.svg", 404, "Not found"},
				{"/ui/runs/%00/delete", 404, "Not found"},
				{"/ui/runs/r1/items/%00", 404, "Not found"},
				{"/ui/runs/r1/items/%ff/body", 404, "Not found"},
				{"/ui/runs/r1/items/%00/curves.svg", 404, "Not found"},
			} {
				if r := get(t, h, tt.target); r.code != tt.code || !strings.Contains(r.body, tt.want) {
					t.Errorf("GET %s: %d, want %d and a page saying %q", tt.target, r.code, tt.code, tt.want)
				}
			}
		})
	}
}
