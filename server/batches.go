package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/files"
	"github.com/tpoproject/tpo/openai"
)

// kindBatch is the job kind of batches.
const kindBatch = "batch"

// batchWindow is the only completion window of a batch, as OpenAI's.
const batchWindow = 24 * time.Hour

// batchEndpoints are the endpoints a batch may call.
var batchEndpoints = []string{"/v1/chat/completions", "/v1/responses"}

// storedBatch is what the store keeps of a batch (tpo.Job.Data).
type storedBatch struct {
	Batch openai.Batch `json:"batch"`
}

// batchCreate is a request to create a batch.
type batchCreate struct {
	InputFileID      string            `json:"input_file_id"`
	Endpoint         string            `json:"endpoint"`
	CompletionWindow string            `json:"completion_window"`
	Metadata         map[string]string `json:"metadata"`
}

// batchesOff says why this server has no Batch API, or returns nil.
func (s *Server) batchesOff() *apiError {
	if s.opts.Files == nil {
		return noFiles()
	}
	if s.opts.Jobs == nil || s.opts.Store == nil {
		return &apiError{Status: http.StatusNotFound, Type: typeNotFound, Code: "batches_off",
			Message: "this server has no store: the Batch API is off"}
	}
	return nil
}

// handleCreateBatch answers POST /v1/batches: the batch, validating,
// which the server's workers then run.
func (s *Server) handleCreateBatch(w http.ResponseWriter, r *http.Request) {
	if aerr := s.batchesOff(); aerr != nil {
		writeError(w, aerr)
		return
	}
	body, aerr := s.readBody(w, r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	b, aerr := s.newBatch(r.Context(), body)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if err := s.saveBatch(b); err != nil {
		writeError(w, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "store_error",
			Message: fmt.Sprintf("storing the batch failed: %v", err)})
		return
	}
	if !s.startBatch(b.ID) {
		s.log.Warn("the server is shutting down: the batch will run when it starts again", "batch", b.ID)
	}
	s.log.Info("batch created", "batch", b.ID, "input", b.InputFileID, "endpoint", b.Endpoint)
	writeJSON(w, http.StatusOK, b)
}

// newBatch reads and checks a request to create a batch.
func (s *Server) newBatch(ctx context.Context, body []byte) (openai.Batch, *apiError) {
	var req batchCreate
	if err := json.Unmarshal(body, &req); err != nil {
		return openai.Batch{}, jsonFieldError("", err)
	}
	f, err := s.opts.Files.Get(ctx, req.InputFileID)
	switch {
	case req.InputFileID == "":
		return openai.Batch{}, badRequest("input_file_id", "input_file_id is required: upload the requests with POST /v1/files first")
	case errors.Is(err, files.ErrNotFound):
		return openai.Batch{}, &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Code: "file_not_found", Param: "input_file_id",
			Message: fmt.Sprintf("no file with id %q", req.InputFileID)}
	case err != nil:
		return openai.Batch{}, s.fileError(req.InputFileID, err)
	case f.Purpose != "batch":
		return openai.Batch{}, badRequest("input_file_id", "file %s has purpose %s: a batch reads a file uploaded with purpose batch", f.ID, f.Purpose)
	case req.Endpoint != batchEndpoints[0] && req.Endpoint != batchEndpoints[1]:
		return openai.Batch{}, badRequest("endpoint", "endpoint %q: tpo serve runs batches of %s or %s", req.Endpoint, batchEndpoints[0], batchEndpoints[1])
	case req.CompletionWindow != "24h":
		return openai.Batch{}, badRequest("completion_window", "completion_window %q: want 24h", req.CompletionWindow)
	}
	if aerr := checkMetadata(req.Metadata); aerr != nil {
		return openai.Batch{}, aerr
	}
	now := s.opts.Now()
	expires := now.Add(batchWindow).Unix()
	meta := req.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	return openai.Batch{ID: newID("batch_"), Object: "batch", Endpoint: req.Endpoint, InputFileID: f.ID,
		CompletionWindow: req.CompletionWindow, Status: "validating", CreatedAt: now.Unix(), ExpiresAt: &expires, Metadata: meta}, nil
}

// batchFinal reports whether a batch's status is final.
func batchFinal(status string) bool {
	switch status {
	case "completed", "failed", "expired", "cancelled":
		return true
	}
	return false
}

// saveBatch stores a batch, owned by this process until it is final.
func (s *Server) saveBatch(b openai.Batch) error {
	job := tpo.Job{Kind: kindBatch, ID: b.ID, Status: b.Status, Created: time.Unix(b.CreatedAt, 0), Updated: s.opts.Now()}
	if batchFinal(b.Status) {
		t := s.opts.Now()
		job.Finished = &t
	} else {
		job.Owner = s.opts.Owner
	}
	return s.putJob(job, storedBatch{Batch: b})
}

// loadBatch reads a stored batch.
func (s *Server) loadBatch(ctx context.Context, id string) (openai.Batch, *apiError) {
	if aerr := s.batchesOff(); aerr != nil {
		return openai.Batch{}, aerr
	}
	job, err := s.opts.Jobs.GetJob(ctx, kindBatch, id)
	if errors.Is(err, tpo.ErrNotFound) {
		return openai.Batch{}, &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "batch_not_found",
			Message: fmt.Sprintf("no batch with id %q", id)}
	}
	var b openai.Batch
	if err == nil {
		b, err = batchOf(job)
	}
	if err != nil {
		s.log.Error("reading a batch from the store failed", "batch", id, "err", err)
		return openai.Batch{}, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "store_error",
			Message: fmt.Sprintf("reading batch %s from the store failed", id)}
	}
	return b, nil
}

// batchOf reads the batch a job holds. A batch whose cancel a client
// asked through another process than the one running it is cancelling
// from then on, until that process ends it.
func batchOf(job tpo.Job) (openai.Batch, error) {
	var sb storedBatch
	if err := json.Unmarshal(job.Data, &sb); err != nil {
		return openai.Batch{}, fmt.Errorf("batch %s: %w", job.ID, err)
	}
	b := sb.Batch
	if job.CancelRequested != nil && job.Finished == nil && (b.Status == "validating" || b.Status == "in_progress") {
		at := job.CancelRequested.Unix()
		b.Status, b.CancellingAt = "cancelling", &at
	}
	return b, nil
}

// handleGetBatch answers GET /v1/batches/{id}.
func (s *Server) handleGetBatch(w http.ResponseWriter, r *http.Request) {
	b, aerr := s.loadBatch(r.Context(), r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// handleListBatches answers GET /v1/batches: newest first, paged with
// after and limit (default 20, at most 100).
func (s *Server) handleListBatches(w http.ResponseWriter, r *http.Request) {
	if aerr := s.batchesOff(); aerr != nil {
		writeError(w, aerr)
		return
	}
	q := r.URL.Query()
	limit, aerr := listLimit(q.Get("limit"), 20, 100)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	jobs, err := s.opts.Jobs.ListJobs(r.Context(), kindBatch, q.Get("after"), limit+1)
	if errors.Is(err, tpo.ErrNotFound) {
		writeError(w, badRequest("after", "no batch with id %q to list after", q.Get("after")))
		return
	}
	if err != nil {
		s.log.Error("listing batches failed", "err", err)
		writeError(w, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "store_error", Message: "listing the batches failed"})
		return
	}
	list := make([]openai.Batch, 0, len(jobs))
	for _, j := range jobs {
		b, err := batchOf(j)
		if err != nil {
			s.log.Error("a stored batch is not readable", "batch", j.ID, "err", err)
			continue
		}
		list = append(list, b)
	}
	writeJSON(w, http.StatusOK, page(list, limit, func(b openai.Batch) string { return b.ID }))
}

// handleCancelBatch answers POST /v1/batches/{id}/cancel: a batch that
// this process runs, or, through the store, another one, is cancelling
// (then cancelled, its finished requests in its output file); one that
// has ended is returned as it is.
func (s *Server) handleCancelBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, aerr := s.loadBatch(r.Context(), id)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if batchFinal(b.Status) {
		writeJSON(w, http.StatusOK, b)
		return
	}
	if _, ok := s.bg.cancel(taskID(kindBatch, id), errCancelled); !ok {
		// Another process runs it (or it ended meanwhile): it sees the
		// request in the store.
		j, aerr := s.requestCancel(r.Context(), kindBatch, id)
		if aerr == nil {
			var err error
			if b, err = batchOf(j); err != nil {
				s.log.Error("a stored batch is not readable", "batch", id, "err", err)
				aerr = &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "store_error",
					Message: fmt.Sprintf("reading batch %s from the store failed", id)}
			}
		}
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		writeJSON(w, http.StatusOK, b)
		return
	}
	now := s.opts.Now().Unix()
	b.Status, b.CancellingAt = "cancelling", &now
	writeJSON(w, http.StatusOK, b)
}

// startBatch runs batch id in the server's workers.
func (s *Server) startBatch(id string) bool {
	return s.bg.start(taskID(kindBatch, id), taskBatch, func(ctx context.Context) { s.runBatch(ctx, id) })
}
