package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

// RunJobs checks the tpo.JobStore contract: a job is kept as put (its
// data byte for byte, times to the microsecond, its owner), putting it
// again replaces it, ListJobs pages newest first, and UnfinishedJobs finds
// the jobs of a host that are not finished. Each test opens a new, empty
// store.
func RunJobs(t *testing.T, open func(t *testing.T) tpo.JobStore) {
	t.Run("PutGet", func(t *testing.T) { testPutGet(t, open(t)) })
	t.Run("List", func(t *testing.T) { testListJobs(t, open(t)) })
	t.Run("Unfinished", func(t *testing.T) { testUnfinishedJobs(t, open(t)) })
}

func job(kind, id string, created time.Time, owner *tpo.Owner) tpo.Job {
	return tpo.Job{Kind: kind, ID: id, Status: "queued", Created: created, Updated: created, Owner: owner,
		Data: json.RawMessage(`{"id": "` + id + `", "note": "kept \u00e9 as \u0000 written",  "n": [1, 2]}`)}
}

func sameJob(t *testing.T, got, want tpo.Job) {
	t.Helper()
	if string(got.Data) != string(want.Data) {
		t.Errorf("job %s data = %s, want %s byte for byte", want.ID, got.Data, want.Data)
	}
	got.Data, want.Data = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("job = %+v, want %+v", got, want)
	}
}

func testPutGet(t *testing.T, s tpo.JobStore) {
	ctx := context.Background()
	owner := &tpo.Owner{Host: "gpu-box", PID: 7, Started: epoch}
	j := job("response", "resp_1", epoch, owner)
	if err := s.PutJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, "response", "resp_1")
	if err != nil {
		t.Fatal(err)
	}
	sameJob(t, got, j)

	// Put again: replaced, finished and without an owner.
	done := epoch.Add(time.Minute)
	j.Status, j.Updated, j.Finished, j.Owner = "completed", done, &done, nil
	j.Data = json.RawMessage(`{"status":"completed"}`)
	if err := s.PutJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetJob(ctx, "response", "resp_1")
	if err != nil {
		t.Fatal(err)
	}
	sameJob(t, got, j)

	for _, k := range [][2]string{{"response", "resp_2"}, {"batch", "resp_1"}} {
		if _, err := s.GetJob(ctx, k[0], k[1]); !errors.Is(err, tpo.ErrNotFound) {
			t.Errorf("GetJob(%s, %s) = %v, want ErrNotFound", k[0], k[1], err)
		}
	}
	if err := s.PutJob(ctx, tpo.Job{Kind: "batch", ID: "b", Data: json.RawMessage(`{"x":`)}); err == nil {
		t.Error("PutJob with invalid JSON data succeeded")
	}
}

func testListJobs(t *testing.T, s tpo.JobStore) {
	ctx := context.Background()
	// b_2 and b_3 were created at the same time: the greater ID first.
	for id, secs := range map[string]int{"b_1": 0, "b_2": 2, "b_3": 2, "b_4": 3} {
		if err := s.PutJob(ctx, job("batch", id, epoch.Add(time.Duration(secs)*time.Second), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutJob(ctx, job("response", "r_1", epoch.Add(time.Hour), nil)); err != nil {
		t.Fatal(err)
	}
	ids := func(after string, limit int) []string {
		t.Helper()
		jobs, err := s.ListJobs(ctx, "batch", after, limit)
		if err != nil {
			t.Fatalf("ListJobs(after %q, limit %d): %v", after, limit, err)
		}
		out := []string{}
		for _, j := range jobs {
			out = append(out, j.ID)
		}
		return out
	}
	tests := []struct {
		after string
		limit int
		want  []string
	}{
		{"", 0, []string{"b_4", "b_3", "b_2", "b_1"}},
		{"", 2, []string{"b_4", "b_3"}},
		{"b_3", 1, []string{"b_2"}},
		{"b_2", 10, []string{"b_1"}},
		{"b_1", 10, []string{}},
	}
	for _, tt := range tests {
		if got := ids(tt.after, tt.limit); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ListJobs(after %q, limit %d) = %v, want %v", tt.after, tt.limit, got, tt.want)
		}
	}
	if _, err := s.ListJobs(ctx, "batch", "r_1", 10); !errors.Is(err, tpo.ErrNotFound) {
		t.Errorf("ListJobs after a job of another kind: %v, want ErrNotFound", err)
	}
}

func testUnfinishedJobs(t *testing.T, s tpo.JobStore) {
	ctx := context.Background()
	here := &tpo.Owner{Host: "gpu-box", PID: 7, Started: epoch}
	there := &tpo.Owner{Host: "other-box", PID: 7, Started: epoch}
	done := epoch.Add(time.Hour)
	put := func(j tpo.Job) {
		t.Helper()
		if err := s.PutJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	put(job("response", "r_late", epoch.Add(2*time.Second), here))
	put(job("response", "r_early", epoch.Add(time.Second), here))
	finished := job("response", "r_done", epoch, here)
	finished.Finished = &done
	put(finished)
	put(job("response", "r_there", epoch, there))
	put(job("response", "r_nobody", epoch, nil))
	put(job("batch", "b_here", epoch, here))

	got, err := s.UnfinishedJobs(ctx, "response", "gpu-box")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "r_early" || got[1].ID != "r_late" {
		t.Fatalf("UnfinishedJobs = %+v, want r_early and r_late", got)
	}
	sameJob(t, got[0], job("response", "r_early", epoch.Add(time.Second), here))
}
