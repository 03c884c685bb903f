package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

// Reader is the read side of a store: what the web UI, reports and exports
// read runs with (package ui declares the same methods).
type Reader interface {
	// ListRuns returns every run, newest first (by Created, then by ID).
	ListRuns(ctx context.Context) ([]tpo.RunSummary, error)
	GetRun(ctx context.Context, runID string) (tpo.RunSummary, error)
	// ListItems returns a page of a run's items and how many pass the
	// filter in all.
	ListItems(ctx context.Context, runID string, f tpo.ItemFilter) ([]tpo.ItemSummary, int, error)
	GetItem(ctx context.Context, runID, itemID string) (tpo.ItemState, error)
	// Results calls fn with every item of a run in seq order, from one
	// snapshot; fn's first error stops it and is returned.
	Results(ctx context.Context, runID string, fn func(tpo.ItemState) error) error
	// DeleteRun deletes a run with its items and steps.
	DeleteRun(ctx context.Context, runID string) error
}

// ReadStore is a store with its read side, as *sqlite.DB and *postgres.DB.
type ReadStore interface {
	tpo.Store
	Reader
}

// RunRead checks the read side of the store that open returns, filled
// through its write side. open is called once per subtest and must return
// a new, empty store; it registers with t.Cleanup whatever closes it.
func RunRead(t *testing.T, open func(t *testing.T) ReadStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s ReadStore)
	}{
		{"ListRunsOrder", testListRunsOrder},
		{"RunAggregates", testRunAggregates},
		{"ListItems", testListItems},
		{"ItemSummaries", testItemSummaries},
		{"PendingSummary", testPendingSummary},
		{"PromptPreview", testPromptPreview},
		{"OddTexts", testReadOddTexts},
		{"GetItem", testGetItem},
		{"Results", testResults},
		{"DeleteRun", testDeleteRun},
		{"NotFound", testReadNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

func openAt(t *testing.T, s tpo.Store, id, key string, created time.Time) tpo.Run {
	t.Helper()
	r, _, err := s.OpenRun(context.Background(), tpo.Run{ID: id, Key: key, Kind: "run", Source: "test.jsonl", Created: created})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fillRun makes a run of ten items: a0..a6 done with scores 0..6 and initial
// best 0, a7 failed, a8 and a9 pending (a8 with one step of score 2.5).
func fillRun(t *testing.T, s tpo.Store) tpo.Run {
	t.Helper()
	run := openAt(t, s, "", "fill", epoch)
	for i := range 10 {
		id := fmt.Sprintf("a%d", i)
		it := Item(id)
		switch i {
		case 3:
			it.Messages[1].Content = "What is 100% of_this?"
		case 4:
			it.Messages[1].Content = `prompt of a4, with a back\slash`
		}
		mustStart(t, s, run.ID, i, it)
		switch {
		case i < 7:
			steps := []tpo.Step{Step(0, 0), Step(1, float64(i))}
			steps[1].Usage.CompletionTokens = 1000 * i
			mustFinish(t, s, run.ID, Result(id, steps, ""))
		case i == 7:
			mustFinish(t, s, run.ID, Result(id, nil, "server said no"))
		case i == 8:
			mustSave(t, s, run.ID, id, Step(0, 2.5))
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

func testListRunsOrder(t *testing.T, s ReadStore) {
	openAt(t, s, "old", "", epoch)
	openAt(t, s, "r-b", "", epoch.Add(time.Hour))
	openAt(t, s, "new", "", epoch.Add(2*time.Hour))
	openAt(t, s, "r-a", "", epoch.Add(time.Hour))
	openAt(t, s, "R-c", "", epoch.Add(time.Hour)) // ids compare as bytes
	runs, err := s.ListRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range runs {
		got = append(got, r.ID)
	}
	if want := []string{"new", "R-c", "r-a", "r-b", "old"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ListRuns: got %v, want %v (newest first, then by id)", got, want)
	}
}

func testRunAggregates(t *testing.T, s ReadStore) {
	ctx := context.Background()
	run := fillRun(t, s)
	empty := openAt(t, s, "", "empty", epoch.Add(time.Second))

	runs, err := s.ListRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].ID != empty.ID || runs[1].ID != run.ID {
		t.Fatalf("ListRuns: got %s, want the empty run first", asJSON(t, runs))
	}
	e := runs[0]
	if e.Items != 0 || e.Done != 0 || e.Pending != 0 || e.Scored != 0 || e.MeanScore != nil || e.MeanGain != nil ||
		e.Started != nil || e.Updated != nil || e.Usage != (tpo.Usage{}) {
		t.Errorf("empty run: got %s", asJSON(t, e))
	}
	checkRun(t, "the empty run's Run", e.Run, empty)
	r := runs[1]
	if r.Items != 10 || r.Done != 7 || r.Failed != 1 || r.Pending != 2 || r.Scored != 7 || r.Improved != 6 {
		t.Errorf("counts: got items %d done %d failed %d pending %d scored %d improved %d; want 10 7 1 2 7 6",
			r.Items, r.Done, r.Failed, r.Pending, r.Scored, r.Improved)
	}
	if r.MeanScore == nil || *r.MeanScore != 3 || r.MeanGain == nil || *r.MeanGain != 3 {
		t.Errorf("means: got score %v gain %v, want 3 and 3", r.MeanScore, r.MeanGain)
	}
	// 7 done items of 2 steps (10+100 and 20+1000i tokens), one pending step.
	wantUsage := tpo.Usage{Requests: 15, PromptTokens: 7*30 + 10, CompletionTokens: 7*100 + 21000 + 100}
	if r.Usage != wantUsage {
		t.Errorf("usage: got %+v, want %+v", r.Usage, wantUsage)
	}
	if r.Started == nil || r.Updated == nil || !r.Updated.After(*r.Started) {
		t.Errorf("started %v, updated %v; want both, updated after started", r.Started, r.Updated)
	}
	checkRun(t, "the run's Run", r.Run, run)
	for _, want := range runs {
		got, err := s.GetRun(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if asJSON(t, got) != asJSON(t, want) {
			t.Errorf("GetRun:\ngot  %s\nwant %s", asJSON(t, got), asJSON(t, want))
		}
	}
}

func testListItems(t *testing.T, s ReadStore) {
	ctx := context.Background()
	run := fillRun(t, s)
	tests := []struct {
		f     tpo.ItemFilter
		want  string
		total int
	}{
		{tpo.ItemFilter{}, "a0 a1 a2 a3 a4 a5 a6 a7 a8 a9", 10},
		{tpo.ItemFilter{Status: tpo.StatusAll, Limit: 3}, "a0 a1 a2", 10},
		{tpo.ItemFilter{Limit: 3, Offset: 8}, "a8 a9", 10},
		{tpo.ItemFilter{Limit: -1, Offset: 7}, "a7 a8 a9", 10},
		{tpo.ItemFilter{Offset: 20}, "", 10},
		{tpo.ItemFilter{Offset: -3, Limit: 1}, "a0", 10},
		{tpo.ItemFilter{Status: tpo.StatusDone, Order: "-score", Limit: 2}, "a6 a5", 7},
		{tpo.ItemFilter{Status: tpo.StatusFailed}, "a7", 1},
		{tpo.ItemFilter{Status: tpo.StatusPending}, "a8 a9", 2},
		// Items without a score come last either way; ties go by seq.
		{tpo.ItemFilter{Order: "score"}, "a0 a1 a2 a8 a3 a4 a5 a6 a7 a9", 10},
		{tpo.ItemFilter{Order: "-score"}, "a6 a5 a4 a3 a8 a2 a1 a0 a7 a9", 10},
		{tpo.ItemFilter{Order: "gain"}, "a0 a8 a1 a2 a3 a4 a5 a6 a7 a9", 10},
		{tpo.ItemFilter{Order: "-gain", Limit: 3}, "a6 a5 a4", 10},
		{tpo.ItemFilter{Order: "-gain"}, "a6 a5 a4 a3 a2 a1 a0 a8 a7 a9", 10},
		{tpo.ItemFilter{Order: "tokens"}, "a7 a9 a8 a0 a1 a2 a3 a4 a5 a6", 10},
		{tpo.ItemFilter{Order: "-tokens", Limit: 2}, "a6 a5", 10},
		{tpo.ItemFilter{Order: "-tokens", Offset: 6}, "a0 a8 a7 a9", 10},
		{tpo.ItemFilter{Order: "-id", Limit: 2}, "a9 a8", 10},
		{tpo.ItemFilter{Order: "id", Limit: 2}, "a0 a1", 10},
		{tpo.ItemFilter{Order: "-seq", Limit: 2}, "a9 a8", 10},
		{tpo.ItemFilter{Order: "seq", Offset: 9}, "a9", 10},
		{tpo.ItemFilter{Order: "duration", Status: tpo.StatusFailed}, "a7", 1},
		{tpo.ItemFilter{Order: "-duration", Status: tpo.StatusFailed}, "a7", 1},
		{tpo.ItemFilter{Query: "A3"}, "a3", 1},
		{tpo.ItemFilter{Query: "prompt OF a1"}, "a1", 1},
		{tpo.ItemFilter{Query: "100%"}, "a3", 1},
		{tpo.ItemFilter{Query: "0%"}, "a3", 1},
		{tpo.ItemFilter{Query: "of_this"}, "a3", 1},
		{tpo.ItemFilter{Query: "f_a"}, "", 0}, // "_" is not a wildcard
		{tpo.ItemFilter{Query: "%"}, "a3", 1},
		{tpo.ItemFilter{Query: `k\s`}, "a4", 1},
		{tpo.ItemFilter{Query: `\`}, "a4", 1},
		{tpo.ItemFilter{Query: "'"}, "", 0},
		{tpo.ItemFilter{Query: "a", Status: tpo.StatusPending, Order: "-seq"}, "a9 a8", 2},
		{tpo.ItemFilter{Query: "prompt of", Status: tpo.StatusDone, Order: "-score", Limit: 2, Offset: 1}, "a5 a4", 6},
	}
	for _, tt := range tests {
		items, total, err := s.ListItems(ctx, run.ID, tt.f)
		if err != nil {
			t.Errorf("%+v: %v", tt.f, err)
			continue
		}
		if got := ids(items); got != tt.want || total != tt.total {
			t.Errorf("%+v: got %q (total %d), want %q (total %d)", tt.f, got, total, tt.want, tt.total)
		}
	}
	// Every order gives every item once.
	for _, key := range tpo.ItemOrderKeys {
		for _, o := range []string{key, "-" + key} {
			items, total, err := s.ListItems(ctx, run.ID, tpo.ItemFilter{Order: tpo.ItemOrder(o)})
			if err != nil || len(items) != 10 || total != 10 {
				t.Errorf("order %s: %d items, total %d, %v", o, len(items), total, err)
			}
		}
	}
	for _, f := range []tpo.ItemFilter{{Status: "weird"}, {Order: "size"}, {Order: "--score"}, {Order: "score; DROP TABLE items"}} {
		if _, _, err := s.ListItems(ctx, run.ID, f); err == nil {
			t.Errorf("%+v: got no error", f)
		}
	}
}

func testItemSummaries(t *testing.T, s ReadStore) {
	run := fillRun(t, s)
	items, total, err := s.ListItems(context.Background(), run.ID, tpo.ItemFilter{})
	if err != nil || total != 10 || len(items) != 10 {
		t.Fatalf("ListItems: %d items, total %d, %v", len(items), total, err)
	}
	for i, it := range items {
		if it.RunID != run.ID || it.Seq != i || it.ID != fmt.Sprintf("a%d", i) || it.Started.IsZero() || it.Updated.Before(it.Started) {
			t.Errorf("item %d: got %s", i, asJSON(t, it))
		}
	}
	a5, a7, a8, a9 := items[5], items[7], items[8], items[9]
	if a5.Status != tpo.StatusDone || a5.Score == nil || *a5.Score != 5 || a5.InitialBest == nil || *a5.InitialBest != 0 ||
		a5.Gain == nil || *a5.Gain != 5 || a5.Steps != 2 || a5.Error != "" || a5.Prompt != "prompt of a5" ||
		a5.Usage != (tpo.Usage{Requests: 2, PromptTokens: 30, CompletionTokens: 5100}) {
		t.Errorf("done item: got %s", asJSON(t, a5))
	}
	if a5.Finished == nil || a5.Finished.Before(a5.Started) || a5.Duration != a5.Finished.Sub(a5.Started) || a5.Duration < 0 {
		t.Errorf("done item: started %v, finished %v, duration %v", a5.Started, a5.Finished, a5.Duration)
	}
	if a7.Status != tpo.StatusFailed || a7.Error != "server said no" || a7.Score != nil || a7.InitialBest != nil ||
		a7.Gain != nil || a7.Steps != 0 || a7.Finished == nil {
		t.Errorf("failed item: got %s", asJSON(t, a7))
	}
	if a8.Status != tpo.StatusPending || a8.Score == nil || *a8.Score != 2.5 || a8.InitialBest == nil || *a8.InitialBest != 2.5 ||
		a8.Gain == nil || *a8.Gain != 0 || a8.Steps != 1 || a8.Finished != nil || a8.Duration != a8.Updated.Sub(a8.Started) ||
		a8.Usage != (tpo.Usage{Requests: 1, PromptTokens: 10, CompletionTokens: 100}) {
		t.Errorf("pending item with a step: got %s", asJSON(t, a8))
	}
	if a9.Status != tpo.StatusPending || a9.Score != nil || a9.InitialBest != nil || a9.Gain != nil || a9.Finished != nil ||
		a9.Steps != 0 || a9.Usage != (tpo.Usage{}) || a9.Error != "" {
		t.Errorf("pending item: got %s", asJSON(t, a9))
	}
}

// testPendingSummary: while an item is not finished its listed score,
// initial best and usage follow its saved steps; once finished, its result's.
func testPendingSummary(t *testing.T, s ReadStore) {
	ctx := context.Background()
	run := mustRun(t, s, "k")
	mustStart(t, s, run.ID, 0, Item("a"))
	summary := func() tpo.ItemSummary {
		t.Helper()
		items, _, err := s.ListItems(ctx, run.ID, tpo.ItemFilter{})
		if err != nil || len(items) != 1 {
			t.Fatalf("ListItems: %v, %v", items, err)
		}
		return items[0]
	}
	check := func(what string, steps int, score, initial *float64, usage tpo.Usage) {
		t.Helper()
		it := summary()
		if it.Steps != steps || !sameFloat(it.Score, score) || !sameFloat(it.InitialBest, initial) || it.Usage != usage {
			t.Errorf("%s: got steps %d, score %v, initial best %v, usage %+v; want %d, %v, %v, %+v",
				what, it.Steps, fmtFloat(it.Score), fmtFloat(it.InitialBest), it.Usage, steps, fmtFloat(score), fmtFloat(initial), usage)
		}
	}
	f := func(v float64) *float64 { return &v }

	check("new item", 0, nil, nil, tpo.Usage{})
	mustSave(t, s, run.ID, "a", tpo.Step{Step: 1, Usage: tpo.Usage{Requests: 2}})
	check("a step without candidates", 1, nil, nil, tpo.Usage{Requests: 2})
	mustSave(t, s, run.ID, "a", Step(0, 1, 3, 2))
	check("steps 0 and 1", 2, f(3), f(3), tpo.Usage{Requests: 3, PromptTokens: 10, CompletionTokens: 100})
	mustSave(t, s, run.ID, "a", Step(1, 7))
	check("step 1 replaced", 2, f(7), f(3), tpo.Usage{Requests: 2, PromptTokens: 30, CompletionTokens: 200})
	mustSave(t, s, run.ID, "a", Step(1, 2))
	check("step 1 replaced by a worse one", 2, f(3), f(3), tpo.Usage{Requests: 2, PromptTokens: 30, CompletionTokens: 200})

	res := Result("a", []tpo.Step{Step(0, 1, 3, 2), Step(1, 2), Step(2, 5)}, "")
	res.Usage = tpo.Usage{Requests: 9, PromptTokens: 99, CompletionTokens: 999}
	mustFinish(t, s, run.ID, res)
	check("finished", 3, f(5), f(3), res.Usage)
	// A step saved after the item finished is counted, but the item's
	// figures stay its result's.
	mustSave(t, s, run.ID, "a", Step(3, 100))
	check("a step after finishing", 4, f(5), f(3), res.Usage)

	// A result without candidates has no score.
	mustStart(t, s, run.ID, 1, Item("b"))
	mustFinish(t, s, run.ID, tpo.Result{ID: "b", Steps: []tpo.Step{{Step: 0}}, Score: 4, InitialBest: 4})
	items, _, err := s.ListItems(ctx, run.ID, tpo.ItemFilter{Query: "b"})
	if err != nil || len(items) != 1 || items[0].Score != nil || items[0].InitialBest != nil || items[0].Status != tpo.StatusDone {
		t.Errorf("result without candidates: got %s, %v", asJSON(t, items), err)
	}
}

func sameFloat(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func fmtFloat(f *float64) string {
	if f == nil {
		return "nil"
	}
	return fmt.Sprint(*f)
}

// testPromptPreview: listings hold the first tpo.PromptPreview characters
// of the prompt.
func testPromptPreview(t *testing.T, s ReadStore) {
	run := mustRun(t, s, "k")
	long := Item("long")
	long.Messages[1].Content = strings.Repeat("é", 1000)
	mustStart(t, s, run.ID, 0, long)
	short := Item("short")
	short.Messages[1].Content = "é"
	mustStart(t, s, run.ID, 1, short)
	items, _, err := s.ListItems(context.Background(), run.ID, tpo.ItemFilter{})
	if err != nil || len(items) != 2 {
		t.Fatalf("ListItems: %v %v", items, err)
	}
	if got := items[0].Prompt; got != strings.Repeat("é", tpo.PromptPreview) {
		t.Errorf("prompt preview: got %d bytes, want %d characters", len(got), tpo.PromptPreview)
	}
	if items[1].Prompt != "é" {
		t.Errorf("short prompt: got %q", items[1].Prompt)
	}
	st, err := s.GetItem(context.Background(), run.ID, "long")
	if err != nil || st.Item.Prompt() != long.Prompt() {
		t.Errorf("GetItem: the whole prompt is not kept (%d bytes), %v", len(st.Item.Prompt()), err)
	}
}

// testReadOddTexts: items whose texts hold NUL bytes and invalid UTF-8 are
// listed, found and read back.
func testReadOddTexts(t *testing.T, s ReadStore) {
	ctx := context.Background()
	const odd = "nul \x00 here, bad \xff utf-8 🙂"
	run := mustRun(t, s, "k")
	it := tpo.Item{ID: "odd 🙂", Messages: []tpo.Message{{Role: tpo.RoleUser, Content: odd}}}
	mustStart(t, s, run.ID, 0, it)
	mustFinish(t, s, run.ID, tpo.Result{ID: it.ID, Error: "failed: " + odd})
	for _, q := range []string{"", "🙂", "NUL "} {
		items, total, err := s.ListItems(ctx, run.ID, tpo.ItemFilter{Query: q})
		if err != nil || total != 1 || len(items) != 1 || items[0].ID != it.ID || items[0].Status != tpo.StatusFailed ||
			!strings.HasPrefix(items[0].Error, "failed: nul ") || !strings.HasPrefix(items[0].Prompt, "nul ") {
			t.Errorf("ListItems(%q): got %s, total %d, %v", q, asJSON(t, items), total, err)
		}
	}
	st, err := s.GetItem(ctx, run.ID, it.ID)
	if err != nil {
		t.Fatal(err)
	}
	res := tpo.Result{ID: it.ID, Error: "failed: " + odd}
	checkState(t, "GetItem", st, tpo.ItemState{Item: it, Done: true, Result: &res})
}

func testGetItem(t *testing.T, s ReadStore) {
	ctx := context.Background()
	run := fillRun(t, s)
	for _, id := range []string{"a0", "a7", "a8", "a9"} {
		got, err := s.GetItem(ctx, run.ID, id)
		if err != nil {
			t.Fatal(err)
		}
		seq := int(id[1] - '0')
		checkState(t, "GetItem "+id, got, mustStart(t, s, run.ID, seq, Item(id)))
	}
	res := fullResult("full")
	mustStart(t, s, run.ID, 10, Item("full"))
	mustFinish(t, s, run.ID, res)
	got, err := s.GetItem(ctx, run.ID, "full")
	if err != nil {
		t.Fatal(err)
	}
	checkState(t, "GetItem of a full result", got, tpo.ItemState{Seq: 10, Item: Item("full"), Steps: res.Steps, Done: true, Result: &res})
}

func testResults(t *testing.T, s ReadStore) {
	ctx := context.Background()
	run := fillRun(t, s)
	// Another run's items are not among the results.
	other := mustRun(t, s, "other")
	mustStart(t, s, other.ID, 0, Item("x"))

	var seqs []int
	err := s.Results(ctx, run.ID, func(st tpo.ItemState) error {
		seqs = append(seqs, st.Seq)
		want, err := s.GetItem(ctx, run.ID, st.Item.ID)
		if err != nil {
			return err
		}
		if st.Seq < 9 {
			checkState(t, "Results item "+st.Item.ID, st, want)
		}
		// The callback may write to the store.
		if st.Seq == 9 {
			return s.SaveStep(ctx, run.ID, st.Item.ID, Step(0, 1))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !reflect.DeepEqual(seqs, want) {
		t.Errorf("Results order: got %v, want %v", seqs, want)
	}
	st, err := s.GetItem(ctx, run.ID, "a9")
	if err != nil || len(st.Steps) != 1 {
		t.Errorf("the step the callback saved: %d steps, %v", len(st.Steps), err)
	}

	stop := errors.New("stop")
	n := 0
	err = s.Results(ctx, run.ID, func(tpo.ItemState) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("Results with a failing callback: got %v after %d calls, want stop after 3", err, n)
	}

	empty := mustRun(t, s, "empty")
	if err := s.Results(ctx, empty.ID, func(tpo.ItemState) error { return errors.New("called") }); err != nil {
		t.Errorf("Results of a run without items: %v", err)
	}
}

func testDeleteRun(t *testing.T, s ReadStore) {
	ctx := context.Background()
	run := fillRun(t, s)
	keep := mustRun(t, s, "keep")
	mustStart(t, s, keep.ID, 0, Item("a0"))
	mustSave(t, s, keep.ID, "a0", Step(0, 1))
	if err := s.DeleteRun(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, "GetRun of a deleted run", func() error { _, err := s.GetRun(ctx, run.ID); return err }())
	wantNotFound(t, "GetItem of a deleted run", func() error { _, err := s.GetItem(ctx, run.ID, "a0"); return err }())
	wantNotFound(t, "DeleteRun again", s.DeleteRun(ctx, run.ID))
	runs, err := s.ListRuns(ctx)
	if err != nil || len(runs) != 1 || runs[0].ID != keep.ID || runs[0].Items != 1 {
		t.Errorf("ListRuns after a deletion: %s, %v", asJSON(t, runs), err)
	}
	if st, err := s.GetItem(ctx, keep.ID, "a0"); err != nil || len(st.Steps) != 1 {
		t.Errorf("the other run's item: %d steps, %v", len(st.Steps), err)
	}
	// The key can be used again, by a new run with new items.
	r, created, err := s.OpenRun(ctx, tpo.Run{Key: "fill", Kind: "run"})
	if err != nil || !created {
		t.Fatalf("OpenRun with a deleted run's key: created %v, %v", created, err)
	}
	if st := mustStart(t, s, r.ID, 0, Item("a0")); len(st.Steps) != 0 || st.Done {
		t.Errorf("an item of the new run holds the deleted run's data: %s", asJSON(t, st))
	}
}

// testReadNotFound: a run or item that does not exist is not found, also
// when its id holds what no stored id may (a NUL byte, invalid UTF-8: ids
// a client puts in a URL), rather than failing the read.
func testReadNotFound(t *testing.T, s ReadStore) {
	ctx := context.Background()
	run := mustRun(t, s, "")
	mustStart(t, s, run.ID, 0, Item("a"))
	for _, nope := range []string{"nope", "nul\x00", "bad \xff"} {
		calls := map[string]func() error{
			"GetRun":       func() error { _, err := s.GetRun(ctx, nope); return err },
			"GetItem/run":  func() error { _, err := s.GetItem(ctx, nope, "a"); return err },
			"GetItem/item": func() error { _, err := s.GetItem(ctx, run.ID, nope); return err },
			"ListItems":    func() error { _, _, err := s.ListItems(ctx, nope, tpo.ItemFilter{}); return err },
			"Results": func() error {
				return s.Results(ctx, nope, func(tpo.ItemState) error { return nil })
			},
			"DeleteRun": func() error { return s.DeleteRun(ctx, nope) },
		}
		for name, call := range calls {
			wantNotFound(t, fmt.Sprintf("%s(%q)", name, nope), call())
		}
	}
}
