package server

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/pgtest"
	"github.com/tpoproject/tpo/postgres"
)

// A live replica marks the runs of a replica that stopped beating (on
// another machine) as interrupted, and leaves its own alone.
func TestWatchReplicas(t *testing.T) {
	pgtest.URL(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	long := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	self := tpo.Owner{Host: "replica-a", PID: 1, Started: long}
	gone := tpo.Owner{Host: "replica-b", PID: 2, Started: long}
	for id, o := range map[string]tpo.Owner{"mine": self, "theirs": gone} {
		if _, _, err := db.OpenRun(ctx, tpo.Run{ID: id, Kind: "serve", Source: "api", Owner: &o, ItemCount: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.StartItem(ctx, id, 0, tpo.Item{ID: "chatcmpl-" + id, Messages: []tpo.Message{{Role: "user", Content: "hi"}}}); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		WatchReplicas(wctx, db, self, 50*time.Millisecond, 2*time.Second, slog.New(slog.DiscardHandler))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := db.GetRun(ctx, "theirs")
		if err != nil {
			t.Fatal(err)
		}
		if r.Interrupted != nil {
			if r.Failed != 1 {
				t.Errorf("the interrupted run's item is not failed: %+v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run of the silent replica was never marked interrupted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r, _ := db.GetRun(ctx, "mine"); r.Interrupted != nil {
		t.Error("the watching replica's own run was marked interrupted")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WatchReplicas did not return after its context ended")
	}
}
