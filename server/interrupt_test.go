package server

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest"
)

func TestInterruptAbandoned(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	self := tpo.Owner{Host: "box", PID: 100, Started: t0.Add(time.Hour)}
	dead := tpo.Owner{Host: "box", PID: 41, Started: t0}
	live := tpo.Owner{Host: "box", PID: 42, Started: t0}
	remote := tpo.Owner{Host: "other", PID: 41, Started: t0}
	store := tpotest.NewMemStore()
	for _, r := range []struct {
		id    string
		owner *tpo.Owner
	}{{"dead1", &dead}, {"dead2", &dead}, {"live", &live}, {"remote", &remote}, {"none", nil}, {"self", &self}} {
		if _, _, err := store.OpenRun(ctx, tpo.Run{ID: r.id, Kind: "serve", Owner: r.owner, ItemCount: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.StartItem(ctx, r.id, 0, tpo.Item{ID: "chatcmpl-" + r.id}); err != nil {
			t.Fatal(err)
		}
	}
	alive := func(o tpo.Owner) bool { return o.PID == live.PID || o.PID == self.PID }
	at := t0.Add(2 * time.Hour)
	got, err := InterruptAbandoned(ctx, store, self, alive, at)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"dead1", "dead2"}) {
		t.Errorf("interrupted %v, want [dead1 dead2]", got)
	}
	for _, id := range []string{"dead1", "dead2", "live", "remote", "none", "self"} {
		r, _ := store.Run(id)
		want := id == "dead1" || id == "dead2"
		if (r.Interrupted != nil) != want || r.Interrupted != nil && !r.Interrupted.Equal(at) {
			t.Errorf("run %s: interrupted %v, want %v", id, r.Interrupted, want)
		}
		items := store.Items(id)
		if want && (len(items) != 1 || items[0].Result == nil || !strings.Contains(items[0].Result.Error, "interrupted: the process that wrote the run (pid 41 on box")) {
			t.Errorf("run %s: items %+v, want failed as interrupted", id, items)
		}
		if !want && items[0].Done {
			t.Errorf("run %s: its item was finished", id)
		}
	}
	// Again: nothing left to mark.
	if got, err := InterruptAbandoned(ctx, store, self, alive, at); err != nil || len(got) != 0 {
		t.Errorf("second pass: %v, %v", got, err)
	}
}

// TestRunsRecordTheirOwner: a server with an Owner records it with every
// run it opens.
func TestRunsRecordTheirOwner(t *testing.T) {
	owner := &tpo.Owner{Host: "box", PID: 7, Started: time.Unix(1, 0)}
	e := newTestEnv(t, func(o *Options) { o.Owner = owner })
	var c completion
	decodeJSON(t, e.post(t, `{"model":"m",`+convo+`}`), 200, &c)
	r, ok := e.store.Run(c.TPO.RunID)
	if !ok || r.Owner == nil || *r.Owner != *owner {
		t.Errorf("run %s: owner %+v, want %+v", c.TPO.RunID, r.Owner, owner)
	}
}
