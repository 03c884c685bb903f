package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// kindResponse is the job kind of responses.
const kindResponse = "response"

// storedResponse is what the store keeps of a response (tpo.Job.Data).
type storedResponse struct {
	Response openai.Response `json:"response"`
	// Context is the conversation the response answered (without its
	// instructions), then its answer: what a response that continues it
	// (previous_response_id) continues.
	Context []openai.Message `json:"context,omitempty"`
}

// handleCreateResponse answers POST /v1/responses: optimized (streamed
// or not), in the background, or unoptimized (mode off).
func (s *Server) handleCreateResponse(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, aerr := s.readBody(w, r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	rp, aerr := parseResponsesRequest(body, s.settings())
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	ctx, cancel := s.requestContext(r.Context())
	defer cancel()
	prev, aerr := s.previousContext(ctx, rp.Previous)
	if aerr == nil {
		aerr = rp.finish(s.settings(), prev)
	}
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	o := s.newOutcome(newID("resp_"), arrived, rp.plan)
	switch {
	case rp.Background:
		s.startBackground(w, o, rp)
	case rp.Stream:
		s.streamResponse(ctx, w, o, rp)
	default:
		s.answerResponse(ctx, w, o, rp)
	}
}

// run is how a response is computed: optimized, or one sample (mode
// off).
func (s *Server) run(rp *respPlan) func(context.Context, outcome, func(tpo.Event)) (outcome, error) {
	if rp.Off {
		return s.sampleOnce
	}
	return s.optimize
}

// answerResponse computes a response and answers with it: the response
// object, or the error as chat completions do.
func (s *Server) answerResponse(ctx context.Context, w http.ResponseWriter, o outcome, rp *respPlan) {
	release := func() {}
	if !rp.Off {
		var aerr *apiError
		if release, aerr = s.begin(ctx, &o); aerr != nil {
			writeError(w, aerr)
			return
		}
		defer release()
	}
	o, err := s.run(rp)(ctx, o, nil)
	release()
	obj := s.finishResponse(ctx, o, rp, err)
	if err != nil {
		s.writeOptimizeError(ctx, w, o, err)
		return
	}
	writeJSON(w, http.StatusOK, obj)
}

// sampleOnce computes an unoptimized response: one sample of the policy,
// with the request's tools.
func (s *Server) sampleOnce(ctx context.Context, o outcome, _ func(tpo.Event)) (outcome, error) {
	p := o.Plan
	samp := p.Config.Sampling
	req := openai.ChatRequest{Model: o.Upstream, Messages: p.Conversation, Temperature: &samp.Temperature, TopP: &samp.TopP,
		MaxTokens: &samp.MaxTokens, Seed: p.Config.Seed, Tools: p.Tools.Tools, ToolChoice: p.Tools.Choice,
		ParallelToolCalls: p.Tools.ParallelToolCalls}
	choices, usage, err := s.up.Choices(ctx, req, 1)
	o.Meter = meterSnapshot{Policy: usage}
	switch {
	case err != nil:
		return o, err
	case len(choices) == 0:
		return o, errors.New("the policy server returned no choice")
	case len(choices[0].Message.ToolCalls) > 0:
		o.Tools = &toolOutcome{Samples: 1, Called: 1, Calls: choices[:1]}
	default:
		text := choices[0].Message.Content
		o.Result = tpo.Result{Response: text, Steps: []tpo.Step{{Candidates: []tpo.Candidate{{Text: text}}}}}
	}
	return o, nil
}

// responseObject returns the response object of o, with status, before
// its output and usage are known.
func (s *Server) responseObject(o outcome, rp *respPlan, status string) openai.Response {
	samp := o.Plan.Config.Sampling
	meta := rp.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	obj := openai.Response{ID: o.ID, Object: "response", CreatedAt: o.Created, Status: status, Background: rp.Background,
		Instructions: rp.Instructions, MaxOutputTokens: rp.MaxOutputTokens, Metadata: meta, Model: o.Model,
		Output: []openai.OutputItem{}, ParallelToolCalls: rp.ParallelToolCalls, Store: rp.Store,
		Temperature: &samp.Temperature, Text: openai.ResponseText{Format: openai.TextFormat{Type: "text"}},
		ToolChoice: rp.EchoChoice, Tools: rp.EchoTools, TopP: &samp.TopP, Truncation: "disabled"}
	if rp.Previous != "" {
		prev := rp.Previous
		obj.PreviousResponseID = &prev
	}
	return obj
}

// finishResponse returns the finished response object of o, which ended
// with err, and stores it when the request asked for that.
func (s *Server) finishResponse(ctx context.Context, o outcome, rp *respPlan, err error) openai.Response {
	obj := s.responseObject(o, rp, "completed")
	obj.Usage = o.Meter.responseUsage()
	now := s.opts.Now().Unix()
	obj.CompletedAt = &now
	if !rp.Off {
		obj.TPO = o.optimization(bestDistinct(o.Result, 1))
	}
	switch {
	case errors.Is(context.Cause(ctx), errCancelled):
		obj.Status, obj.CompletedAt = "cancelled", nil
	case err != nil:
		obj.Status, obj.CompletedAt = "failed", nil
		obj.Error = s.responseError(ctx, o, err)
	default:
		obj.Output = responseOutput(o)
	}
	if rp.Store {
		s.saveResponse(obj, rp, o, err == nil)
	}
	return obj
}

// responseError is the error object of a failed response.
func (s *Server) responseError(ctx context.Context, o outcome, err error) *openai.ResponseError {
	if errors.Is(context.Cause(ctx), errShutdown) {
		return &openai.ResponseError{Code: "server_error", Message: "interrupted: the server shut down before the response was finished"}
	}
	e := s.optimizeError(ctx, o, err)
	code := "server_error"
	if e.Status < 500 {
		code = "invalid_prompt"
	}
	return &openai.ResponseError{Code: code, Message: e.Message}
}

// responseOutput returns the output items of a finished response: its
// text as one assistant message, or the model's tool calls (after its
// text, if it wrote some).
func responseOutput(o outcome) []openai.OutputItem {
	msg := func(text string) openai.OutputItem {
		return openai.OutputItem{Type: "message", ID: newID("msg_"), Status: "completed", Role: tpo.RoleAssistant,
			Content: []openai.OutputContent{openai.OutputText(text)}}
	}
	if !o.Tools.answered() {
		return []openai.OutputItem{msg(o.Result.Response)}
	}
	c := o.Tools.Calls[0].Message
	var out []openai.OutputItem
	if c.Content != "" {
		out = append(out, msg(c.Content))
	}
	for _, call := range c.ToolCalls {
		out = append(out, openai.OutputItem{Type: "function_call", ID: newID("fc_"), Status: "completed",
			CallID: call.ID, Name: call.Function.Name, Arguments: call.Function.Arguments})
	}
	return out
}

// answerMessage is the answer of o as a chat message, for the context of
// a response that continues it.
func answerMessage(o outcome) openai.Message {
	if o.Tools.answered() {
		c := o.Tools.Calls[0].Message
		return openai.Message{Role: tpo.RoleAssistant, Content: c.Content, ToolCalls: c.ToolCalls}
	}
	return openai.Message{Role: tpo.RoleAssistant, Content: o.Result.Response}
}

// saveResponse stores a response; answered says whether it has an answer
// to continue from.
func (s *Server) saveResponse(obj openai.Response, rp *respPlan, o outcome, answered bool) {
	if s.opts.Jobs == nil {
		return
	}
	sr := storedResponse{Response: obj}
	if answered {
		sr.Context = append(append([]openai.Message(nil), rp.History...), answerMessage(o))
	}
	job := tpo.Job{Kind: kindResponse, ID: obj.ID, Status: obj.Status, Created: time.Unix(obj.CreatedAt, 0), Updated: s.opts.Now()}
	if final(obj.Status) {
		t := s.opts.Now()
		job.Finished = &t
	} else {
		job.Owner = s.opts.Owner
	}
	if err := s.putJob(job, sr); err != nil {
		s.log.Error("storing a response failed", "id", obj.ID, "err", err)
	}
}

// putJob stores job with data v.
func (s *Server) putJob(job tpo.Job, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s %s: %w", job.Kind, job.ID, err)
	}
	job.Data = data
	return s.opts.Jobs.PutJob(context.Background(), job)
}

// final reports whether a response's status is final.
func final(status string) bool {
	switch status {
	case "completed", "failed", "cancelled", "incomplete":
		return true
	}
	return false
}

// previousContext returns the context of the stored response id
// continues: its conversation and answer.
func (s *Server) previousContext(ctx context.Context, id string) ([]openai.Message, *apiError) {
	if id == "" {
		return nil, nil
	}
	sr, aerr := s.loadResponse(ctx, id, "previous_response_id")
	if aerr != nil {
		aerr.Status, aerr.Type = http.StatusBadRequest, typeInvalidRequest
		if aerr.Code == "response_not_found" {
			aerr.Code = "previous_response_not_found"
		}
		return nil, aerr
	}
	if st := sr.Response.Status; st != "completed" {
		return nil, badRequest("previous_response_id", "previous response %s is %s: only a completed response can be continued", id, st)
	}
	return sr.Context, nil
}

// loadResponse reads a stored response; param names the id in errors.
func (s *Server) loadResponse(ctx context.Context, id, param string) (storedResponse, *apiError) {
	var sr storedResponse
	notFound := &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "response_not_found", Param: param,
		Message: fmt.Sprintf("no response with id %q (responses sent with store: false are not kept)", id)}
	if s.opts.Jobs == nil {
		notFound.Message = fmt.Sprintf("no response with id %q: this server keeps no responses (it has no store)", id)
		return sr, notFound
	}
	job, err := s.opts.Jobs.GetJob(ctx, kindResponse, id)
	if errors.Is(err, tpo.ErrNotFound) {
		return sr, notFound
	}
	if err != nil {
		s.log.Error("reading a response from the store failed", "id", id, "err", err)
		return sr, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "store_error",
			Message: fmt.Sprintf("reading response %s from the store failed", id)}
	}
	return s.responseOf(job)
}

// responseOf reads the response a job holds.
func (s *Server) responseOf(job tpo.Job) (storedResponse, *apiError) {
	var sr storedResponse
	if err := json.Unmarshal(job.Data, &sr); err != nil {
		s.log.Error("a stored response is not readable", "id", job.ID, "err", err)
		return sr, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "store_error",
			Message: fmt.Sprintf("reading response %s from the store failed", job.ID)}
	}
	return sr, nil
}

// handleGetResponse answers GET /v1/responses/{id}: the stored response;
// while it is in progress, its tpo object is the progress of its
// optimization, which the process that runs it stores as it goes.
func (s *Server) handleGetResponse(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if r.URL.Query().Get("stream") == "true" {
		writeError(w, badRequest("stream", "tpo serve does not stream stored responses; GET without stream"))
		return
	}
	sr, aerr := s.loadResponse(r.Context(), id, "")
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, sr.Response)
}

// handleCancelResponse answers POST /v1/responses/{id}/cancel: a
// background response still queued or in progress is cancelled, here or,
// through the store, by the process that runs it; one that has ended is
// returned as it is. The answer is the response once it has ended, or, if
// its process has not ended it within five Options.JobPoll (or has itself
// ended: the process that takes its jobs over ends it cancelled), as it is
// then.
func (s *Server) handleCancelResponse(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sr, aerr := s.loadResponse(r.Context(), id, "")
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if !sr.Response.Background {
		writeError(w, badRequest("", "response %s was not created with background: true: only background responses can be cancelled", id))
		return
	}
	if done, ok := s.bg.cancel(id, errCancelled); ok {
		if !waitDone(done, 10*time.Second) {
			s.log.Warn("a cancelled response is slow to end", "id", id)
		}
		if sr, aerr = s.loadResponse(r.Context(), id, ""); aerr != nil {
			writeError(w, aerr)
			return
		}
	} else if !final(sr.Response.Status) {
		// Another process runs it (or it ended meanwhile).
		if sr, aerr = s.cancelElsewhere(r.Context(), id); aerr != nil {
			writeError(w, aerr)
			return
		}
	}
	writeJSON(w, http.StatusOK, sr.Response)
}

// cancelElsewhere asks the process that runs background response id to
// cancel it, through the store, and returns the response once it has
// ended, or a while later as it is then.
func (s *Server) cancelElsewhere(ctx context.Context, id string) (storedResponse, *apiError) {
	j, aerr := s.requestCancel(ctx, kindResponse, id)
	if aerr != nil {
		return storedResponse{}, aerr
	}
	if j.Owner != nil {
		j = s.awaitEnd(ctx, j)
	}
	return s.responseOf(j)
}

// newID returns an id like OpenAI's: prefix and random hex.
func newID(prefix string) string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
