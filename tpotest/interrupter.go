package tpotest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

// InterruptingStore is a run store that can interrupt runs.
type InterruptingStore interface {
	tpo.Store
	tpo.Interrupter
	// GetItem returns what the store holds of one item.
	GetItem(ctx context.Context, runID, itemID string) (tpo.ItemState, error)
}

// GetItem returns the state of one item.
func (m *MemStore) GetItem(ctx context.Context, runID, itemID string) (tpo.ItemState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.item(runID, itemID)
	if err != nil {
		return tpo.ItemState{}, err
	}
	return clone(*st), nil
}

// TestInterrupter checks the tpo.Interrupter contract on an empty store:
// which runs UnfinishedRuns lists (owned, on the host, neither finished
// nor interrupted), that owners are recorded, and what InterruptRun does
// to runs and their items. Stores that implement tpo.Interrupter run it in
// their tests.
func TestInterrupter(t *testing.T, s InterruptingStore) {
	t.Helper()
	ctx := context.Background()
	started := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	dead := tpo.Owner{Host: "gpu-box", PID: 41, Started: started}
	other := tpo.Owner{Host: "other-box", PID: 41, Started: started}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	created := started
	open := func(id string, owner *tpo.Owner) {
		t.Helper()
		created = created.Add(time.Second)
		_, _, err := s.OpenRun(ctx, tpo.Run{ID: id, Kind: "serve", Source: "api", ItemCount: 1, Created: created, Owner: owner})
		must(err)
	}
	msgs := []tpo.Message{{Role: tpo.RoleUser, Content: "q"}}
	open("a", &dead)  // unfinished, a step saved
	open("b", &dead)  // finished
	open("c", &other) // another host
	open("d", nil)    // no owner (tpo run)
	open("e", &dead)  // unfinished, no item yet
	_, err := s.StartItem(ctx, "a", 0, tpo.Item{ID: "a0", Messages: msgs})
	must(err)
	must(s.SaveStep(ctx, "a", "a0", tpo.Step{Step: 0, Candidates: []tpo.Candidate{{Text: "x", Score: 3}}}))
	_, err = s.StartItem(ctx, "b", 0, tpo.Item{ID: "b0", Messages: msgs})
	must(err)
	must(s.FinishItem(ctx, "b", tpo.Result{ID: "b0", Response: "y"}))
	must(s.FinishRun(ctx, "b", started.Add(time.Hour)))

	runs, err := s.UnfinishedRuns(ctx, "gpu-box")
	must(err)
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
		if r.Owner == nil || r.Owner.Host != dead.Host || r.Owner.PID != dead.PID || !r.Owner.Started.Equal(dead.Started) {
			t.Errorf("run %s: owner %+v, want %+v", r.ID, r.Owner, dead)
		}
	}
	if !slices.Equal(ids, []string{"a", "e"}) {
		t.Fatalf("UnfinishedRuns(gpu-box) = %v, want [a e], oldest first", ids)
	}

	at := started.Add(2 * time.Hour)
	const reason = "interrupted: tpo serve (pid 41 on gpu-box) ended before the request finished"
	for _, tt := range []struct {
		id   string
		want bool
	}{{"a", true}, {"e", true}, {"b", false}, {"a", false}} {
		if got, err := s.InterruptRun(ctx, tt.id, at, reason); err != nil || got != tt.want {
			t.Errorf("InterruptRun(%s) = %v, %v; want %v", tt.id, got, err, tt.want)
		}
	}
	if _, err := s.InterruptRun(ctx, "nope", at, reason); !errors.Is(err, tpo.ErrNotFound) {
		t.Errorf("InterruptRun of an unknown run: %v, want ErrNotFound", err)
	}
	st, err := s.GetItem(ctx, "a", "a0")
	must(err)
	if !st.Done || st.Result == nil || st.Result.Error != reason || len(st.Steps) != 1 {
		t.Errorf("item a0 after InterruptRun: done %v, result %+v, %d steps; want failed with the reason, its step kept", st.Done, st.Result, len(st.Steps))
	}
	st, err = s.GetItem(ctx, "b", "b0")
	must(err)
	if st.Result == nil || st.Result.Error != "" || st.Result.Response != "y" {
		t.Errorf("item b0 of a finished run was changed: %+v", st.Result)
	}
	if runs, err := s.UnfinishedRuns(ctx, "gpu-box"); err != nil || len(runs) != 0 {
		t.Errorf("UnfinishedRuns after = %v, %v; want none", runs, err)
	}
	if runs, err := s.UnfinishedRuns(ctx, "other-box"); err != nil || len(runs) != 1 || runs[0].ID != "c" {
		t.Errorf("UnfinishedRuns(other-box) = %v, %v; want [c]", runs, err)
	}
}
