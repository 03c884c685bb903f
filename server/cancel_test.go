package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/files"
	"github.com/tpoproject/tpo/openai"
	"github.com/tpoproject/tpo/tpotest"
)

// twoReplicas returns two servers of one machine on one store and one
// files directory, as replicas behind one Service: a and b. a's
// generations wait, until cancelled, when hold says so.
func twoReplicas(t *testing.T, hold func(req tpo.GenerateRequest) bool) (a, b *testEnv) {
	t.Helper()
	store := tpotest.NewMemStore()
	dir, err := files.Open(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	replica := func(pid int) *testEnv {
		e := newTestEnv(t, func(o *Options) {
			o.Store, o.Jobs, o.Files, o.BatchConcurrency = store, store, dir, 1
			o.Owner = &tpo.Owner{Host: "box", PID: pid, Started: time.Unix(int64(pid), 0)}
			o.JobPoll = 20 * time.Millisecond
		})
		e.store = store
		return e
	}
	a, b = replica(1), replica(2)
	a.up.mu.Lock()
	a.up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
		if hold(req) {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	a.up.mu.Unlock()
	return a, b
}

// TestCancelResponseOnAnotherReplica: a background response that replica
// a runs shows its progress on replica b, from the store; cancelled
// through b, it ends cancelled, as a ends it once it sees the request.
func TestCancelResponseOnAnotherReplica(t *testing.T) {
	// The response waits in its first critique, once its samples are
	// scored.
	a, b := twoReplicas(t, func(req tpo.GenerateRequest) bool { return req.Stage == tpo.StageLoss })
	var r response
	decodeJSON(t, a.postTo(t, "/v1/responses", `{"model":"m","input":"slow","background":true}`), http.StatusOK, &r)
	progress := pollProgress(t, b, r.ID)
	if progress.Stage != "sample" || progress.Step != 0 || progress.Depth != 2 || len(progress.Scores) != 3 || progress.RunID == "" {
		t.Errorf("progress seen on b: %+v; want the scored samples of a's run", progress)
	}

	var c response
	decodeJSON(t, b.postTo(t, "/v1/responses/"+r.ID+"/cancel", ``), http.StatusOK, &c)
	if c.ID != r.ID || c.Object != "response" || !c.Background || c.Status != "cancelled" && c.Status != "in_progress" {
		t.Errorf("cancel through b answered %+v; want the response", c.Response)
	}
	done := poll(t, b, r.ID, func(r response) bool { return final(r.Status) })
	if done.Status != "cancelled" || done.Error != nil {
		t.Errorf("after the cancel through b: %s, %+v; want cancelled", done.Status, done.Error)
	}
	// a's run records why it stopped.
	run, _ := a.store.Run(progress.RunID)
	items := a.store.Items(run.ID)
	if len(items) != 1 || items[0].Result == nil || items[0].Result.Error != "cancelled: cancelled by the client" {
		t.Errorf("a's run %s: %+v", run.ID, items)
	}
	// Cancelled again, on either replica: as it is.
	for _, e := range []*testEnv{a, b} {
		decodeJSON(t, e.postTo(t, "/v1/responses/"+r.ID+"/cancel", ``), http.StatusOK, &c)
		if c.Status != "cancelled" {
			t.Errorf("cancelled again: %s", c.Status)
		}
	}
}

// TestCancelBatchOnAnotherReplica: a batch that replica a runs, cancelled
// through replica b, is cancelling at once on both, then cancelled by a,
// with the requests it had finished in its output file.
func TestCancelBatchOnAnotherReplica(t *testing.T) {
	a, b := twoReplicas(t, func(req tpo.GenerateRequest) bool { return mentions(req, "question 2") })
	content := chatLines(5, func(i int) string {
		return fmt.Sprintf(`{"messages":[{"role":"user","content":"question %d"}],"tpo":{"mode":"bon","width":2}}`, i)
	})
	batch := a.createBatch(t, a.upload(t, content), "/v1/chat/completions")
	pollBatch(t, b.ts, batch.ID, func(b openai.Batch) bool { return b.RequestCounts.Completed == 2 })

	var c openai.Batch
	decodeJSON(t, b.postTo(t, "/v1/batches/"+batch.ID+"/cancel", ``), http.StatusOK, &c)
	if c.ID != batch.ID || c.Status != "cancelling" || c.CancellingAt == nil {
		t.Errorf("cancel through b answered %+v; want the batch cancelling", c)
	}
	done := pollBatch(t, b.ts, batch.ID, func(b openai.Batch) bool { return batchFinal(b.Status) })
	if done.Status != "cancelled" || done.CancelledAt == nil || done.RequestCounts.Completed != 2 {
		t.Fatalf("after the cancel through b: %+v", done)
	}
	out, errs := outputLines(t, b.ts, done.OutputFileID), outputLines(t, b.ts, done.ErrorFileID)
	if len(out) != 2 || len(errs) != 3 || errs["req-4"].Error == nil || errs["req-4"].Error.Code != "batch_cancelled" {
		t.Errorf("output %v, errors %v", out, errs)
	}
}

// TestCancelledWhileItsReplicaWasDead: jobs asked to cancel after their
// replica died end cancelled when a live one takes them over: the
// background response at once, the batch once it has written its files.
func TestCancelledWhileItsReplicaWasDead(t *testing.T) {
	dead := tpo.Owner{Host: "tpo-serve-a", PID: 1, Started: time.Unix(1, 0)}
	self := tpo.Owner{Host: "tpo-serve-b", PID: 1, Started: time.Unix(2, 0)}
	store := &staleStore{MemStore: tpotest.NewMemStore(), live: []tpo.Owner{self}}
	e := newTestEnv(t, func(o *Options) { o.Store, o.Jobs, o.Owner, o.JobPoll = store, store, &self, 10*time.Millisecond })
	ctx := context.Background()

	putOrphan(t, store, "resp_orphan", dead)
	content := chatLines(3, func(i int) string {
		return fmt.Sprintf(`{"messages":[{"role":"user","content":"question %d"}],"tpo":{"mode":"bon","width":2}}`, i)
	})
	in := e.upload(t, content)
	expires := time.Now().Add(time.Hour).Unix()
	data, _ := json.Marshal(storedBatch{Batch: openai.Batch{ID: "batch_orphan", Object: "batch", Endpoint: "/v1/chat/completions",
		InputFileID: in, CompletionWindow: "24h", Status: "in_progress", ExpiresAt: &expires}})
	if err := store.PutJob(ctx, tpo.Job{Kind: kindBatch, ID: "batch_orphan", Status: "in_progress", Owner: &dead, Data: data}); err != nil {
		t.Fatal(err)
	}

	var r response
	decodeJSON(t, e.postTo(t, "/v1/responses/resp_orphan/cancel", ``), http.StatusOK, &r)
	if r.Status != "in_progress" {
		t.Errorf("cancel of a dead replica's response answered %s; want it as it is", r.Status)
	}
	var b openai.Batch
	decodeJSON(t, e.postTo(t, "/v1/batches/batch_orphan/cancel", ``), http.StatusOK, &b)
	if b.Status != "cancelling" {
		t.Errorf("cancel of a dead replica's batch answered %s; want cancelling", b.Status)
	}

	failed, resumed, err := e.srv.TakeOverStale(ctx, time.Minute)
	if err != nil || len(failed) != 1 || len(resumed) != 1 {
		t.Fatalf("TakeOverStale = %v, %v, %v", failed, resumed, err)
	}
	decodeJSON(t, get(t, e.ts.URL+"/v1/responses/resp_orphan", ""), http.StatusOK, &r)
	if r.Status != "cancelled" || r.Error != nil {
		t.Errorf("the response taken over: %s, %+v; want cancelled", r.Status, r.Error)
	}
	done := pollBatch(t, e.ts, "batch_orphan", func(b openai.Batch) bool { return batchFinal(b.Status) })
	if done.Status != "cancelled" || done.RequestCounts.Completed != 0 {
		t.Errorf("the batch taken over: %+v; want cancelled, no request optimized", done)
	}
	if n := e.up.generations(); n != 0 {
		t.Errorf("%d generations; want none for jobs asked to cancel", n)
	}
}

// pollProgress polls replica e for the progress of background response
// id until its samples are scored.
func pollProgress(t *testing.T, e *testEnv, id string) Progress {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var r struct {
			Status string    `json:"status"`
			TPO    *Progress `json:"tpo"`
		}
		decodeJSON(t, get(t, e.ts.URL+"/v1/responses/"+id, ""), http.StatusOK, &r)
		if r.Status == "in_progress" && r.TPO != nil && r.TPO.BestScore != nil {
			return *r.TPO
		}
		if time.Now().After(deadline) {
			t.Fatalf("response %s: %s, progress %+v", id, r.Status, r.TPO)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
