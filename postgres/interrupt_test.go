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

// The jobs of an owner that stopped beating are stale, on any host, by
// kind; those of an owner that beats, or started just now, are not;
// finished jobs and jobs without an owner never are. A stale job claimed
// by a live owner is no longer stale.
func TestStaleJobs(t *testing.T) {
	pgtest.URL(t)
	ctx := context.Background()
	db := openTest(t)
	started := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	alive := tpo.Owner{Host: "replica-a", PID: 10, Started: started}
	dead := tpo.Owner{Host: "replica-b", PID: 20, Started: started}
	silent := tpo.Owner{Host: "replica-c", PID: 30, Started: started} // never beat
	fresh := tpo.Owner{Host: "replica-d", PID: 40, Started: time.Now().UTC().Truncate(time.Microsecond)}
	done := started.Add(time.Minute)
	put := func(kind, id string, created time.Duration, o *tpo.Owner, finished *time.Time) {
		t.Helper()
		j := tpo.Job{Kind: kind, ID: id, Status: "in_progress", Created: started.Add(created), Updated: started, Finished: finished, Owner: o, Data: []byte(`{}`)}
		if err := db.PutJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	put("batch", "b_alive", 0, &alive, nil)
	put("batch", "b_dead", 2*time.Second, &dead, nil)
	put("batch", "b_silent", time.Second, &silent, nil)
	put("batch", "b_fresh", 0, &fresh, nil)
	put("batch", "b_finished", 0, &dead, &done)
	put("batch", "b_nobody", 0, nil, nil)
	put("response", "r_dead", 0, &dead, nil)
	for _, o := range []tpo.Owner{alive, dead} {
		if err := db.Beat(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(kind string, olderThan time.Duration) []string {
		t.Helper()
		jobs, err := db.StaleJobs(ctx, kind, olderThan)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, j := range jobs {
			if j.Owner == nil {
				t.Errorf("stale job %s has no owner", j.ID)
			}
			out = append(out, j.ID)
		}
		return out
	}
	if got := ids("batch", time.Minute); !slices.Equal(got, []string{"b_silent"}) {
		t.Errorf("stale after a minute: %v, want [b_silent] (the others beat or started just now)", got)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := db.Beat(ctx, alive); err != nil {
		t.Fatal(err)
	}
	// Oldest first: b_silent was created before b_dead.
	if got := ids("batch", time.Second); !slices.Equal(got, []string{"b_fresh", "b_silent", "b_dead"}) {
		t.Errorf("stale after a second: %v, want [b_fresh b_silent b_dead]", got)
	}
	if got := ids("response", time.Second); !slices.Equal(got, []string{"r_dead"}) {
		t.Errorf("stale responses: %v, want [r_dead]", got)
	}
	jobs, err := db.StaleJobs(ctx, "batch", time.Second)
	if err != nil || len(jobs) != 3 || jobs[2].Owner == nil || *jobs[2].Owner != dead {
		t.Fatalf("stale jobs %+v, %v; want b_dead with its owner", jobs, err)
	}
	if ok, err := db.ClaimJob(ctx, "batch", "b_dead", *jobs[2].Owner, &alive); !ok || err != nil {
		t.Fatalf("claiming b_dead: %v, %v", ok, err)
	}
	if got := ids("batch", time.Second); !slices.Equal(got, []string{"b_fresh", "b_silent"}) {
		t.Errorf("after alive claimed b_dead: %v, want [b_fresh b_silent]", got)
	}
}
