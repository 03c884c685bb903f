package postgres

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/pgtest"
	"github.com/tpoproject/tpo/tpotest"
)

func TestInterrupterContract(t *testing.T) {
	pgtest.URL(t)
	tpotest.TestInterrupter(t, openTest(t))
}

// The runs of an owner that stopped beating are stale, on any host; those
// of an owner that beats are not; runs without an owner never are.
func TestLiveness(t *testing.T) {
	pgtest.URL(t)
	ctx := context.Background()
	db := openTest(t)
	// Owners that started an hour ago, on two machines.
	started := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	alive := tpo.Owner{Host: "replica-a", PID: 10, Started: started}
	dead := tpo.Owner{Host: "replica-b", PID: 20, Started: started}
	silent := tpo.Owner{Host: "replica-c", PID: 30, Started: started} // never beat
	open := func(id string, o *tpo.Owner) {
		t.Helper()
		if _, _, err := db.OpenRun(ctx, tpo.Run{ID: id, Kind: "serve", Source: "api", Owner: o, ItemCount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	open("alive", &alive)
	open("dead", &dead)
	open("silent", &silent)
	open("ownerless", nil)
	for _, o := range []tpo.Owner{alive, dead} {
		if err := db.Beat(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(olderThan time.Duration) []string {
		t.Helper()
		runs, err := db.StaleRuns(ctx, olderThan)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range runs {
			out = append(out, r.ID)
		}
		return out
	}
	if got := ids(time.Minute); !slices.Equal(got, []string{"silent"}) {
		t.Errorf("stale after a minute: %v, want [silent] (the others beat just now)", got)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := db.Beat(ctx, alive); err != nil {
		t.Fatal(err)
	}
	if got := ids(time.Second); !slices.Equal(got, []string{"dead", "silent"}) {
		t.Errorf("stale after a second: %v, want [dead silent]", got)
	}
	if _, err := db.InterruptRun(ctx, "dead", time.Now(), "interrupted: its process stopped beating"); err != nil {
		t.Fatal(err)
	}
	if got := ids(time.Second); !slices.Equal(got, []string{"silent"}) {
		t.Errorf("after interrupting dead: %v, want [silent]", got)
	}
	r, err := db.GetRun(ctx, "dead")
	if err != nil || r.Interrupted == nil || r.Owner == nil || *r.Owner != dead {
		t.Errorf("run dead: %+v, %v; want interrupted, with its owner", r.Run, err)
	}
}
