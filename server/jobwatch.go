package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tpoproject/tpo"
)

// taskID is the id, among the server's tasks, of the job of kind and id.
func taskID(kind, id string) string {
	if kind == kindBatch {
		return kindBatch + ":" + id
	}
	return id
}

// pollCancels cancels the jobs of this process that a client asked
// another process sharing the store to cancel (tpo.Job.CancelRequested).
// The workers call it every Options.JobPoll while tasks run.
func (s *Server) pollCancels(ctx context.Context) {
	self := *s.opts.Owner
	for _, kind := range []string{kindResponse, kindBatch} {
		jobs, err := s.opts.Jobs.UnfinishedJobs(ctx, kind, self.Host)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("looking for cancel requests failed", "kind", kind, "err", err)
			}
			continue
		}
		for _, j := range jobs {
			if j.CancelRequested == nil || !j.Owner.SameProcess(self) {
				continue
			}
			if s.bg.cancelOnce(taskID(kind, j.ID), errCancelled) {
				s.log.Info("cancelled as a client asked through another tpo serve process", "kind", kind, "id", j.ID,
					"asked", j.CancelRequested.Format(time.RFC3339Nano))
			}
		}
	}
}

// requestCancel records in the store that a client asked to cancel the
// job of kind and id, which another process runs (or ran, if it ended:
// the process that takes it over ends it cancelled), and returns the job.
func (s *Server) requestCancel(ctx context.Context, kind, id string) (tpo.Job, *apiError) {
	j, err := s.opts.Jobs.RequestCancel(ctx, kind, id, s.opts.Now())
	if err != nil {
		s.log.Error("recording a cancel request failed", "kind", kind, "id", id, "err", err)
		return tpo.Job{}, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "store_error",
			Message: fmt.Sprintf("recording the cancel of %s %s failed", kind, id)}
	}
	if j.Finished == nil {
		owner := "none"
		if j.Owner != nil {
			owner = j.Owner.String()
		}
		s.log.Info("cancel requested of a job another tpo serve process runs", "kind", kind, "id", id, "owner", owner)
	}
	return j, nil
}

// awaitEnd waits for job j, which another process runs, to finish, reading
// it from the store, and returns it as it is then: up to five times
// Options.JobPoll (the process that runs it looks for cancel requests as
// often, if all processes have the same setting), or until ctx ends.
func (s *Server) awaitEnd(ctx context.Context, j tpo.Job) tpo.Job {
	step := min(max(s.opts.JobPoll/4, 5*time.Millisecond), 250*time.Millisecond)
	deadline := time.NewTimer(5 * s.opts.JobPoll)
	defer deadline.Stop()
	tick := time.NewTicker(step)
	defer tick.Stop()
	for j.Finished == nil {
		select {
		case <-ctx.Done():
			return j
		case <-deadline.C:
			s.log.Warn("a job asked to cancel is slow to end", "kind", j.Kind, "id", j.ID)
			return j
		case <-tick.C:
		}
		got, err := s.opts.Jobs.GetJob(ctx, j.Kind, j.ID)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				s.log.Warn("reading a job asked to cancel failed", "kind", j.Kind, "id", j.ID, "err", err)
			}
			return j
		}
		j = got
	}
	return j
}
