package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// ResumeJobs takes over, at start-up, the jobs that processes of this
// machine left unfinished when they ended (killed, crashed; alive tells
// whether an owner still runs): their background responses are stored as
// failed, saying so (cancelled, when a client asked to cancel them), and
// their batches continue here (and end cancelled when a client asked).
// Each job is claimed first (tpo.JobStore.ClaimJob), so that of several
// processes starting at once, one takes it. It returns the ids of the
// responses ended (failed) and of the batches resumed.
func (s *Server) ResumeJobs(ctx context.Context, alive func(tpo.Owner) bool) (failed, resumed []string, err error) {
	self := s.opts.Owner
	if s.opts.Jobs == nil || self == nil {
		return nil, nil, nil
	}
	find := func(ctx context.Context, kind string) ([]tpo.Job, error) {
		jobs, err := s.opts.Jobs.UnfinishedJobs(ctx, kind, self.Host)
		return slices.DeleteFunc(jobs, func(j tpo.Job) bool { return j.Owner.SameProcess(*self) || alive(*j.Owner) }), err
	}
	why := func(o tpo.Owner) string {
		return fmt.Sprintf("(%s, started %s) ended before it finished", o, o.Started.Local().Format(time.DateTime))
	}
	return s.takeOver(ctx, find, why)
}

// TakeOverStale takes over the jobs of the tpo serve processes, on any
// machine, that have not said they are alive (tpo.Liveness.Beat) for
// silentFor: a killed replica, a lost machine, a pod that never comes
// back under its name. Their background responses are stored as failed,
// saying who stopped answering and for how long (cancelled, when a client
// asked to cancel them), and their batches continue here, each claimed
// first, so that of several replicas watching, one takes it. The store
// must be shared across machines (tpo.JobLiveness); with another, or
// without an Owner, it does nothing. It returns the ids of the responses
// ended (failed) and of the batches resumed.
func (s *Server) TakeOverStale(ctx context.Context, silentFor time.Duration) (failed, resumed []string, err error) {
	store, ok := s.opts.Jobs.(tpo.JobLiveness)
	self := s.opts.Owner
	if !ok || self == nil {
		return nil, nil, nil
	}
	find := func(ctx context.Context, kind string) ([]tpo.Job, error) {
		jobs, err := store.StaleJobs(ctx, kind, silentFor)
		// Its own jobs look stale only when its beats fail: they run.
		return slices.DeleteFunc(jobs, func(j tpo.Job) bool { return j.Owner.SameProcess(*self) }), err
	}
	why := func(o tpo.Owner) string { return fmt.Sprintf("(%s) stopped answering for %v", o, silentFor) }
	return s.takeOver(ctx, find, why)
}

// takeOver fails the background responses and continues the batches that
// find returns (jobs with an owner that has ended; why says how, after
// "the tpo serve process that ran it"), each claimed from its owner
// first: a job another process claimed meanwhile is left to it. A job
// that cannot be taken over does not stop the others; the errors are
// returned together.
func (s *Server) takeOver(ctx context.Context, find func(ctx context.Context, kind string) ([]tpo.Job, error), why func(tpo.Owner) string) (failed, resumed []string, err error) {
	var errs []error
	responses, err := find(ctx, kindResponse)
	if err != nil {
		return nil, nil, fmt.Errorf("unfinished responses: %w", err)
	}
	for _, j := range responses {
		ok, err := s.failOrphan(ctx, j, why(*j.Owner))
		if ok {
			failed = append(failed, j.ID)
		}
		errs = append(errs, err)
	}
	if s.batchesOff() != nil {
		return failed, nil, errors.Join(errs...)
	}
	batches, err := find(ctx, kindBatch)
	if err != nil {
		return failed, nil, errors.Join(append(errs, fmt.Errorf("unfinished batches: %w", err))...)
	}
	for _, j := range batches {
		ok, err := s.resumeBatch(ctx, j, why(*j.Owner))
		if ok {
			resumed = append(resumed, j.ID)
		}
		errs = append(errs, err)
	}
	return failed, resumed, errors.Join(errs...)
}

// failOrphan claims a background response that an ended process left
// unfinished and stores it as failed, saying why (or as cancelled, when a
// client asked to cancel it); it reports false when another process
// claimed it first.
func (s *Server) failOrphan(ctx context.Context, j tpo.Job, why string) (bool, error) {
	from := *j.Owner
	claimed, err := s.opts.Jobs.ClaimJob(ctx, kindResponse, j.ID, from, s.opts.Owner)
	if err != nil || !claimed {
		return false, err
	}
	j, err = s.opts.Jobs.GetJob(ctx, kindResponse, j.ID) // as its owner left it
	if err != nil {
		return false, fmt.Errorf("reading the response taken over: %w", err)
	}
	var sr storedResponse
	if err := json.Unmarshal(j.Data, &sr); err != nil {
		return false, fmt.Errorf("response %s: %w", j.ID, err)
	}
	msg := "interrupted: the tpo serve process that ran it " + why
	sr.Response.Status = "failed"
	sr.Response.Error = &openai.ResponseError{Code: "server_error", Message: msg}
	if j.CancelRequested != nil {
		// A client asked to cancel it: it ends as asked.
		sr.Response.Status, sr.Response.Error = "cancelled", nil
	}
	now := s.opts.Now()
	j.Status, j.Updated, j.Finished, j.Owner = sr.Response.Status, now, &now, nil
	if err := s.putJob(j, sr); err != nil {
		return false, fmt.Errorf("response %s: %w", j.ID, err)
	}
	s.log.Warn("took over a background response: marked as "+sr.Response.Status, "id", j.ID, "owner", from.String(), "reason", msg)
	return true, nil
}

// resumeBatch claims a batch that an ended process left unfinished and
// continues it here (without optimizing again the requests it had
// finished); it reports false when another process claimed it first, or
// when this server is shutting down (the batch is then left to whoever
// takes over this process's jobs).
func (s *Server) resumeBatch(ctx context.Context, j tpo.Job, why string) (bool, error) {
	from := *j.Owner
	claimed, err := s.opts.Jobs.ClaimJob(ctx, kindBatch, j.ID, from, s.opts.Owner)
	if err != nil || !claimed {
		return false, err
	}
	if !s.startBatch(j.ID) {
		s.log.Warn("took over a batch but the server is shutting down: the next tpo serve continues it", "batch", j.ID, "owner", from.String())
		return false, nil
	}
	s.log.Warn("took over a batch: continuing it here", "batch", j.ID, "owner", from.String(), "reason", "the tpo serve process that ran it "+why)
	return true, nil
}
