package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

// clock is a fake clock that moves one second each time it is read.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

var epoch = time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)

// openTest opens a store in a temporary directory with a fake clock, and
// checks its integrity when the test ends.
func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "runs.db"))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: epoch}
	db.now = c.now
	t.Cleanup(func() {
		if err := db.Check(context.Background()); err != nil {
			t.Errorf("Check: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func mustRun(t *testing.T, db *DB, key string) tpo.Run {
	t.Helper()
	r, _, err := db.OpenRun(context.Background(), tpo.Run{Key: key, Kind: "run", Source: "test.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func item(id string) tpo.Item {
	return tpo.Item{ID: id, Messages: []tpo.Message{
		{Role: tpo.RoleSystem, Content: "be kind"},
		{Role: tpo.RoleUser, Content: "prompt of " + id},
	}}
}

func step(n int, scores ...float64) tpo.Step {
	s := tpo.Step{Step: n, Usage: tpo.Usage{Requests: 1, PromptTokens: 10 * (n + 1), CompletionTokens: 100}}
	for i, sc := range scores {
		s.Candidates = append(s.Candidates, tpo.Candidate{Text: fmt.Sprintf("answer %d.%d", n, i), Score: sc})
	}
	if n > 0 {
		s.Chosen = &tpo.Ref{Step: n - 1, Index: 0}
		s.Loss, s.Gradient = "critique", "instructions"
		s.Calls = []tpo.Call{{Stage: tpo.StageLoss, Messages: []tpo.Message{{Role: tpo.RoleUser, Content: "compare"}}, N: 1}}
		s.Millis = map[tpo.Stage]int64{tpo.StageLoss: 1200, tpo.StageUpdate: 3400}
	}
	return s
}

// result makes a result whose score is the best of its steps.
func result(id string, steps []tpo.Step, errText string) tpo.Result {
	res := tpo.Result{ID: id, Prompt: "prompt of " + id, Steps: steps, Error: errText, ScoreCalls: len(steps)}
	first := true
	for i, s := range steps {
		for j, c := range s.Candidates {
			if first || c.Score > res.Score {
				res.Score, res.Response, res.Best = c.Score, c.Text, tpo.Ref{Step: i, Index: j}
				first = false
			}
			if i == 0 && (j == 0 || c.Score > res.InitialBest) {
				res.InitialBest = c.Score
			}
		}
		res.Usage.Add(s.Usage)
	}
	return res
}

// asJSON makes values comparable regardless of nil versus empty slices.
func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOpenRun(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)

	in := tpo.Run{Key: "k1", Kind: "run", Source: "data.jsonl", Config: json.RawMessage(`{"depth":2}`), ItemCount: 805}
	r1, created, err := db.OpenRun(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("first OpenRun: created = false")
	}
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(r1.ID) {
		t.Errorf("ID %q: want 12 hex digits", r1.ID)
	}
	if !r1.Created.Equal(epoch.Add(time.Second)) {
		t.Errorf("Created: got %v, want the clock's time", r1.Created)
	}

	r2, created, err := db.OpenRun(ctx, tpo.Run{Key: "k1", Kind: "other", Source: "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("OpenRun with an existing key: created = true")
	}
	if asJSON(t, r2) != asJSON(t, r1) {
		t.Errorf("OpenRun with an existing key:\ngot  %s\nwant %s", asJSON(t, r2), asJSON(t, r1))
	}

	// Runs without a key are never found again.
	a := mustRun(t, db, "")
	b := mustRun(t, db, "")
	if a.ID == b.ID {
		t.Errorf("two runs without a key share ID %q", a.ID)
	}
	got, err := db.GetRun(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != "" || got.Config != nil || got.Finished != nil {
		t.Errorf("run without key or config: got %+v", got.Run)
	}

	// A given ID and time are kept; a taken ID is an error.
	fin := epoch.Add(time.Hour)
	in = tpo.Run{ID: "mine", Kind: "serve", Source: "api", Created: epoch, Finished: &fin}
	r3, _, err := db.OpenRun(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if asJSON(t, r3) != asJSON(t, in) {
		t.Errorf("OpenRun with an ID:\ngot  %s\nwant %s", asJSON(t, r3), asJSON(t, in))
	}
	if _, _, err := db.OpenRun(ctx, tpo.Run{ID: "mine", Kind: "run"}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("OpenRun with a taken ID: got %v, want an error", err)
	}
	if _, _, err := db.OpenRun(ctx, tpo.Run{Kind: "run", Config: json.RawMessage(`{bad`)}); err == nil {
		t.Error("OpenRun with invalid config: got no error")
	}

	if err := db.FinishRun(ctx, r1.ID, fin); err != nil {
		t.Fatal(err)
	}
	got, err = db.GetRun(ctx, r1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Finished == nil || !got.Finished.Equal(fin) {
		t.Errorf("Finished after FinishRun: got %v, want %v", got.Finished, fin)
	}
	if string(got.Config) != `{"depth":2}` || got.ItemCount != 805 || got.Source != "data.jsonl" {
		t.Errorf("GetRun: got %+v", got.Run)
	}
}

func TestItemLifecycle(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run := mustRun(t, db, "k")

	st, err := db.StartItem(ctx, run.ID, 0, item("a"))
	if err != nil {
		t.Fatal(err)
	}
	want := tpo.ItemState{Seq: 0, Item: item("a")}
	if asJSON(t, st) != asJSON(t, want) {
		t.Errorf("new item:\ngot  %s\nwant %s", asJSON(t, st), asJSON(t, want))
	}

	steps := []tpo.Step{step(0, 1, 3, 2), step(1, 4, 2)}
	for _, s := range steps {
		if err := db.SaveStep(ctx, run.ID, "a", s); err != nil {
			t.Fatal(err)
		}
	}
	// Resuming: the item comes back with its steps, whatever the messages
	// given this time.
	st, err = db.StartItem(ctx, run.ID, 0, tpo.Item{ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	want.Steps = steps
	if asJSON(t, st) != asJSON(t, want) {
		t.Errorf("resumed item:\ngot  %s\nwant %s", asJSON(t, st), asJSON(t, want))
	}

	// Saving a step again replaces it.
	steps[1] = step(1, 5)
	steps[1].Notes = []string{"retried"}
	if err := db.SaveStep(ctx, run.ID, "a", steps[1]); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetItem(ctx, run.ID, "a")
	if err != nil {
		t.Fatal(err)
	}
	if asJSON(t, got.Steps) != asJSON(t, steps) {
		t.Errorf("after replacing step 1:\ngot  %s\nwant %s", asJSON(t, got.Steps), asJSON(t, steps))
	}
	items, _, err := db.ListItems(ctx, run.ID, tpo.ItemFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Status != tpo.StatusPending || items[0].Steps != 2 ||
		*items[0].Score != 5 || *items[0].InitialBest != 3 || items[0].Usage.PromptTokens != 30 {
		t.Errorf("pending item summary: got %+v", items)
	}

	steps = append(steps, step(2, 6))
	res := result("a", steps, "")
	res.Messages = item("a").Messages
	if err := db.FinishItem(ctx, run.ID, res); err != nil {
		t.Fatal(err)
	}
	for name, get := range map[string]func() (tpo.ItemState, error){
		"StartItem": func() (tpo.ItemState, error) { return db.StartItem(ctx, run.ID, 0, item("a")) },
		"GetItem":   func() (tpo.ItemState, error) { return db.GetItem(ctx, run.ID, "a") },
	} {
		st, err := get()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := tpo.ItemState{Seq: 0, Item: item("a"), Steps: steps, Done: true, Result: &res}
		if asJSON(t, st) != asJSON(t, want) {
			t.Errorf("%s of a finished item:\ngot  %s\nwant %s", name, asJSON(t, st), asJSON(t, want))
		}
	}

	// Finishing again replaces the result.
	res2 := result("a", steps[:1], "context length exceeded")
	if err := db.FinishItem(ctx, run.ID, res2); err != nil {
		t.Fatal(err)
	}
	st, err = db.GetItem(ctx, run.ID, "a")
	if err != nil {
		t.Fatal(err)
	}
	if st.Result == nil || st.Result.Error != res2.Error || st.Result.Score != res2.Score || len(st.Result.Steps) != 3 {
		t.Errorf("after a second FinishItem: got %s", asJSON(t, st.Result))
	}
}

func TestStepOrder(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run := mustRun(t, db, "")
	if _, err := db.StartItem(ctx, run.ID, 0, item("a")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{2, 10, 0, 1} {
		if err := db.SaveStep(ctx, run.ID, "a", step(n, float64(n))); err != nil {
			t.Fatal(err)
		}
	}
	st, err := db.GetItem(ctx, run.ID, "a")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, s := range st.Steps {
		got = append(got, s.Step)
	}
	if want := []int{0, 1, 2, 10}; !reflect.DeepEqual(got, want) {
		t.Errorf("step order: got %v, want %v", got, want)
	}
	if err := db.SaveStep(ctx, run.ID, "a", tpo.Step{Step: -1}); err == nil {
		t.Error("SaveStep of step -1: got no error")
	}
}

func TestStartItemConflicts(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run := mustRun(t, db, "")
	if _, err := db.StartItem(ctx, run.ID, 0, item("a")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		seq  int
		item tpo.Item
		want string
	}{
		{1, item("a"), `item "a" is recorded at position 0, not 1`},
		{0, item("b"), `position 0 holds item "a"`},
		{1, tpo.Item{}, "empty id"},
		{-1, item("c"), "negative seq"},
	}
	for _, tt := range tests {
		_, err := db.StartItem(ctx, run.ID, tt.seq, tt.item)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("StartItem(%d, %q): got %v, want an error containing %q", tt.seq, tt.item.ID, err, tt.want)
		}
	}
	if err := db.FinishItem(ctx, run.ID, tpo.Result{}); err == nil {
		t.Error("FinishItem without an id: got no error")
	}
}

func TestNotFound(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run := mustRun(t, db, "")
	if _, err := db.StartItem(ctx, run.ID, 0, item("a")); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"StartItem/run": func() error { _, err := db.StartItem(ctx, "nope", 0, item("a")); return err },
		"SaveStep/run":  func() error { return db.SaveStep(ctx, "nope", "a", step(0)) },
		"SaveStep/item": func() error { return db.SaveStep(ctx, run.ID, "zz", step(0)) },
		"FinishItem/run": func() error {
			return db.FinishItem(ctx, "nope", result("a", nil, ""))
		},
		"FinishItem/item": func() error { return db.FinishItem(ctx, run.ID, result("zz", nil, "")) },
		"FinishRun":       func() error { return db.FinishRun(ctx, "nope", epoch) },
		"GetRun":          func() error { _, err := db.GetRun(ctx, "nope"); return err },
		"GetItem/run":     func() error { _, err := db.GetItem(ctx, "nope", "a"); return err },
		"GetItem/item":    func() error { _, err := db.GetItem(ctx, run.ID, "zz"); return err },
		"ListItems":       func() error { _, _, err := db.ListItems(ctx, "nope", tpo.ItemFilter{}); return err },
		"Results": func() error {
			return db.Results(ctx, "nope", func(tpo.ItemState) error { return nil })
		},
		"DeleteRun": func() error { return db.DeleteRun(ctx, "nope") },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, tpo.ErrNotFound) {
			t.Errorf("%s: got %v, want tpo.ErrNotFound", name, err)
		}
	}
}

// TestConcurrentWriters saves steps from many goroutines at once, while
// others read: no write may fail with SQLITE_BUSY.
func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run := mustRun(t, db, "")
	const writers, steps = 32, 8
	var wg sync.WaitGroup
	errc := make(chan error, writers*(steps+2)+100)
	for w := range writers {
		wg.Go(func() {
			id := fmt.Sprintf("item-%02d", w)
			if _, err := db.StartItem(ctx, run.ID, w, item(id)); err != nil {
				errc <- err
				return
			}
			var all []tpo.Step
			for n := range steps {
				s := step(n, float64(w), float64(n))
				all = append(all, s)
				if err := db.SaveStep(ctx, run.ID, id, s); err != nil {
					errc <- err
				}
			}
			if err := db.FinishItem(ctx, run.ID, result(id, all, "")); err != nil {
				errc <- err
			}
		})
	}
	done := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := db.ListRuns(ctx); err != nil {
					errc <- err
				}
				if _, _, err := db.ListItems(ctx, run.ID, tpo.ItemFilter{Order: "-score"}); err != nil {
					errc <- err
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	s, err := db.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Items != writers || s.Done != writers {
		t.Errorf("after concurrent writes: %d items, %d done; want %d", s.Items, s.Done, writers)
	}
	n := 0
	err = db.Results(ctx, run.ID, func(st tpo.ItemState) error {
		if len(st.Steps) != steps || st.Result == nil || len(st.Result.Steps) != steps {
			t.Errorf("item %s: %d steps, result %v", st.Item.ID, len(st.Steps), st.Result != nil)
		}
		n++
		return nil
	})
	if err != nil || n != writers {
		t.Errorf("Results: %d items, %v", n, err)
	}
}

// TestTwoHandles writes through two DBs on one file, as two processes would.
func TestTwoHandles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	var dbs [2]*DB
	for i := range dbs {
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	run, _, err := dbs[0].OpenRun(ctx, tpo.Run{Kind: "run", Source: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 16*10)
	for w := range 16 {
		db := dbs[w%2]
		wg.Go(func() {
			id := fmt.Sprint(w)
			if _, err := db.StartItem(ctx, run.ID, w, item(id)); err != nil {
				errc <- err
				return
			}
			for n := range 5 {
				if err := db.SaveStep(ctx, run.ID, id, step(n, 1)); err != nil {
					errc <- err
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	_, total, err := dbs[1].ListItems(ctx, run.ID, tpo.ItemFilter{})
	if err != nil || total != 16 {
		t.Errorf("ListItems: total %d, %v; want 16", total, err)
	}
}

// fillRun makes a run of ten items: a0..a6 done with scores 0..6 and initial
// best 0, a7 failed, a8 and a9 pending (a8 with one step).
func fillRun(t *testing.T, db *DB) tpo.Run {
	t.Helper()
	ctx := context.Background()
	run := mustRun(t, db, "fill")
	for i := range 10 {
		id := fmt.Sprintf("a%d", i)
		it := item(id)
		if i == 3 {
			it.Messages[1].Content = "What is 100% of_this?"
		}
		if _, err := db.StartItem(ctx, run.ID, i, it); err != nil {
			t.Fatal(err)
		}
		switch {
		case i < 7:
			steps := []tpo.Step{step(0, 0), step(1, float64(i))}
			steps[1].Usage.CompletionTokens = 1000 * i
			if err := db.FinishItem(ctx, run.ID, result(id, steps, "")); err != nil {
				t.Fatal(err)
			}
		case i == 7:
			if err := db.FinishItem(ctx, run.ID, result(id, nil, "server said no")); err != nil {
				t.Fatal(err)
			}
		case i == 8:
			if err := db.SaveStep(ctx, run.ID, id, step(0, 2.5)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return run
}

func ids(items []tpo.ItemSummary) string {
	var s []string
	for _, it := range items {
		s = append(s, it.ID)
	}
	return strings.Join(s, " ")
}

func TestListItems(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run := fillRun(t, db)
	tests := []struct {
		f     tpo.ItemFilter
		want  string
		total int
	}{
		{tpo.ItemFilter{}, "a0 a1 a2 a3 a4 a5 a6 a7 a8 a9", 10},
		{tpo.ItemFilter{Status: tpo.StatusAll, Limit: 3}, "a0 a1 a2", 10},
		{tpo.ItemFilter{Limit: 3, Offset: 8}, "a8 a9", 10},
		{tpo.ItemFilter{Offset: 20}, "", 10},
		{tpo.ItemFilter{Status: tpo.StatusDone, Order: "-score", Limit: 2}, "a6 a5", 7},
		{tpo.ItemFilter{Status: tpo.StatusFailed}, "a7", 1},
		{tpo.ItemFilter{Status: tpo.StatusPending}, "a8 a9", 2},
		{tpo.ItemFilter{Order: "score"}, "a0 a1 a2 a8 a3 a4 a5 a6 a7 a9", 10},
		{tpo.ItemFilter{Order: "-score"}, "a6 a5 a4 a3 a8 a2 a1 a0 a7 a9", 10},
		{tpo.ItemFilter{Order: "-gain", Limit: 3}, "a6 a5 a4", 10},
		{tpo.ItemFilter{Order: "-tokens", Limit: 2}, "a6 a5", 10},
		{tpo.ItemFilter{Order: "-id", Limit: 2}, "a9 a8", 10},
		{tpo.ItemFilter{Order: "-seq", Limit: 2}, "a9 a8", 10},
		{tpo.ItemFilter{Query: "A3"}, "a3", 1},
		{tpo.ItemFilter{Query: "prompt OF a1"}, "a1", 1},
		{tpo.ItemFilter{Query: "100%"}, "a3", 1},
		{tpo.ItemFilter{Query: "0%"}, "a3", 1},
		{tpo.ItemFilter{Query: "of_this"}, "a3", 1},
		{tpo.ItemFilter{Query: "f_a"}, "", 0}, // "_" is not a wildcard
		{tpo.ItemFilter{Query: "a", Status: tpo.StatusPending, Order: "-seq"}, "a9 a8", 2},
	}
	for _, tt := range tests {
		items, total, err := db.ListItems(ctx, run.ID, tt.f)
		if err != nil {
			t.Errorf("%+v: %v", tt.f, err)
			continue
		}
		if got := ids(items); got != tt.want || total != tt.total {
			t.Errorf("%+v: got %q (total %d), want %q (total %d)", tt.f, got, total, tt.want, tt.total)
		}
	}
	for _, f := range []tpo.ItemFilter{{Status: "weird"}, {Order: "size"}, {Order: "--score"}} {
		if _, _, err := db.ListItems(ctx, run.ID, f); err == nil {
			t.Errorf("%+v: got no error", f)
		}
	}

	items, _, err := db.ListItems(ctx, run.ID, tpo.ItemFilter{})
	if err != nil {
		t.Fatal(err)
	}
	a5, a7, a9 := items[5], items[7], items[9]
	if a5.Status != tpo.StatusDone || *a5.Score != 5 || *a5.InitialBest != 0 || *a5.Gain != 5 || a5.Steps != 2 ||
		a5.Usage.CompletionTokens != 5100 || a5.Finished == nil || a5.Duration <= 0 || a5.Prompt != "prompt of a5" {
		t.Errorf("done item: got %+v", a5)
	}
	if a7.Status != tpo.StatusFailed || a7.Error != "server said no" || a7.Score != nil || a7.Gain != nil {
		t.Errorf("failed item: got %+v", a7)
	}
	if a9.Status != tpo.StatusPending || a9.Score != nil || a9.Finished != nil || a9.Steps != 0 {
		t.Errorf("pending item: got %+v", a9)
	}

	// Long prompts are cut in listings.
	long := item("long")
	long.Messages[1].Content = strings.Repeat("é", 1000)
	if _, err := db.StartItem(ctx, run.ID, 10, long); err != nil {
		t.Fatal(err)
	}
	items, _, err = db.ListItems(ctx, run.ID, tpo.ItemFilter{Query: "long"})
	if err != nil || len(items) != 1 {
		t.Fatalf("ListItems: %v %v", items, err)
	}
	if got := items[0].Prompt; got != strings.Repeat("é", tpo.PromptPreview) {
		t.Errorf("prompt preview: got %d bytes, want %d characters", len(got), tpo.PromptPreview)
	}
}

func TestListRuns(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run := fillRun(t, db)
	empty := mustRun(t, db, "empty")

	runs, err := db.ListRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].ID != empty.ID || runs[1].ID != run.ID {
		t.Fatalf("ListRuns: got %+v, want the empty run first", runs)
	}
	e := runs[0]
	if e.Items != 0 || e.MeanScore != nil || e.MeanGain != nil || e.Started != nil || e.Updated != nil {
		t.Errorf("empty run: got %+v", e)
	}
	s := runs[1]
	if s.Items != 10 || s.Done != 7 || s.Failed != 1 || s.Pending != 2 || s.Scored != 7 || s.Improved != 6 {
		t.Errorf("counts: got items %d done %d failed %d pending %d scored %d improved %d; want 10 7 1 2 7 6",
			s.Items, s.Done, s.Failed, s.Pending, s.Scored, s.Improved)
	}
	if s.MeanScore == nil || *s.MeanScore != 3 || s.MeanGain == nil || *s.MeanGain != 3 {
		t.Errorf("means: got score %v gain %v, want 3 and 3", s.MeanScore, s.MeanGain)
	}
	// 7 done items of 2 steps (10+100 and 20+1000i tokens), one pending step.
	wantUsage := tpo.Usage{Requests: 15, PromptTokens: 7*30 + 10, CompletionTokens: 7*100 + 21000 + 100}
	if s.Usage != wantUsage {
		t.Errorf("usage: got %+v, want %+v", s.Usage, wantUsage)
	}
	if s.Started == nil || s.Updated == nil || !s.Updated.After(*s.Started) {
		t.Errorf("started %v, updated %v", s.Started, s.Updated)
	}
	got, err := db.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if asJSON(t, got) != asJSON(t, s) {
		t.Errorf("GetRun:\ngot  %s\nwant %s", asJSON(t, got), asJSON(t, s))
	}
}

func TestResults(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run := fillRun(t, db)
	var seqs []int
	err := db.Results(ctx, run.ID, func(st tpo.ItemState) error {
		seqs = append(seqs, st.Seq)
		if st.Item.ID != fmt.Sprintf("a%d", st.Seq) {
			t.Errorf("seq %d holds %q", st.Seq, st.Item.ID)
		}
		if st.Done != (st.Result != nil) {
			t.Errorf("%s: done %v, result %v", st.Item.ID, st.Done, st.Result)
		}
		// The callback may write to the store.
		if st.Seq == 9 {
			return db.SaveStep(ctx, run.ID, st.Item.ID, step(0, 1))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !reflect.DeepEqual(seqs, want) {
		t.Errorf("Results order: got %v, want %v", seqs, want)
	}
	stop := errors.New("stop")
	n := 0
	err = db.Results(ctx, run.ID, func(tpo.ItemState) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("Results with a failing callback: got %v after %d calls, want stop after 3", err, n)
	}
}

func TestDeleteRun(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run := fillRun(t, db)
	keep := mustRun(t, db, "keep")
	if _, err := db.StartItem(ctx, keep.ID, 0, item("a0")); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteRun(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetItem(ctx, run.ID, "a0"); !errors.Is(err, tpo.ErrNotFound) {
		t.Errorf("GetItem of a deleted run: got %v", err)
	}
	for _, table := range []string{"items", "steps"} {
		var n int
		if err := db.db.QueryRow(`SELECT count(*) FROM `+table+` WHERE run_id = ?`, run.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d %s rows left of a deleted run", n, table)
		}
	}
	if _, err := db.GetItem(ctx, keep.ID, "a0"); err != nil {
		t.Errorf("other run's item: %v", err)
	}
	// The key can be used again.
	if _, created, err := db.OpenRun(ctx, tpo.Run{Key: "fill", Kind: "run"}); err != nil || !created {
		t.Errorf("OpenRun with a deleted run's key: created %v, %v", created, err)
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runs.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	run, _, err := db.OpenRun(ctx, tpo.Run{Key: "k", Kind: "run", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartItem(ctx, run.ID, 0, item("a")); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveStep(ctx, run.ID, "a", step(0, 1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	got, created, err := db.OpenRun(ctx, tpo.Run{Key: "k", Kind: "run"})
	if err != nil || created || got.ID != run.ID {
		t.Fatalf("OpenRun after reopening: got %q created %v, %v; want %q", got.ID, created, err, run.ID)
	}
	st, err := db.StartItem(ctx, run.ID, 0, item("a"))
	if err != nil {
		t.Fatal(err)
	}
	if asJSON(t, st.Steps) != asJSON(t, []tpo.Step{step(0, 1, 2)}) {
		t.Errorf("steps after reopening: got %s", asJSON(t, st.Steps))
	}
	var mode string
	if err := db.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode: got %q, %v; want wal", mode, err)
	}
	var fk int
	if err := db.db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys: got %d, %v; want 1", fk, err)
	}

	// A schema newer than the program is refused.
	if _, err := db.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	if err := db.Check(ctx); err == nil || !strings.Contains(err.Error(), "schema version") {
		t.Errorf("Check with a newer schema: got %v", err)
	}
	db.Close()
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a newer schema: got %v, want an error", err)
	}
}

func TestOpenBadPath(t *testing.T) {
	for _, p := range []string{"", ":memory:", "a?b", "file:x.db", filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")} {
		if db, err := Open(context.Background(), p); err == nil {
			db.Close()
			t.Errorf("Open(%q): got no error", p)
		}
	}
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run := fillRun(t, db)
	if err := db.Check(ctx); err != nil {
		t.Fatalf("Check of a sound store: %v", err)
	}
	// Break a foreign key behind the store's back.
	raw, err := sql.Open("sqlite", db.Path()+"?_pragma=foreign_keys(0)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`INSERT INTO steps (run_id, item_id, step, data, requests, prompt_tokens, completion_tokens, saved_at)
		VALUES (?, 'ghost', 0, '{}', 0, 0, 0, 0)`, run.ID); err != nil {
		t.Fatal(err)
	}
	err = db.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "steps row") {
		t.Errorf("Check with an orphan step: got %v, want an error naming steps", err)
	}
	if _, err := raw.Exec(`DELETE FROM steps WHERE item_id = 'ghost'`); err != nil {
		t.Fatal(err)
	}
}

func TestFinishItemWithoutSteps(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	run := mustRun(t, db, "")
	// An input that could not be read is recorded as a failed item.
	if _, err := db.StartItem(ctx, run.ID, 0, tpo.Item{ID: "line-3"}); err != nil {
		t.Fatal(err)
	}
	res := tpo.Result{ID: "line-3", Error: `data.jsonl:3: field "prompt": want a string, got number`}
	if err := db.FinishItem(ctx, run.ID, res); err != nil {
		t.Fatal(err)
	}
	st, err := db.GetItem(ctx, run.ID, "line-3")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Done || st.Result == nil || st.Result.Error != res.Error || st.Item.Messages != nil {
		t.Errorf("failed input: got %s", asJSON(t, st))
	}
}
