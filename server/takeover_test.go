package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
	"github.com/tpoproject/tpo/tpotest"
)

// putOrphan stores a background response in progress, owned by owner.
func putOrphan(t *testing.T, store tpo.JobStore, id string, owner tpo.Owner) {
	t.Helper()
	data, _ := json.Marshal(storedResponse{Response: openai.Response{ID: id, Object: "response", Status: "in_progress", Background: true}})
	if err := store.PutJob(context.Background(), tpo.Job{Kind: kindResponse, ID: id, Status: "in_progress", Owner: &owner, Data: data}); err != nil {
		t.Fatal(err)
	}
}

// TestResumeJobsOnce: two servers of a machine starting at once take over
// the jobs of the one that was killed: each job once, the batch's
// requests each optimized once.
func TestResumeJobsOnce(t *testing.T) {
	dead := tpo.Owner{Host: "box", PID: 1, Started: time.Unix(1, 0)}
	e := newTestEnv(t, func(o *Options) { o.BatchConcurrency = 1; o.Owner = &dead })
	const questions = 4
	counts := &tally{n: map[int]int{}}
	e.up.mu.Lock()
	e.up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
		if mentions(req, "question 2") {
			<-ctx.Done()
			return ctx.Err()
		}
		counts.add(req, questions)
		return nil
	}
	e.up.mu.Unlock()
	content := chatLines(questions, func(i int) string {
		return fmt.Sprintf(`{"messages":[{"role":"user","content":"question %d"}],"tpo":{"mode":"bon","width":2}}`, i)
	})
	b := e.createBatch(t, e.upload(t, content), "/v1/chat/completions")
	pollBatch(t, e.ts, b.ID, func(b openai.Batch) bool { return b.RequestCounts.Completed == 2 })
	if err := e.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	putOrphan(t, e.store, "resp_orphan", dead)

	// Two servers of the same machine, same store and files.
	var servers []*Server
	for pid := 2; pid <= 3; pid++ {
		opts := e.opts
		opts.Owner = &tpo.Owner{Host: "box", PID: pid, Started: time.Unix(int64(pid), 0)}
		up := &fakeUpstream{policy: &tpotest.Policy{}}
		up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
			counts.add(req, questions)
			return nil
		}
		opts.Policy = up
		srv, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Shutdown(context.Background()) })
		servers = append(servers, srv)
	}
	var (
		mu              sync.Mutex
		failed, resumed []string
		wg              sync.WaitGroup
	)
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, r, err := srv.ResumeJobs(context.Background(), func(o tpo.Owner) bool { return o.PID != dead.PID })
			if err != nil {
				t.Errorf("ResumeJobs: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			failed, resumed = append(failed, f...), append(resumed, r...)
		}()
	}
	wg.Wait()
	if !slices.Equal(failed, []string{"resp_orphan"}) || !slices.Equal(resumed, []string{b.ID}) {
		t.Fatalf("failed %v, resumed %v; want each job once", failed, resumed)
	}
	ts := httptest.NewServer(servers[0])
	defer ts.Close()
	done := pollBatch(t, ts, b.ID, func(b openai.Batch) bool { return batchFinal(b.Status) })
	if done.Status != "completed" || done.RequestCounts != (openai.BatchRequestCounts{Total: questions, Completed: questions}) {
		t.Fatalf("done %+v", done)
	}
	for i := range questions {
		if n := counts.of(i); n != 1 {
			t.Errorf("question %d was optimized %d times, want once", i, n)
		}
	}
}

// staleStore is a job store shared across machines where every owner
// but the live ones has stopped beating.
type staleStore struct {
	*tpotest.MemStore
	live []tpo.Owner
}

func (s *staleStore) StaleJobs(ctx context.Context, kind string, olderThan time.Duration) ([]tpo.Job, error) {
	all, err := s.ListJobs(ctx, kind, "", 0)
	return slices.DeleteFunc(all, func(j tpo.Job) bool {
		return j.Finished != nil || j.Owner == nil || slices.ContainsFunc(s.live, j.Owner.SameProcess)
	}), err
}

// TestTakeOverStale: the background responses of a replica that stopped
// beating are failed, saying so; those of a live one are left alone, and
// so are the server's own, which look stale when its beats fail. A store
// not shared across machines has nothing stale.
func TestTakeOverStale(t *testing.T) {
	self := tpo.Owner{Host: "pod-b", PID: 1, Started: time.Unix(100, 0)}
	gone := tpo.Owner{Host: "pod-a", PID: 1, Started: time.Unix(50, 0)}
	live := tpo.Owner{Host: "pod-c", PID: 1, Started: time.Unix(60, 0)}
	store := &staleStore{MemStore: tpotest.NewMemStore(), live: []tpo.Owner{live}}
	e := newTestEnv(t, func(o *Options) { o.Owner, o.Store, o.Jobs = &self, store, store })
	for id, o := range map[string]tpo.Owner{"resp_gone": gone, "resp_live": live, "resp_self": self} {
		putOrphan(t, store, id, o)
	}
	failed, resumed, err := e.srv.TakeOverStale(context.Background(), time.Minute)
	if err != nil || !slices.Equal(failed, []string{"resp_gone"}) || len(resumed) != 0 {
		t.Fatalf("TakeOverStale = %v, %v, %v; want [resp_gone] failed", failed, resumed, err)
	}
	want := map[string]string{"resp_gone": "failed", "resp_live": "in_progress", "resp_self": "in_progress"}
	for id, status := range want {
		var r response
		decodeJSON(t, get(t, e.ts.URL+"/v1/responses/"+id, ""), http.StatusOK, &r)
		if r.Status != status {
			t.Errorf("%s is %s, want %s", id, r.Status, status)
		}
	}
	var r response
	decodeJSON(t, get(t, e.ts.URL+"/v1/responses/resp_gone", ""), http.StatusOK, &r)
	if msg := "interrupted: the tpo serve process that ran it (pid 1 on pod-a) stopped answering for 1m0s"; r.Error == nil || r.Error.Message != msg {
		t.Errorf("error %+v, want %q", r.Error, msg)
	}
	if failed, _, _ := e.srv.TakeOverStale(context.Background(), time.Minute); len(failed) != 0 {
		t.Errorf("taken over again: %v", failed)
	}

	// On a store of one machine: nothing.
	mem := tpotest.NewMemStore()
	putOrphan(t, mem, "resp_x", gone)
	e2 := newTestEnv(t, func(o *Options) { o.Owner, o.Store, o.Jobs = &self, mem, mem })
	if failed, resumed, err := e2.srv.TakeOverStale(context.Background(), time.Minute); failed != nil || resumed != nil || err != nil {
		t.Errorf("TakeOverStale on a MemStore = %v, %v, %v; want nothing", failed, resumed, err)
	}
}
