package tpo_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest"
)

type sliceSource struct {
	in []tpo.Input
	i  int
}

func (s *sliceSource) Next() (tpo.Input, error) {
	if s.i >= len(s.in) {
		return tpo.Input{}, io.EOF
	}
	s.i++
	return s.in[s.i-1], nil
}

func inputs(n int) []tpo.Input {
	var in []tpo.Input
	for i := 0; i < n; i++ {
		in = append(in, tpo.Input{Item: tpo.Item{ID: fmt.Sprint(i + 1), Messages: []tpo.Message{{Role: "user", Content: fmt.Sprintf("question %d", i+1)}}}})
	}
	return in
}

func TestRunnerRunsEveryItemAndResumes(t *testing.T) {
	in := inputs(12)
	in[3] = tpo.Input{Item: tpo.Item{ID: "4"}, Err: errors.New(`data.jsonl:4: no "prompt" field`)}
	var failItem7 atomic.Bool
	failItem7.Store(true)
	pol := &tpotest.Policy{Err: func(call int, req tpo.GenerateRequest) error {
		if failItem7.Load() && req.Stage == tpo.StageSample && strings.Contains(req.Messages[0].Content, "question 7") {
			return errors.New("server said no")
		}
		return nil
	}}
	cfg := tpo.DefaultConfig()
	cfg.Width, cfg.Depth = 2, 1
	store := tpotest.NewMemStore()
	var done atomic.Int32
	rn := &tpo.Runner{
		Optimizer:   &tpo.Optimizer{Policy: pol, Reward: &tpotest.Reward{Func: scoreByNumber}, Config: cfg},
		Store:       store,
		Concurrency: 4,
		OnItem:      func(tpo.ItemState, bool) { done.Add(1) },
	}
	run, sum, err := rn.Run(context.Background(), tpo.Run{Key: "k1", Kind: "run"}, &sliceSource{in: in})
	if err != nil {
		t.Fatal(err)
	}
	if want := (tpo.RunCounts{Items: 12, Done: 10, Failed: 2}); sum != want {
		t.Errorf("summary: got %+v, want %+v", sum, want)
	}
	if done.Load() != 12 {
		t.Errorf("OnItem calls: got %d, want 12", done.Load())
	}
	items := store.Items(run.ID)
	if len(items) != 12 {
		t.Fatalf("stored items: got %d, want 12", len(items))
	}
	for i, st := range items {
		if st.Seq != i || !st.Done || st.Result == nil {
			t.Errorf("item %d: seq %d done %v", i, st.Seq, st.Done)
			continue
		}
		failed := st.Result.Error != ""
		if want := i == 3 || i == 6; failed != want {
			t.Errorf("item %s failed=%v (%q), want %v", st.Item.ID, failed, st.Result.Error, want)
		}
	}
	if got := items[3].Result.Error; !strings.Contains(got, "data.jsonl:4") {
		t.Errorf("bad input error: got %q", got)
	}
	if r, _ := store.Run(run.ID); r.Finished == nil {
		t.Error("run not marked finished")
	}

	// Second run: same key; only the failed item that can now succeed is redone.
	failItem7.Store(false)
	before := len(pol.Calls())
	run2, sum, err := rn.Run(context.Background(), tpo.Run{Key: "k1", Kind: "run"}, &sliceSource{in: in})
	if err != nil {
		t.Fatal(err)
	}
	if run2.ID != run.ID {
		t.Errorf("resumed run id: got %s, want %s", run2.ID, run.ID)
	}
	if want := (tpo.RunCounts{Items: 12, Done: 1, Failed: 1, Skipped: 10}); sum != want {
		t.Errorf("resume summary: got %+v, want %+v", sum, want)
	}
	if got := len(pol.Calls()) - before; got != 4 {
		t.Errorf("requests on resume: got %d, want 4 (one item, D1)", got)
	}
}

func TestRunnerCancelLeavesItemsResumable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	pol := &tpotest.Policy{Err: func(call int, req tpo.GenerateRequest) error {
		if calls.Add(1) == 10 {
			cancel()
			return context.Canceled
		}
		return nil
	}}
	cfg := tpo.DefaultConfig()
	cfg.Width, cfg.Depth = 2, 2
	store := tpotest.NewMemStore()
	rn := &tpo.Runner{Optimizer: &tpo.Optimizer{Policy: pol, Reward: &tpotest.Reward{Func: scoreByNumber}, Config: cfg}, Store: store, Concurrency: 2}
	in := inputs(6)
	run, _, err := rn.Run(ctx, tpo.Run{Key: "k"}, &sliceSource{in: in})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	for _, st := range store.Items(run.ID) {
		if st.Done && st.Result.Error != "" {
			t.Errorf("item %s recorded as failed by a cancellation: %s", st.Item.ID, st.Result.Error)
		}
	}
	if r, _ := store.Run(run.ID); r.Finished != nil {
		t.Error("cancelled run marked finished")
	}
	// Resume: everything completes, and no finished step is saved twice.
	rn.Optimizer.Policy = &tpotest.Policy{}
	_, sum, err := rn.Run(context.Background(), tpo.Run{Key: "k"}, &sliceSource{in: in})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Done+sum.Skipped != 6 || sum.Failed != 0 {
		t.Errorf("resume summary: %+v", sum)
	}
	for k, n := range store.Saves {
		if n != 1 {
			t.Errorf("step %s saved %d times, want once", k, n)
		}
	}
	if got, want := len(store.Saves), 6*3; got != want {
		t.Errorf("saved steps: got %d, want %d", got, want)
	}
}

type failingSource struct{ n int }

func (s *failingSource) Next() (tpo.Input, error) {
	s.n++
	if s.n > 2 {
		return tpo.Input{}, errors.New("disk on fire")
	}
	return inputs(2)[s.n-1], nil
}

func TestRunnerSourceError(t *testing.T) {
	rn := &tpo.Runner{Optimizer: &tpo.Optimizer{Policy: &tpotest.Policy{}, Reward: &tpotest.Reward{}, Config: tpo.DefaultConfig()}, Store: tpotest.NewMemStore()}
	_, sum, err := rn.Run(context.Background(), tpo.Run{}, &failingSource{})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("got %v, want the source's error", err)
	}
	if sum.Done > 2 {
		t.Errorf("summary: %+v", sum)
	}
}

// TestRunnerOpened: Opened sees the run as opened, before any input is
// read; its error ends the run with nothing done.
func TestRunnerOpened(t *testing.T) {
	cfg := tpo.DefaultConfig()
	cfg.Width, cfg.Depth = 2, 1
	pol := &tpotest.Policy{}
	store := tpotest.NewMemStore()
	refused := errors.New("another process works on it")
	src := &sliceSource{in: inputs(3)}
	var opened []string
	rn := &tpo.Runner{
		Optimizer: &tpo.Optimizer{Policy: pol, Reward: &tpotest.Reward{Func: scoreByNumber}, Config: cfg},
		Store:     store,
		Opened: func(ctx context.Context, run tpo.Run) error {
			opened = append(opened, run.ID)
			if src.i > 0 {
				t.Errorf("Opened called after %d inputs were read", src.i)
			}
			return refused
		},
	}
	run, sum, err := rn.Run(context.Background(), tpo.Run{Key: "k", Kind: "run"}, src)
	if !errors.Is(err, refused) || err.Error() != refused.Error() {
		t.Errorf("Run: %v, want Opened's error as it is", err)
	}
	if len(opened) != 1 || opened[0] != run.ID || run.ID == "" {
		t.Errorf("Opened got %v, want the run %q", opened, run.ID)
	}
	if sum != (tpo.RunCounts{}) || len(pol.Calls()) > 0 || len(store.Items(run.ID)) > 0 || src.i > 0 {
		t.Errorf("a refused run did work: %+v, %d policy calls, %d items stored, %d inputs read",
			sum, len(pol.Calls()), len(store.Items(run.ID)), src.i)
	}
	if r, _ := store.Run(run.ID); r.Finished != nil {
		t.Error("a refused run was marked finished")
	}

	// Without an error, the run goes on.
	rn.Opened = func(context.Context, tpo.Run) error { return nil }
	if _, sum, err := rn.Run(context.Background(), tpo.Run{Key: "k", Kind: "run"}, src); err != nil || sum.Done != 3 {
		t.Errorf("Run = %+v, %v; want 3 done", sum, err)
	}
}
