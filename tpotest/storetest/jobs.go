package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

// RunJobs checks the tpo.JobStore contract: a job is kept as put (its
// data byte for byte, times to the microsecond, its owner), putting it
// again replaces it, ListJobs pages newest first, UnfinishedJobs finds
// the jobs of a host that are not finished, and ClaimJob changes a job's
// owner only from the owner it names, once when claims race, and
// RequestCancel records the first cancel requested of a job that is not
// finished, which putting the job again keeps. Each test opens a new,
// empty store.
func RunJobs(t *testing.T, open func(t *testing.T) tpo.JobStore) {
	t.Run("PutGet", func(t *testing.T) { testPutGet(t, open(t)) })
	t.Run("List", func(t *testing.T) { testListJobs(t, open(t)) })
	t.Run("Unfinished", func(t *testing.T) { testUnfinishedJobs(t, open(t)) })
	t.Run("Claim", func(t *testing.T) { testClaimJob(t, open(t)) })
	t.Run("ClaimRace", func(t *testing.T) { testClaimRace(t, open(t)) })
	t.Run("CancelRequest", func(t *testing.T) { testRequestCancel(t, open(t)) })
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

func testClaimJob(t *testing.T, s tpo.JobStore) {
	ctx := context.Background()
	dead := tpo.Owner{Host: "gpu-box", PID: 7, Started: epoch}
	heir := tpo.Owner{Host: "other-box", PID: 9, Started: epoch.Add(time.Hour)}
	done := epoch.Add(time.Minute)
	put := func(j tpo.Job) tpo.Job {
		t.Helper()
		if err := s.PutJob(ctx, j); err != nil {
			t.Fatal(err)
		}
		return j
	}
	owned := put(job("batch", "b_owned", epoch, &dead))
	finished := job("batch", "b_finished", epoch, &dead)
	finished.Status, finished.Finished = "completed", &done
	put(finished)
	put(job("batch", "b_nobody", epoch, nil))

	// Not from the job's owner: another process, or the same pid on
	// another host or started at another time.
	for _, from := range []tpo.Owner{
		heir,
		{Host: "other-box", PID: dead.PID, Started: dead.Started},
		{Host: dead.Host, PID: dead.PID, Started: dead.Started.Add(time.Second)},
		{Host: dead.Host, PID: 8, Started: dead.Started},
	} {
		if ok, err := s.ClaimJob(ctx, "batch", "b_owned", from, &heir); ok || err != nil {
			t.Errorf("ClaimJob from %+v = %v, %v; want false: the job is %s's", from, ok, err, dead)
		}
	}
	for _, id := range []string{"b_finished", "b_nobody"} {
		if ok, err := s.ClaimJob(ctx, "batch", id, dead, &heir); ok || err != nil {
			t.Errorf("ClaimJob(%s) = %v, %v; want false", id, ok, err)
		}
	}
	// The owner as read from the store, its start in another zone: the
	// same process.
	from := dead
	from.Started = from.Started.In(time.FixedZone("UTC+2", 2*3600))
	if ok, err := s.ClaimJob(ctx, "batch", "b_owned", from, &heir); !ok || err != nil {
		t.Fatalf("ClaimJob from the owner = %v, %v; want true", ok, err)
	}
	got, err := s.GetJob(ctx, "batch", "b_owned")
	if err != nil {
		t.Fatal(err)
	}
	want := owned
	want.Owner = &heir
	sameJob(t, got, want) // only the owner changed
	if ok, err := s.ClaimJob(ctx, "batch", "b_owned", dead, &dead); ok || err != nil {
		t.Errorf("ClaimJob from the former owner = %v, %v; want false", ok, err)
	}
	// Released: no owner.
	if ok, err := s.ClaimJob(ctx, "batch", "b_owned", heir, nil); !ok || err != nil {
		t.Fatalf("ClaimJob to nil = %v, %v; want true", ok, err)
	}
	if got, err := s.GetJob(ctx, "batch", "b_owned"); err != nil || got.Owner != nil {
		t.Errorf("after the release: owner %+v, %v; want none", got.Owner, err)
	}
	for _, k := range [][2]string{{"batch", "b_unknown"}, {"response", "b_owned"}} {
		if _, err := s.ClaimJob(ctx, k[0], k[1], dead, &heir); !errors.Is(err, tpo.ErrNotFound) {
			t.Errorf("ClaimJob(%s, %s) = %v, want ErrNotFound", k[0], k[1], err)
		}
	}
}

// testClaimRace: processes claiming the same job from the same owner at
// once: exactly one wins, and the job is the winner's.
func testClaimRace(t *testing.T, s tpo.JobStore) {
	ctx := context.Background()
	dead := tpo.Owner{Host: "gpu-box", PID: 7, Started: epoch}
	const jobs, claimers = 5, 4
	for i := range jobs {
		if err := s.PutJob(ctx, job("response", fmt.Sprintf("r_%d", i), epoch, &dead)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range jobs {
		id := fmt.Sprintf("r_%d", i)
		won := make([]bool, claimers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for c := range claimers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := s.ClaimJob(ctx, "response", id, dead, &tpo.Owner{Host: fmt.Sprintf("replica-%d", c), PID: 1, Started: epoch})
				if err != nil {
					t.Errorf("ClaimJob(%s) by claimer %d: %v", id, c, err)
				}
				won[c] = ok
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for c, ok := range won {
			if ok && winner >= 0 {
				t.Errorf("%s: claimers %d and %d both won", id, winner, c)
			}
			if ok {
				winner = c
			}
		}
		if winner < 0 {
			t.Errorf("%s: no claimer won", id)
			continue
		}
		got, err := s.GetJob(ctx, "response", id)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("replica-%d", winner); got.Owner == nil || got.Owner.Host != want {
			t.Errorf("%s: owner %+v, want the winner's, %s", id, got.Owner, want)
		}
	}
}

// testRequestCancel: a cancel requested is recorded once, on a job not
// finished, changing nothing else; the owner's later writes keep it, as
// do claims and the listings.
func testRequestCancel(t *testing.T, s tpo.JobStore) {
	ctx := context.Background()
	owner := &tpo.Owner{Host: "gpu-box", PID: 7, Started: epoch}
	heir := &tpo.Owner{Host: "other-box", PID: 9, Started: epoch.Add(time.Hour)}
	first, later := epoch.Add(time.Minute), epoch.Add(2*time.Minute)
	put := func(j tpo.Job) tpo.Job {
		t.Helper()
		if err := s.PutJob(ctx, j); err != nil {
			t.Fatal(err)
		}
		return j
	}
	get := func(id string) tpo.Job {
		t.Helper()
		j, err := s.GetJob(ctx, "batch", id)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	running := put(job("batch", "b_running", epoch, owner))
	done := epoch.Add(time.Second)
	finished := job("batch", "b_finished", epoch, nil)
	finished.Status, finished.Finished = "completed", &done
	put(finished)

	got, err := s.RequestCancel(ctx, "batch", "b_running", first)
	if err != nil {
		t.Fatal(err)
	}
	want := running
	want.CancelRequested = &first
	sameJob(t, got, want)
	sameJob(t, get("b_running"), want)
	// Asked again: the first request stands.
	if got, err = s.RequestCancel(ctx, "batch", "b_running", later); err != nil {
		t.Fatal(err)
	}
	sameJob(t, got, want)

	// The owner writes the job again, knowing nothing of the request: it
	// stays, with what the owner wrote.
	owned := running
	owned.Status, owned.Updated, owned.Data = "in_progress", later, json.RawMessage(`{"status":"in_progress"}`)
	put(owned)
	want = owned
	want.CancelRequested = &first
	sameJob(t, get("b_running"), want)
	jobs, err := s.UnfinishedJobs(ctx, "batch", owner.Host)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("UnfinishedJobs = %+v, %v; want b_running", jobs, err)
	}
	sameJob(t, jobs[0], want)
	if ok, err := s.ClaimJob(ctx, "batch", "b_running", *owner, heir); !ok || err != nil {
		t.Fatalf("ClaimJob = %v, %v", ok, err)
	}
	want.Owner = heir
	sameJob(t, get("b_running"), want)
	// Finished, the job keeps the request that came before its end.
	end := owned
	end.Status, end.Finished, end.Owner = "cancelled", &later, nil
	put(end)
	want = end
	want.CancelRequested = &first
	sameJob(t, get("b_running"), want)

	// A finished job is left as it is.
	if got, err = s.RequestCancel(ctx, "batch", "b_finished", first); err != nil {
		t.Fatal(err)
	}
	sameJob(t, got, finished)
	sameJob(t, get("b_finished"), finished)

	// A job put with a cancel requested has it.
	asked := job("batch", "b_asked", epoch, owner)
	asked.CancelRequested = &first
	put(asked)
	sameJob(t, get("b_asked"), asked)

	for _, k := range [][2]string{{"batch", "b_unknown"}, {"response", "b_running"}} {
		if _, err := s.RequestCancel(ctx, k[0], k[1], first); !errors.Is(err, tpo.ErrNotFound) {
			t.Errorf("RequestCancel(%s, %s) = %v, want ErrNotFound", k[0], k[1], err)
		}
	}
}
