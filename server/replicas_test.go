package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/pgtest"
	"github.com/tpoproject/tpo/openai"
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
		WatchReplicas(wctx, db, self, 50*time.Millisecond, 2*time.Second, nil, slog.New(slog.DiscardHandler))
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

// mortalStore is the store of a replica that can be killed: once dead,
// its writes fail, as those of a killed process never reach the database.
type mortalStore struct {
	*postgres.DB
	dead atomic.Bool
}

var errDead = errors.New("this replica was killed")

func (m *mortalStore) check() error {
	if m.dead.Load() {
		return errDead
	}
	return nil
}

func (m *mortalStore) OpenRun(ctx context.Context, run tpo.Run) (tpo.Run, bool, error) {
	if err := m.check(); err != nil {
		return tpo.Run{}, false, err
	}
	return m.DB.OpenRun(ctx, run)
}

func (m *mortalStore) StartItem(ctx context.Context, runID string, seq int, item tpo.Item) (tpo.ItemState, error) {
	if err := m.check(); err != nil {
		return tpo.ItemState{}, err
	}
	return m.DB.StartItem(ctx, runID, seq, item)
}

func (m *mortalStore) SaveStep(ctx context.Context, runID, itemID string, step tpo.Step) error {
	if err := m.check(); err != nil {
		return err
	}
	return m.DB.SaveStep(ctx, runID, itemID, step)
}

func (m *mortalStore) FinishItem(ctx context.Context, runID string, res tpo.Result) error {
	if err := m.check(); err != nil {
		return err
	}
	return m.DB.FinishItem(ctx, runID, res)
}

func (m *mortalStore) FinishRun(ctx context.Context, runID string, at time.Time) error {
	if err := m.check(); err != nil {
		return err
	}
	return m.DB.FinishRun(ctx, runID, at)
}

func (m *mortalStore) PutJob(ctx context.Context, job tpo.Job) error {
	if err := m.check(); err != nil {
		return err
	}
	return m.DB.PutJob(ctx, job)
}

func (m *mortalStore) ClaimJob(ctx context.Context, kind, id string, from tpo.Owner, to *tpo.Owner) (bool, error) {
	if err := m.check(); err != nil {
		return false, err
	}
	return m.DB.ClaimJob(ctx, kind, id, from, to)
}

// logBuffer collects what loggers write, from any goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

// tally counts the generations of each question of a batch, on every
// replica.
type tally struct {
	mu sync.Mutex
	n  map[int]int
}

func (c *tally) add(req tpo.GenerateRequest, questions int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range questions {
		if mentions(req, fmt.Sprintf("question %d", i)) {
			c.n[i]++
		}
	}
}

func (c *tally) of(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[i]
}

// TestReplicaTakesOverJobs: replica A, on a PostgreSQL store shared with
// replicas B and C on other machines, is killed with a background
// response in progress and a batch half done. Once A has been silent for
// the replica timeout, one of B and C fails the response, saying whose it
// was and how long it was silent, and one of them continues the batch,
// which completes with each request optimized once.
func TestReplicaTakesOverJobs(t *testing.T) {
	pgtest.URL(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after the servers' shutdowns
	const silence, beat, questions = time.Second, 100 * time.Millisecond, 6
	counts := &tally{n: map[int]int{}}
	logs := &logBuffer{}
	replica := func(owner *tpo.Owner, store interface {
		tpo.Store
		tpo.JobStore
	}) *testEnv {
		return newTestEnv(t, func(o *Options) {
			// The files are in the store, as tpo serve keeps them there.
			o.Store, o.Jobs, o.Files, o.Owner, o.BatchConcurrency = store, store, db.Files(1<<20), owner, 1
			o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		})
	}
	watch := func(e *testEnv, jobs JobTaker) (stop func()) {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			WatchReplicas(wctx, db, *e.opts.Owner, beat, silence, jobs, e.opts.Logger)
		}()
		return func() { cancel(); <-done }
	}
	started := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)

	// Replica A: a background response and the fourth request of a batch
	// hang until it is killed.
	a := &mortalStore{DB: db}
	ea := replica(&tpo.Owner{Host: "tpo-serve-7f9c-a", PID: 1, Started: started}, a)
	ea.up.mu.Lock()
	ea.up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
		if mentions(req, "slow") || mentions(req, "question 3") {
			<-ctx.Done()
			return ctx.Err()
		}
		counts.add(req, questions)
		return nil
	}
	ea.up.mu.Unlock()
	stopA := watch(ea, ea.srv)
	var r response
	decodeJSON(t, ea.postTo(t, "/v1/responses", `{"model":"m","input":"slow","background":true}`), http.StatusOK, &r)
	poll(t, ea, r.ID, func(r response) bool { return r.Status == "in_progress" })
	content := chatLines(questions, func(i int) string {
		return fmt.Sprintf(`{"messages":[{"role":"user","content":"question %d"}],"tpo":{"mode":"bon","width":2}}`, i)
	})
	b := ea.createBatch(t, ea.upload(t, content), "/v1/chat/completions")
	pollBatch(t, ea.ts, b.ID, func(b openai.Batch) bool { return b.RequestCounts.Completed == 3 })

	// Replicas B and C, on other machines, watch; they leave the jobs of
	// A alone while it beats.
	var live []*testEnv
	for _, host := range []string{"tpo-serve-7f9c-b", "tpo-serve-7f9c-c"} {
		e := replica(&tpo.Owner{Host: host, PID: 1, Started: time.Now().UTC().Truncate(time.Microsecond)}, db)
		e.up.mu.Lock()
		e.up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
			counts.add(req, questions)
			return nil
		}
		e.up.mu.Unlock()
		t.Cleanup(watch(e, e.srv))
		live = append(live, e)
	}
	time.Sleep(silence + silence/2)
	for _, k := range [][2]string{{kindResponse, r.ID}, {kindBatch, b.ID}} {
		if j, err := db.GetJob(ctx, k[0], k[1]); err != nil || j.Status != "in_progress" || j.Owner == nil || j.Owner.Host != "tpo-serve-7f9c-a" {
			t.Fatalf("%s %s of the live replica A: %+v, %v; want in_progress, A's", k[0], k[1], j, err)
		}
	}

	// A is killed: it writes nothing more, and stops beating.
	a.dead.Store(true)
	stopA()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_ = ea.srv.Shutdown(cancelled) // its tasks end; their writes fail
	ea.ts.Close()

	failed := poll(t, live[0], r.ID, func(r response) bool { return r.Status != "in_progress" })
	want := "interrupted: the tpo serve process that ran it (pid 1 on tpo-serve-7f9c-a) stopped answering for 1s"
	if failed.Status != "failed" || failed.Error == nil || failed.Error.Message != want {
		t.Errorf("A's background response: %s, %+v; want failed: %s", failed.Status, failed.Error, want)
	}
	done := pollBatch(t, live[1].ts, b.ID, func(b openai.Batch) bool { return batchFinal(b.Status) })
	if done.Status != "completed" || done.RequestCounts != (openai.BatchRequestCounts{Total: questions, Completed: questions}) {
		t.Fatalf("A's batch: %+v", done)
	}
	out := outputLines(t, live[0].ts, done.OutputFileID)
	for i := range questions {
		id := fmt.Sprintf("req-%d", i)
		if o, ok := out[id]; !ok || o.Response == nil || o.Response.StatusCode != http.StatusOK {
			t.Errorf("output line of %s: %+v", id, out[id])
		}
		if n := counts.of(i); n != 1 {
			t.Errorf("question %d was optimized %d times, want once", i, n)
		}
	}
	if len(out) != questions {
		t.Errorf("%d output lines, want %d", len(out), questions)
	}
	for _, k := range [][2]string{{kindResponse, r.ID}, {kindBatch, b.ID}} {
		if j, err := db.GetJob(ctx, k[0], k[1]); err != nil || j.Finished == nil || j.Owner != nil {
			t.Errorf("%s %s: %+v, %v; want finished, without an owner", k[0], k[1], j, err)
		}
	}
	if n := logs.count("took over a batch: continuing it here"); n != 1 {
		t.Errorf("the batch was taken over %d times, want once", n)
	}
	if n := logs.count("took over a background response: marked as failed"); n != 1 {
		t.Errorf("the response was taken over %d times, want once", n)
	}
}

// TestBatchAcrossReplicas: replicas A and B of tpo serve, processes of
// their own on one PostgreSQL store, keep the Files API's files in it, as
// tpo serve does with such a store: a file uploaded to A makes a batch
// created on B, which runs there, and A serves its output file; both list
// every file.
func TestBatchAcrossReplicas(t *testing.T) {
	pgtest.URL(t)
	ctx := context.Background()
	u := pgtest.Schema(t)
	replica := func(host string) *testEnv {
		db, err := postgres.Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() }) // after the server's shutdown
		return newTestEnv(t, func(o *Options) {
			o.Store, o.Jobs, o.Files = db, db, db.Files(1<<20)
			o.Owner = &tpo.Owner{Host: host, PID: 1, Started: time.Now().UTC().Truncate(time.Microsecond)}
		})
	}
	a, b := replica("tpo-serve-7f9c-a"), replica("tpo-serve-7f9c-b")
	const questions = 5
	content := chatLines(questions, func(i int) string {
		return fmt.Sprintf(`{"messages":[{"role":"user","content":"question %d"}],"tpo":{"mode":"bon","width":2}}`, i)
	})
	fileID := a.upload(t, content)
	created := b.createBatch(t, fileID, "/v1/chat/completions")
	done := pollBatch(t, a.ts, created.ID, func(b openai.Batch) bool { return batchFinal(b.Status) })
	if done.Status != "completed" || done.RequestCounts != (openai.BatchRequestCounts{Total: questions, Completed: questions}) || done.OutputFileID == nil {
		t.Fatalf("the batch created on B, seen from A: %+v", done)
	}
	if a.up.generations() != 0 || b.up.generations() == 0 {
		t.Errorf("generations on A %d, on B %d: want the batch run by B, which created it", a.up.generations(), b.up.generations())
	}
	out := outputLines(t, a.ts, done.OutputFileID)
	for i := range questions {
		if o, ok := out[fmt.Sprintf("req-%d", i)]; !ok || o.Response == nil || o.Response.StatusCode != http.StatusOK {
			t.Errorf("output line %d, downloaded from A: %+v", i, o)
		}
	}
	if len(out) != questions {
		t.Errorf("%d output lines, want %d", len(out), questions)
	}
	if got := readAll(t, get(t, b.ts.URL+"/v1/files/"+fileID+"/content", "")); got != content {
		t.Errorf("the input file, downloaded from B: %q", got)
	}
	for _, e := range []*testEnv{a, b} {
		var list openai.List[openai.FileObject]
		decodeJSON(t, get(t, e.ts.URL+"/v1/files", ""), http.StatusOK, &list)
		if len(list.Data) != 2 || list.Data[0].ID != *done.OutputFileID || list.Data[1].ID != fileID {
			t.Errorf("files listed by %s: %+v; want the output, then the input", e.opts.Owner.Host, list.Data)
		}
	}
}
