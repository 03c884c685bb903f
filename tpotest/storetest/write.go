package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

// Run checks the write side of the store that open returns: the methods of
// tpo.Store. open is called once per subtest and must return a new, empty
// store; it registers with t.Cleanup whatever closes the store.
func Run(t *testing.T, open func(t *testing.T) tpo.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s tpo.Store)
	}{
		{"OpenRunByKey", testOpenRunByKey},
		{"OpenRunWithoutKey", testOpenRunWithoutKey},
		{"OpenRunWithID", testOpenRunWithID},
		{"FinishRun", testFinishRun},
		{"StartItem", testStartItem},
		{"StartItemConflicts", testStartItemConflicts},
		{"SaveStep", testSaveStep},
		{"FinishItem", testFinishItem},
		{"FinishItemAgain", testFinishItemAgain},
		{"FinishItemWithoutSteps", testFinishItemWithoutSteps},
		{"OddTexts", testOddTexts},
		{"NotFound", testWriteNotFound},
		{"ConcurrentOpenRun", testConcurrentOpenRun},
		{"ConcurrentStartItem", testConcurrentStartItem},
		{"ConcurrentItems", testConcurrentItems},
		{"ConcurrentSteps", testConcurrentSteps},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// testOpenRunByKey: a run with a key is created once; opening the key again
// returns the stored run, whatever else is given.
func testOpenRunByKey(t *testing.T, s tpo.Store) {
	ctx := context.Background()
	in := tpo.Run{Key: "k1", Kind: "run", Source: "data.jsonl", Config: json.RawMessage(`{"mode":"tpo","depth":2}`), ItemCount: 805}
	r1, created, err := s.OpenRun(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("first OpenRun: created = false")
	}
	if r1.ID == "" || r1.Created.IsZero() {
		t.Errorf("new run: ID %q, Created %v; want both set", r1.ID, r1.Created)
	}
	if since := time.Since(r1.Created); since < -time.Minute || since > time.Minute {
		t.Errorf("new run: Created %v, want about now", r1.Created)
	}
	want := in
	want.ID, want.Created = r1.ID, r1.Created
	checkRun(t, "new run", r1, want)

	r2, created, err := s.OpenRun(ctx, tpo.Run{Key: "k1", Kind: "serve", Source: "other", Config: json.RawMessage(`{}`), ItemCount: 3})
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("OpenRun with an existing key: created = true")
	}
	checkRun(t, "OpenRun with an existing key", r2, want)

	r3, created, err := s.OpenRun(ctx, tpo.Run{Key: "k2", Kind: "run", Source: "data.jsonl"})
	if err != nil || !created || r3.ID == r1.ID {
		t.Errorf("OpenRun with another key: ID %q (first %q), created %v, %v; want a new run", r3.ID, r1.ID, created, err)
	}
	if r3.Config != nil {
		t.Errorf("run without config: Config %s, want nil", r3.Config)
	}
	if _, _, err := s.OpenRun(ctx, tpo.Run{Key: "k3", Kind: "run", Config: json.RawMessage(`{bad`)}); err == nil {
		t.Error("OpenRun with invalid JSON config: got no error")
	}
}

// testOpenRunWithoutKey: runs without a key are never found again.
func testOpenRunWithoutKey(t *testing.T, s tpo.Store) {
	seen := map[string]bool{}
	for range 5 {
		r, created, err := s.OpenRun(context.Background(), tpo.Run{Kind: "serve", Source: "api", ItemCount: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !created || seen[r.ID] {
			t.Errorf("run without a key: ID %q, created %v; want a new run each time", r.ID, created)
		}
		seen[r.ID] = true
	}
}

// testOpenRunWithID: a given ID and times are kept; a taken ID is an error.
func testOpenRunWithID(t *testing.T, s tpo.Store) {
	ctx := context.Background()
	fin := epoch.Add(time.Hour)
	in := tpo.Run{ID: "mine", Key: "kmine", Kind: "serve", Source: "api", Created: epoch, Finished: &fin, ItemCount: 1}
	r, created, err := s.OpenRun(ctx, in)
	if err != nil || !created {
		t.Fatalf("OpenRun with an ID: created %v, %v", created, err)
	}
	checkRun(t, "OpenRun with an ID", r, in)
	got, _, err := s.OpenRun(ctx, tpo.Run{Key: "kmine", Kind: "run"})
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, "the run with an ID, opened again", got, in)

	_, _, err = s.OpenRun(ctx, tpo.Run{ID: "mine", Kind: "run"})
	if err == nil || errors.Is(err, tpo.ErrNotFound) || !strings.Contains(err.Error(), "mine") {
		t.Errorf("OpenRun with a taken ID: got %v, want an error naming it", err)
	}
	got, _, err = s.OpenRun(ctx, tpo.Run{Key: "kmine", Kind: "run"})
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, "the run after a clash of IDs", got, in)
}

func testFinishRun(t *testing.T, s tpo.Store) {
	ctx := context.Background()
	run := mustRun(t, s, "k")
	if run.Finished != nil {
		t.Errorf("new run: Finished %v, want nil", run.Finished)
	}
	for _, at := range []time.Time{epoch.Add(time.Hour), epoch.Add(2 * time.Hour)} {
		if err := s.FinishRun(ctx, run.ID, at); err != nil {
			t.Fatal(err)
		}
		got, _, err := s.OpenRun(ctx, tpo.Run{Key: "k", Kind: "run"})
		if err != nil {
			t.Fatal(err)
		}
		if got.Finished == nil || !got.Finished.Equal(at) {
			t.Errorf("after FinishRun(%v): Finished %v", at, got.Finished)
		}
	}
}

// testStartItem: a new item has no steps; starting it again returns what
// was saved, with the messages stored the first time.
func testStartItem(t *testing.T, s tpo.Store) {
	run := mustRun(t, s, "k")
	st := mustStart(t, s, run.ID, 0, Item("a"))
	want := tpo.ItemState{Seq: 0, Item: Item("a")}
	checkState(t, "new item", st, want)
	checkState(t, "second item", mustStart(t, s, run.ID, 1, Item("b")), tpo.ItemState{Seq: 1, Item: Item("b")})

	steps := []tpo.Step{Step(0, 1, 3, 2), Step(1, 4, 2)}
	mustSave(t, s, run.ID, "a", steps...)
	want.Steps = steps
	checkState(t, "resumed item", mustStart(t, s, run.ID, 0, tpo.Item{ID: "a"}), want)
	checkState(t, "resumed item with other messages",
		mustStart(t, s, run.ID, 0, tpo.Item{ID: "a", Messages: []tpo.Message{{Role: tpo.RoleUser, Content: "other"}}}), want)
	checkState(t, "the other item", mustStart(t, s, run.ID, 1, Item("b")), tpo.ItemState{Seq: 1, Item: Item("b")})

	// Items of different runs are apart, even with the same id and seq.
	other := mustRun(t, s, "other")
	checkState(t, "same id in another run", mustStart(t, s, other.ID, 0, Item("a")), tpo.ItemState{Seq: 0, Item: Item("a")})
}

func testStartItemConflicts(t *testing.T, s tpo.Store) {
	ctx := context.Background()
	run := mustRun(t, s, "")
	mustStart(t, s, run.ID, 0, Item("a"))
	tests := []struct {
		seq  int
		item tpo.Item
		want string
	}{
		{1, Item("a"), `item "a" is recorded at position 0, not 1`},
		{0, Item("b"), `position 0 holds item "a"`},
		{1, tpo.Item{}, "empty id"},
		{-1, Item("c"), "negative seq"},
	}
	for _, tt := range tests {
		_, err := s.StartItem(ctx, run.ID, tt.seq, tt.item)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("StartItem(%d, %q): got %v, want an error containing %q", tt.seq, tt.item.ID, err, tt.want)
		}
	}
	// The failed calls recorded nothing.
	if st := mustStart(t, s, run.ID, 1, Item("b")); st.Seq != 1 || st.Item.ID != "b" || len(st.Steps) > 0 {
		t.Errorf("item b after the conflicts: got %s", asJSON(t, st))
	}
}

// testSaveStep: steps are kept in step order, and saving a step number
// again replaces it.
func testSaveStep(t *testing.T, s tpo.Store) {
	ctx := context.Background()
	run := mustRun(t, s, "k")
	mustStart(t, s, run.ID, 0, Item("a"))
	var want []tpo.Step
	for _, n := range []int{2, 10, 0, 1} {
		mustSave(t, s, run.ID, "a", Step(n, float64(n)))
	}
	for _, n := range []int{0, 1, 2, 10} {
		want = append(want, Step(n, float64(n)))
	}
	checkState(t, "steps saved out of order", mustStart(t, s, run.ID, 0, Item("a")), tpo.ItemState{Item: Item("a"), Steps: want})

	want[1] = Step(1, 5, 6)
	want[1].Notes = []string{"retried"}
	mustSave(t, s, run.ID, "a", want[1])
	checkState(t, "after replacing step 1", mustStart(t, s, run.ID, 0, Item("a")), tpo.ItemState{Item: Item("a"), Steps: want})

	if err := s.SaveStep(ctx, run.ID, "a", tpo.Step{Step: -1}); err == nil {
		t.Error("SaveStep of step -1: got no error")
	}
}

// testFinishItem: a result comes back whole, every field of it; the steps
// it carries are saved as by SaveStep.
func testFinishItem(t *testing.T, s tpo.Store) {
	run := mustRun(t, s, "k")
	mustStart(t, s, run.ID, 0, Item("a"))
	res := fullResult("a")
	mustSave(t, s, run.ID, "a", res.Steps[0])
	res.Steps = append(res.Steps, Step(2, 0.25)) // never saved before
	mustFinish(t, s, run.ID, res)
	want := tpo.ItemState{Item: Item("a"), Steps: res.Steps, Done: true, Result: &res}
	checkState(t, "finished item", mustStart(t, s, run.ID, 0, Item("a")), want)

	// Saving a step of a finished item adds it to the result's steps.
	extra := Step(3, 9)
	mustSave(t, s, run.ID, "a", extra)
	res.Steps = append(res.Steps, extra)
	want.Steps = res.Steps
	checkState(t, "finished item with a step saved after", mustStart(t, s, run.ID, 0, Item("a")), want)
}

// testFinishItemAgain: finishing an item again replaces its result; the
// steps saved stay, and are the result's steps.
func testFinishItemAgain(t *testing.T, s tpo.Store) {
	run := mustRun(t, s, "k")
	mustStart(t, s, run.ID, 0, Item("a"))
	steps := []tpo.Step{Step(0, 1, 3), Step(1, 4), Step(2, 6)}
	res := Result("a", steps, "")
	mustFinish(t, s, run.ID, res)

	res2 := Result("a", steps[:1], "context length exceeded")
	mustFinish(t, s, run.ID, res2)
	res2.Steps = steps
	checkState(t, "after a second FinishItem", mustStart(t, s, run.ID, 0, Item("a")),
		tpo.ItemState{Item: Item("a"), Steps: steps, Done: true, Result: &res2})
}

// testFinishItemWithoutSteps: an input that could not be read is recorded
// as a failed item without messages or steps.
func testFinishItemWithoutSteps(t *testing.T, s tpo.Store) {
	run := mustRun(t, s, "")
	mustStart(t, s, run.ID, 0, tpo.Item{ID: "line-3"})
	res := tpo.Result{ID: "line-3", Error: `data.jsonl:3: field "prompt": want a string, got number`}
	mustFinish(t, s, run.ID, res)
	checkState(t, "failed input", mustStart(t, s, run.ID, 0, tpo.Item{ID: "line-3"}),
		tpo.ItemState{Item: tpo.Item{ID: "line-3"}, Done: true, Result: &res})
}

// testOddTexts: texts with a NUL byte, invalid UTF-8, quotes, backslashes
// and characters outside the BMP are stored like any other text.
func testOddTexts(t *testing.T, s tpo.Store) {
	const odd = "nul \x00 here, bad \xff\xfe utf-8, \"quotes\" \\ back\\slash, \u2028, 🙂, %_ and '"
	run := mustRun(t, s, "k")
	it := tpo.Item{ID: "odd 🙂 id", Messages: []tpo.Message{{Role: tpo.RoleSystem, Content: odd}, {Role: tpo.RoleUser, Content: "user: " + odd}}}
	mustStart(t, s, run.ID, 0, it)
	st := Step(0, 1, 2)
	st.Candidates[0].Text = odd
	st.Notes = []string{odd}
	mustSave(t, s, run.ID, it.ID, st)
	res := Result(it.ID, []tpo.Step{st}, "failed: "+odd)
	res.Prompt, res.Response = odd, odd
	mustFinish(t, s, run.ID, res)
	checkState(t, "item with odd texts", mustStart(t, s, run.ID, 0, it),
		tpo.ItemState{Item: it, Steps: []tpo.Step{st}, Done: true, Result: &res})
}

func testWriteNotFound(t *testing.T, s tpo.Store) {
	ctx := context.Background()
	run := mustRun(t, s, "")
	mustStart(t, s, run.ID, 0, Item("a"))
	wantNotFound(t, "StartItem of a missing run", func() error { _, err := s.StartItem(ctx, "nope", 0, Item("a")); return err }())
	wantNotFound(t, "SaveStep of a missing run", s.SaveStep(ctx, "nope", "a", Step(0)))
	wantNotFound(t, "SaveStep of a missing item", s.SaveStep(ctx, run.ID, "zz", Step(0)))
	wantNotFound(t, "FinishItem of a missing run", s.FinishItem(ctx, "nope", Result("a", nil, "")))
	wantNotFound(t, "FinishItem of a missing item", s.FinishItem(ctx, run.ID, Result("zz", []tpo.Step{Step(0, 1)}, "")))
	wantNotFound(t, "FinishItem of a missing item without steps", s.FinishItem(ctx, run.ID, Result("zz", nil, "")))
	wantNotFound(t, "FinishRun of a missing run", s.FinishRun(ctx, "nope", epoch))
	if err := s.FinishItem(ctx, run.ID, tpo.Result{}); err == nil || errors.Is(err, tpo.ErrNotFound) {
		t.Errorf("FinishItem without an id: got %v, want an error", err)
	}
	// Nothing was recorded by the failed calls.
	checkState(t, "item a", mustStart(t, s, run.ID, 0, Item("a")), tpo.ItemState{Item: Item("a")})
}

// parallel runs fn(i) for i in [0, n) at once and fails t with every error.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
}

// testConcurrentOpenRun: callers opening one key at once all get the same
// run, and exactly one of them created it.
func testConcurrentOpenRun(t *testing.T, s tpo.Store) {
	const n = 16
	runs := make([]tpo.Run, n)
	created := make([]bool, n)
	parallel(t, n, func(i int) (err error) {
		runs[i], created[i], err = s.OpenRun(context.Background(), tpo.Run{Key: "shared", Kind: "run", Source: fmt.Sprint(i)})
		return err
	})
	creators := 0
	for i := range runs {
		if runs[i].ID != runs[0].ID || runs[i].Source != runs[0].Source {
			t.Errorf("caller %d got run %q (source %q), caller 0 %q (source %q)", i, runs[i].ID, runs[i].Source, runs[0].ID, runs[0].Source)
		}
		if created[i] {
			creators++
		}
	}
	if creators != 1 {
		t.Errorf("%d callers created the run, want 1", creators)
	}
}

// testConcurrentStartItem: starting one item from many goroutines at once
// records it once and gives every caller its state.
func testConcurrentStartItem(t *testing.T, s tpo.Store) {
	run := mustRun(t, s, "k")
	parallel(t, 16, func(int) error {
		st, err := s.StartItem(context.Background(), run.ID, 3, Item("a"))
		if err == nil && (st.Seq != 3 || st.Item.ID != "a" || st.Done || len(st.Steps) > 0) {
			err = fmt.Errorf("got %+v", st)
		}
		return err
	})
	// Different items racing for one position: one gets it.
	var mu sync.Mutex
	won := 0
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := s.StartItem(context.Background(), run.ID, 5, Item(fmt.Sprintf("x%d", i))); err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d of 8 items got position 5, want 1", won)
	}
}

// testConcurrentItems: many items written at once, as tpo run's workers do,
// each end up with all their steps and their result.
func testConcurrentItems(t *testing.T, s tpo.Store) {
	ctx := context.Background()
	run := mustRun(t, s, "k")
	const items, steps = 24, 6
	parallel(t, items, func(w int) error {
		id := fmt.Sprintf("item-%02d", w)
		if _, err := s.StartItem(ctx, run.ID, w, Item(id)); err != nil {
			return err
		}
		var all []tpo.Step
		for n := range steps {
			st := Step(n, float64(w), float64(n))
			all = append(all, st)
			if err := s.SaveStep(ctx, run.ID, id, st); err != nil {
				return err
			}
		}
		return s.FinishItem(ctx, run.ID, Result(id, all, ""))
	})
	for w := range items {
		id := fmt.Sprintf("item-%02d", w)
		st := mustStart(t, s, run.ID, w, Item(id))
		if !st.Done || len(st.Steps) != steps || st.Result == nil || len(st.Result.Steps) != steps || st.Result.Score != float64(max(w, steps-1)) {
			t.Errorf("%s: done %v, %d steps, result %s", id, st.Done, len(st.Steps), asJSON(t, st.Result))
		}
	}
}

// testConcurrentSteps: steps of one item saved at once are all kept.
func testConcurrentSteps(t *testing.T, s tpo.Store) {
	run := mustRun(t, s, "k")
	mustStart(t, s, run.ID, 0, Item("a"))
	const n = 12
	parallel(t, n, func(i int) error {
		return s.SaveStep(context.Background(), run.ID, "a", Step(i, float64(i)))
	})
	st := mustStart(t, s, run.ID, 0, Item("a"))
	if len(st.Steps) != n {
		t.Fatalf("%d steps saved, want %d", len(st.Steps), n)
	}
	for i, s := range st.Steps {
		if s.Step != i {
			t.Errorf("step %d holds step number %d", i, s.Step)
		}
	}
}
