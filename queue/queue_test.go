package queue_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/pgtest"
	"github.com/tpoproject/tpo/postgres"
	"github.com/tpoproject/tpo/queue"
	"github.com/tpoproject/tpo/tpotest"
)

const (
	width = 2
	depth = 2
	seed  = 1000
)

// openStore opens a store in a schema of its own, checked and closed when
// the test ends.
func openStore(t *testing.T) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Check(context.Background()); err != nil {
			t.Errorf("Check: %v", err)
		}
		db.Close()
	})
	return db
}

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
	in := make([]tpo.Input, n)
	for i := range in {
		in[i].Item = tpo.Item{ID: strconv.Itoa(i + 1), Messages: []tpo.Message{
			{Role: tpo.RoleUser, Content: fmt.Sprintf("Answer question number %d, please.", i+1)}}}
	}
	return in
}

// stepKey names one step of one item.
type stepKey struct {
	item string
	step int
}

var questionRE = regexp.MustCompile(`question number (\d+)\b`)

// stepOf maps a policy request to the item and step it belongs to: the item
// from the question every prompt quotes, the step from the request's seed
// (request 0 is step 0; 1, 2, 3 step 1; 4, 5, 6 step 2).
func stepOf(req tpo.GenerateRequest) stepKey {
	item := ""
	for _, m := range req.Messages {
		if s := questionRE.FindStringSubmatch(m.Content); s != nil {
			item = s[1]
			break
		}
	}
	r := int((*req.Seed - seed) / width)
	return stepKey{item, (r + 2) / 3}
}

// requestsPerStep counts the policy requests of a step.
func requestsPerStep(step int) int {
	if step == 0 {
		return 1
	}
	return 3
}

// worker is one process of a shared run: a Runner with a policy of its own,
// so that each step's requests show which worker computed it.
type worker struct {
	policy *tpotest.Policy
	runner *queue.Runner
}

func newWorker(db *postgres.DB, policy *tpotest.Policy) *worker {
	cfg := tpo.DefaultConfig()
	cfg.Width, cfg.Depth = width, depth
	s := int64(seed)
	cfg.Seed = &s
	if policy == nil {
		policy = &tpotest.Policy{}
	}
	return &worker{policy: policy, runner: &queue.Runner{
		Optimizer:   &tpo.Optimizer{Policy: policy, Reward: &tpotest.Reward{}, Config: cfg},
		Store:       db,
		Pool:        db.Pool(),
		Concurrency: 4,
		Poll:        50 * time.Millisecond,
	}}
}

// steps counts the requests of each step the worker computed.
func (w *worker) steps() map[stepKey]int {
	n := map[stepKey]int{}
	for _, c := range w.policy.Calls() {
		n[stepOf(c)]++
	}
	return n
}

var theRun = tpo.Run{Key: "the run", Kind: "run", Source: "test"}

// checkDone checks that every item of the run is done, with all its steps.
func checkDone(t *testing.T, db *postgres.DB, runID string, items int) {
	t.Helper()
	n := 0
	err := db.Results(context.Background(), runID, func(st tpo.ItemState) error {
		n++
		switch {
		case !st.Done || st.Result == nil:
			t.Errorf("item %s is not done", st.Item.ID)
		case st.Result.Error != "":
			t.Errorf("item %s failed: %s", st.Item.ID, st.Result.Error)
		case len(st.Steps) != depth+1:
			t.Errorf("item %s: %d steps, want %d", st.Item.ID, len(st.Steps), depth+1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != items {
		t.Errorf("the run has %d items, want %d", n, items)
	}
}

func TestWorkersShareARun(t *testing.T) {
	for _, workers := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("%d workers", workers), func(t *testing.T) {
			const items = 24
			db := openStore(t) // a fresh schema: the workers migrate River's tables at once
			ws := make([]*worker, workers)
			for i := range ws {
				ws[i] = newWorker(db, nil)
			}
			sums := make([]tpo.RunCounts, workers)
			runs := make([]tpo.Run, workers)
			var wg sync.WaitGroup
			for i, w := range ws {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var err error
					runs[i], sums[i], err = w.runner.Run(context.Background(), theRun, &sliceSource{in: inputs(items)})
					if err != nil {
						t.Errorf("worker %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			own := 0
			for i, sum := range sums {
				if sum.Items != items || sum.Done != items || sum.Failed != 0 || sum.Skipped != 0 {
					t.Errorf("worker %d: counts %+v, want %d items done", i, sum, items)
				}
				own += sum.Done - sum.Elsewhere
				if runs[i].ID != runs[0].ID {
					t.Errorf("worker %d ran run %s, worker 0 run %s", i, runs[i].ID, runs[0].ID)
				}
			}
			if own != items {
				t.Errorf("the workers finished %d items between them, want %d (each once)", own, items)
			}
			checkOnce(t, ws, items)
			checkDone(t, db, runs[0].ID, items)
		})
	}
}

// checkOnce checks that every step of every item was computed once, by one
// worker.
func checkOnce(t *testing.T, ws []*worker, items int) {
	t.Helper()
	by := map[stepKey][]int{}
	for i, w := range ws {
		for k, n := range w.steps() {
			if n != requestsPerStep(k.step) {
				t.Errorf("worker %d sent %d requests for item %s step %d, want %d", i, n, k.item, k.step, requestsPerStep(k.step))
			}
			by[k] = append(by[k], i)
		}
	}
	for k, who := range by {
		if len(who) > 1 {
			t.Errorf("item %s step %d was computed by workers %v", k.item, k.step, who)
		}
	}
	if want := items * (depth + 1); len(by) != want {
		t.Errorf("%d steps computed, want %d", len(by), want)
	}
}

// TestInterruptedWorkerLeavesItsStepsToOthers cancels a worker in the
// middle of a run: its steps in flight go back to the queue at once, and
// another worker (with a lease far longer than the test) continues them
// from their last saved step, computing no saved step again.
func TestInterruptedWorkerLeavesItsStepsToOthers(t *testing.T) {
	const items = 16
	db := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	slow := &tpotest.Policy{Err: func(call int, req tpo.GenerateRequest) error {
		if calls.Add(1) == 20 {
			cancel() // Ctrl-C, with steps in flight
		}
		time.Sleep(5 * time.Millisecond)
		return nil
	}}
	first := newWorker(db, slow)
	run, sum, err := first.runner.Run(ctx, theRun, &sliceSource{in: inputs(items)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: got %v, want context.Canceled", err)
	}
	if sum.Done >= items {
		t.Fatalf("the first worker finished every item (%+v) before it was interrupted", sum)
	}
	saved := savedSteps(t, db, run.ID)
	if len(saved) == 0 {
		t.Fatal("nothing was saved before the interruption")
	}

	second := newWorker(db, nil)
	second.runner.Lease = time.Hour
	done := make(chan error, 1)
	go func() {
		_, sum, err = second.runner.Run(context.Background(), theRun, &sliceSource{in: inputs(items)})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the second worker waited for the interrupted one's lease")
	}
	if sum.Done+sum.Skipped != items || sum.Elsewhere != 0 {
		t.Errorf("second worker's counts: %+v, want all %d items, none elsewhere", sum, items)
	}
	for k := range second.steps() {
		if saved[k] {
			t.Errorf("item %s step %d was saved before the interruption, yet computed again", k.item, k.step)
		}
	}
	checkDone(t, db, run.ID, items)
}

// savedSteps lists the steps the store holds.
func savedSteps(t *testing.T, db *postgres.DB, runID string) map[stepKey]bool {
	t.Helper()
	saved := map[stepKey]bool{}
	err := db.Results(context.Background(), runID, func(st tpo.ItemState) error {
		for _, s := range st.Steps {
			saved[stepKey{st.Item.ID, s.Step}] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return saved
}

// TestFailedItemsAndBadInputs runs a dataset with an unreadable entry and
// an item whose requests fail, then runs it again: the failed item is tried
// again from its last saved step, the others are skipped.
func TestFailedItemsAndBadInputs(t *testing.T) {
	const items = 8
	db := openStore(t)
	in := inputs(items)
	in[2] = tpo.Input{Item: tpo.Item{ID: "3"}, Err: errors.New(`data.jsonl:3: no "prompt" field`)}
	failing := &tpotest.Policy{Err: func(_ int, req tpo.GenerateRequest) error {
		if k := stepOf(req); k.item == "5" && k.step == 1 {
			return errors.New("server said no")
		}
		return nil
	}}
	var failed []string
	var mu sync.Mutex
	w := newWorker(db, failing)
	w.runner.OnItem = func(st tpo.ItemState, _ bool) {
		mu.Lock()
		defer mu.Unlock()
		if st.Result.Error != "" {
			failed = append(failed, st.Item.ID+": "+st.Result.Error)
		}
	}
	run, sum, err := w.runner.Run(context.Background(), theRun, &sliceSource{in: in})
	if err != nil {
		t.Fatal(err)
	}
	if want := (tpo.RunCounts{Items: items, Done: items - 2, Failed: 2}); sum != want {
		t.Errorf("first run: counts %+v, want %+v", sum, want)
	}
	got := strings.Join(failed, "\n")
	if !strings.Contains(got, `3: data.jsonl:3: no "prompt" field`) || !strings.Contains(got, "5: step 1: loss: server said no") {
		t.Errorf("failures reported:\n%s\nwant item 3's input error and item 5's step 1", got)
	}

	again := newWorker(db, nil)
	_, sum, err = again.runner.Run(context.Background(), theRun, &sliceSource{in: in})
	if err != nil {
		t.Fatal(err)
	}
	if want := (tpo.RunCounts{Items: items, Done: 1, Failed: 1, Skipped: items - 2}); sum != want {
		t.Errorf("second run: counts %+v, want %+v", sum, want)
	}
	steps := again.steps()
	if len(steps) != depth || steps[stepKey{"5", 1}] != 3 || steps[stepKey{"5", 2}] != 3 {
		t.Errorf("second run computed %v, want item 5's steps 1 and 2 alone", steps)
	}
	st, err := db.GetItem(context.Background(), run.ID, "5")
	if err != nil || st.Result == nil || st.Result.Error != "" || len(st.Steps) != depth+1 {
		t.Errorf("item 5 after the retry: %+v, %v", st.Result, err)
	}
}

// TestLimitedWorker runs a worker on the first items of a dataset beside
// one on all of it: the first returns once its items are done.
func TestLimitedWorker(t *testing.T) {
	const items, limit = 20, 6
	db := openStore(t)
	all := newWorker(db, &tpotest.Policy{Err: func(int, tpo.GenerateRequest) error {
		time.Sleep(2 * time.Millisecond)
		return nil
	}})
	few := newWorker(db, nil)
	done := make(chan error, 1)
	go func() {
		_, _, err := all.runner.Run(context.Background(), theRun, &sliceSource{in: inputs(items)})
		done <- err
	}()
	_, sum, err := few.runner.Run(context.Background(), theRun, &sliceSource{in: inputs(limit)})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Items != limit || sum.Done != limit {
		t.Errorf("limited worker: counts %+v, want its %d items done", sum, limit)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestQueueName(t *testing.T) {
	tests := []struct {
		run, want string
	}{
		{"4f3a9c2e81b0", "tpo_4f3a9c2e81b0"},
		{"run1", "tpo_run1"},
		{"Run1", ""}, // "": any valid name of its own
		{strings.Repeat("a", 70), ""},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		got := queue.QueueName(tt.run)
		if tt.want != "" && got != tt.want {
			t.Errorf("QueueName(%q) = %q, want %q", tt.run, got, tt.want)
		}
		if !regexp.MustCompile(`^tpo_[a-z0-9_]+$`).MatchString(got) || len(got) > 64 {
			t.Errorf("QueueName(%q) = %q: not a valid River queue name", tt.run, got)
		}
		if seen[got] {
			t.Errorf("QueueName(%q) = %q, as for another run", tt.run, got)
		}
		seen[got] = true
	}
}
