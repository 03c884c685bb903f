package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// startBackground answers a background request at once with the queued
// response, stored, and computes it in a task of the server's workers.
func (s *Server) startBackground(w http.ResponseWriter, o outcome, rp *respPlan) {
	if s.opts.Jobs == nil {
		writeError(w, badRequest("background", "this server keeps no responses (it has no store): background responses are not available"))
		return
	}
	obj := s.responseObject(o, rp, "queued")
	job := tpo.Job{Kind: kindResponse, ID: o.ID, Status: obj.Status, Created: time.Unix(o.Created, 0), Updated: s.opts.Now(), Owner: s.opts.Owner}
	if err := s.putJob(job, storedResponse{Response: obj}); err != nil {
		s.log.Error("storing a background response failed", "id", o.ID, "err", err)
		writeError(w, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "store_error",
			Message: fmt.Sprintf("storing the response failed: %v", err)})
		return
	}
	if !s.bg.start(o.ID, taskResponse, func(ctx context.Context) { s.runBackground(ctx, o, rp) }) {
		aerr := &apiError{Status: http.StatusTooManyRequests, Type: typeRateLimit, Code: "server_busy", RetryAfter: 10,
			Message: fmt.Sprintf("the server holds its maximum of %d background responses, or is shutting down; retry later", s.opts.MaxBackground)}
		obj.Status, obj.Error = "failed", &openai.ResponseError{Code: "rate_limit_exceeded", Message: aerr.Message}
		s.saveResponse(obj, rp, o, false)
		writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, obj)
}

// runBackground computes a background response: it waits for an
// optimization slot (queued), optimizes (in_progress, its progress stored
// after each stage), and stores how it ended: completed, failed, or
// cancelled.
func (s *Server) runBackground(ctx context.Context, o outcome, rp *respPlan) {
	if s.opts.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.RequestTimeout)
		defer cancel()
	}
	var err error
	release := func() {}
	if !rp.Off {
		release, err = s.acquireWait(ctx)
	}
	if err == nil {
		s.saveResponse(s.responseObject(o, rp, "in_progress"), rp, o, false)
		if !rp.Off {
			o.RunID, err = s.openRun(ctx, o)
		}
	}
	if err == nil {
		tr := &progressTracker{runID: o.RunID}
		onEvent := func(e tpo.Event) {
			if p, ok := tr.progress(e); ok {
				s.saveProgress(o, rp, p)
			}
		}
		o, err = s.run(rp)(ctx, o, onEvent)
	}
	release()
	obj := s.finishResponse(ctx, o, rp, err)
	s.log.Info("background response ended", "id", o.ID, "run", o.RunID, "status", obj.Status, "err", err)
}

// saveProgress stores background response o in progress, its tpo object
// p, the progress after a stage, so that a GET on any process sharing the
// store shows it.
func (s *Server) saveProgress(o outcome, rp *respPlan, p Progress) {
	obj := s.responseObject(o, rp, "in_progress")
	obj.TPO = p
	s.saveResponse(obj, rp, o, false)
}

// acquireWait waits for an optimization slot as long as ctx lasts.
func (s *Server) acquireWait(ctx context.Context) (func(), error) {
	s.metrics.queued.Inc()
	defer s.metrics.queued.Dec()
	select {
	case s.slots <- struct{}{}:
		s.metrics.inFlight.Inc()
		return func() {
			<-s.slots
			s.metrics.inFlight.Dec()
		}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for an optimization slot: %w", context.Cause(ctx))
	}
}

// Shutdown ends the server's background work: it starts no more, stops
// the batches at once (a restarted server continues them), lets the
// background responses finish until ctx ends, then cancels them (they are
// stored as failed), and returns once every task has ended.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.bg.shutdown(ctx)
}
