package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// DefaultBatchConcurrency is the default of Options.BatchConcurrency.
const DefaultBatchConcurrency = 2

// batchLine is one request of a running batch and what became of it.
type batchLine struct {
	batchRequest
	plan *plan
	rp   *respPlan // the plan of a /v1/responses request
	// out is the line's output line, once known; failed says whether it
	// goes to the error file.
	out    []byte
	failed bool
}

// batchRun is a batch being run.
type batchRun struct {
	s     *Server
	mu    sync.Mutex
	b     openai.Batch
	lines []*batchLine
	byID  map[string]*batchLine
}

// runBatch runs a batch: it validates its input file, optimizes its
// requests through tpo.Runner (a run per group of requests with the same
// settings, resumed when the server restarts), then writes its output and
// error files. Cancelled, it keeps what finished; at shutdown it stops,
// to be continued by the next server.
func (s *Server) runBatch(ctx context.Context, id string) {
	b, aerr := s.loadBatch(ctx, id)
	if aerr != nil {
		s.log.Error("a batch to run is not readable", "batch", id, "err", aerr.Message)
		return
	}
	if b.ExpiresAt != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(*b.ExpiresAt, 0))
		defer cancel()
	}
	if b.Status == "cancelling" {
		// Cancelled while an ended process ran it: finish it so.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		cancel(errCancelled)
	}
	br := &batchRun{s: s, b: b}
	if err := br.prepare(context.WithoutCancel(ctx)); err != nil {
		br.fail(err)
		return
	}
	br.run(ctx)
	if errors.Is(context.Cause(ctx), errShutdown) {
		br.save()
		s.log.Info("batch stopped by the shutdown; the next tpo serve continues it", "batch", id)
		return
	}
	br.finish(ctx)
}

// prepare reads the batch's input and plans its requests; a request the
// endpoint would refuse gets its error line at once.
func (br *batchRun) prepare(ctx context.Context) error {
	s := br.s
	_, rd, err := s.opts.Files.Open(ctx, br.b.InputFileID)
	if err != nil {
		return fmt.Errorf("reading input file %s: %w", br.b.InputFileID, err)
	}
	defer rd.Close()
	reqs, probs, err := readBatchInput(rd, br.b.Endpoint, int(s.opts.MaxBody))
	if err != nil {
		return fmt.Errorf("reading input file %s: %w", br.b.InputFileID, err)
	}
	if len(probs) > 0 {
		br.b.Errors = &openai.BatchErrors{Object: "list", Data: probs}
		return errors.New("validation failed")
	}
	br.byID = map[string]*batchLine{}
	// Counted again from the start: a resumed batch counts the requests
	// finished before as the runner skips them.
	br.b.RequestCounts = openai.BatchRequestCounts{Total: len(reqs)}
	for _, r := range reqs {
		l := &batchLine{batchRequest: r}
		if aerr := br.plan(ctx, l); aerr != nil {
			br.lineError(l, aerr)
		}
		br.lines = append(br.lines, l)
		br.byID[l.CustomID] = l
	}
	br.mu.Lock()
	if br.b.Status == "validating" {
		now := s.opts.Now().Unix()
		br.b.Status, br.b.InProgressAt = "in_progress", &now
	}
	if br.b.Model == "" && br.lines[0].plan != nil {
		br.b.Model = cmp.Or(br.lines[0].plan.Model, s.up.DefaultModel())
	}
	br.mu.Unlock()
	br.save()
	return nil
}

// plan checks a request as its endpoint would, and what a batch cannot
// do: stream, run in the background, pass through (mode off), tools.
func (br *batchRun) plan(ctx context.Context, l *batchLine) *apiError {
	st := br.s.settings()
	if br.b.Endpoint == "/v1/chat/completions" {
		p, aerr := parseRequest(l.Body, st)
		if aerr != nil {
			return aerr
		}
		l.plan = p
		return refuseInBatch(p)
	}
	rp, aerr := parseResponsesRequest(l.Body, st)
	if aerr != nil {
		return aerr
	}
	prev, aerr := br.s.previousContext(ctx, rp.Previous)
	if aerr == nil {
		aerr = rp.finish(st, prev)
	}
	if aerr != nil {
		return aerr
	}
	l.plan, l.rp = rp.plan, rp
	if rp.Background {
		return badRequest("background", "a request of a batch runs in the batch: drop background")
	}
	return refuseInBatch(rp.plan)
}

// refuseInBatch refuses what a batch's request cannot do.
func refuseInBatch(p *plan) *apiError {
	switch {
	case p.Stream:
		return badRequest("stream", "a request of a batch cannot be streamed: drop stream")
	case p.Off:
		return badRequest("tpo.mode", "a batch optimizes its requests: mode off is not available (send such requests to the policy server)")
	case p.Tools.any():
		return badRequest("tools", "tools are not supported in a batch (tpo serve takes them in single requests)")
	}
	return nil
}

// group is the requests of a batch optimized with the same settings.
type group struct {
	key   string
	plan  *plan // the first's: its settings are the group's
	lines []*batchLine
}

// groups splits the planned requests by settings, in input order.
func (br *batchRun) groups() []*group {
	var out []*group
	byKey := map[string]*group{}
	for _, l := range br.lines {
		if l.plan == nil || l.out != nil {
			continue
		}
		k, _ := json.Marshal(struct {
			Model  string
			Config tpo.Config
			Reward string
			N      int
		}{l.plan.Upstream, l.plan.Config, l.plan.Reward, l.plan.N})
		g := byKey[string(k)]
		if g == nil {
			g = &group{key: string(k), plan: l.plan}
			byKey[g.key] = g
			out = append(out, g)
		}
		g.lines = append(g.lines, l)
	}
	return out
}

// run optimizes the batch's requests, group after group, until all are
// done or ctx ends.
func (br *batchRun) run(ctx context.Context) {
	for k, g := range br.groups() {
		if ctx.Err() != nil {
			return
		}
		if err := br.runGroup(ctx, k, g); err != nil && ctx.Err() == nil {
			// The store failed: what is not done fails, the rest goes on.
			br.s.log.Error("a group of a batch failed", "batch", br.b.ID, "group", k, "err", err)
			for _, l := range g.lines {
				if br.outOf(l) == nil {
					br.lineError(l, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "server_error",
						Message: "the batch could not record this request: " + scrub(err.Error())})
				}
			}
		}
	}
}

// runGroup optimizes a group's requests with tpo.Runner: a run of its
// own, found again by its key when the batch is resumed, its finished
// requests not optimized again.
func (br *batchRun) runGroup(ctx context.Context, k int, g *group) error {
	s, p := br.s, g.plan
	upstream := p.Upstream
	if upstream == "" {
		upstream = s.up.DefaultModel()
	}
	opt := &tpo.Optimizer{Policy: s.up.Generator(upstream), Reward: s.opts.Scorers[p.Reward], Config: p.Config,
		Templates: s.opts.Templates, Logger: s.log, Tracer: s.opts.Tracer}
	rn := &tpo.Runner{Optimizer: opt, Store: s.opts.Store, Concurrency: s.opts.BatchConcurrency, Logger: s.log, Now: s.opts.Now,
		OnItem: func(st tpo.ItemState, _ bool) { br.done(st) }}
	cfg, _ := json.Marshal(map[string]any{"config": p.Config, "model": upstream, "reward": p.Reward, "n": p.N,
		"batch": br.b.ID, "endpoint": br.b.Endpoint, "group": k})
	run := tpo.Run{Key: fmt.Sprintf("batch %s group %d", br.b.ID, k), Kind: "batch", Source: "batch " + br.b.ID + " (" + br.b.InputFileID + ")",
		Config: cfg, Created: s.opts.Now(), ItemCount: len(g.lines)}
	_, _, err := rn.Run(ctx, run, &linesSource{lines: g.lines})
	return err
}

// linesSource is the tpo.Source of a group's requests.
type linesSource struct {
	lines []*batchLine
	next  int
}

func (src *linesSource) Next() (tpo.Input, error) {
	if src.next >= len(src.lines) {
		return tpo.Input{}, io.EOF
	}
	l := src.lines[src.next]
	src.next++
	return tpo.Input{Item: tpo.Item{ID: l.CustomID, Messages: l.plan.Item.Messages}}, nil
}

// done records a finished request: its output line, or its error line.
func (br *batchRun) done(st tpo.ItemState) {
	l := br.byID[st.Item.ID]
	if l == nil || st.Result == nil {
		return
	}
	res := *st.Result
	if res.Error != "" {
		br.lineError(l, optimizationFailure(res.Error))
		return
	}
	o := outcome{ID: newCompletionID(), Created: br.s.opts.Now().Unix(), Model: l.plan.Model, Upstream: l.plan.Upstream,
		Result: res, Plan: l.plan, Meter: meterOf(res)}
	var body any = completionOf(o)
	if l.rp != nil {
		o.ID = newID("resp_")
		body = br.s.batchResponse(o, l.rp)
	}
	br.setOut(l, http.StatusOK, body, false)
}

// optimizationFailure is the error of a request whose optimization
// failed, known by its result's error.
func optimizationFailure(msg string) *apiError {
	if strings.Contains(msg, tpo.ErrContextLength.Error()) {
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Code: "context_length_exceeded", Param: "messages",
			Message: "the conversation does not fit the model's context window: " + scrub(msg)}
	}
	return &apiError{Status: http.StatusBadGateway, Type: typeUpstream, Code: "optimization_failed", Message: "the optimization failed: " + scrub(msg)}
}

// meterOf is what an optimization cost, from its result: its policy
// calls by stage and its reward calls (with a judge's tokens).
func meterOf(res tpo.Result) meterSnapshot {
	m := meterSnapshot{Policy: res.Usage, Reward: res.ScoreUsage, Stages: map[tpo.Stage]StageUsage{}, RewardCalls: res.ScoreCalls}
	for _, st := range res.Steps {
		for _, c := range st.Calls {
			u := m.Stages[c.Stage]
			u.Requests += c.Usage.Requests
			u.addTokens(c.Usage)
			u.Millis += c.Millis
			m.Stages[c.Stage] = u
		}
		sc := m.Stages[tpo.StageScore]
		sc.addTokens(st.ScoreUsage)
		sc.Millis += st.Millis[tpo.StageScore]
		m.Stages[tpo.StageScore] = sc
	}
	sc := m.Stages[tpo.StageScore]
	sc.Requests = res.ScoreCalls
	m.Stages[tpo.StageScore] = sc
	return m
}

// batchResponse is the response object of a /v1/responses request of a
// batch (not stored).
func (s *Server) batchResponse(o outcome, rp *respPlan) openai.Response {
	obj := s.responseObject(o, rp, "completed")
	obj.Usage = o.Meter.responseUsage()
	now := s.opts.Now().Unix()
	obj.CompletedAt, obj.Output, obj.Store = &now, responseOutput(o), false
	obj.TPO = o.optimization(bestDistinct(o.Result, 1))
	return obj
}

// lineError records a request's error line: the endpoint's error answer.
func (br *batchRun) lineError(l *batchLine, e *apiError) {
	br.setOut(l, e.Status, e.body(), true)
}

// setOut records a request's output line and counts it.
func (br *batchRun) setOut(l *batchLine, status int, body any, failed bool) {
	b, _ := json.Marshal(body)
	line, _ := json.Marshal(openai.BatchOutput{ID: newID("batch_req_"), CustomID: l.CustomID,
		Response: &openai.BatchOutputResponse{StatusCode: status, RequestID: newID("req_"), Body: b}})
	br.mu.Lock()
	l.out, l.failed = line, failed
	if failed {
		br.b.RequestCounts.Failed++
	} else {
		br.b.RequestCounts.Completed++
	}
	br.mu.Unlock()
	br.save()
}

func (br *batchRun) outOf(l *batchLine) []byte {
	br.mu.Lock()
	defer br.mu.Unlock()
	return l.out
}

// save stores the batch's state.
func (br *batchRun) save() {
	br.mu.Lock()
	b := br.b
	br.mu.Unlock()
	if err := br.s.saveBatch(b); err != nil {
		br.s.log.Error("storing a batch failed", "batch", b.ID, "err", err)
	}
}

// fail ends a batch whose input could not be read or validated.
func (br *batchRun) fail(err error) {
	now := br.s.opts.Now().Unix()
	br.b.Status, br.b.FailedAt = "failed", &now
	if br.b.Errors == nil {
		br.b.Errors = &openai.BatchErrors{Object: "list", Data: []openai.BatchError{{Code: "server_error", Message: err.Error()}}}
	}
	br.s.log.Info("batch failed", "batch", br.b.ID, "err", err)
	br.save()
}

// finish writes the output and error files and ends the batch:
// completed, cancelled (by the client) or expired (its window passed);
// the requests not done by then are in the error file.
func (br *batchRun) finish(ctx context.Context) {
	s := br.s
	status, code, why := "completed", "", ""
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errCancelled):
		status, code, why = "cancelled", "batch_cancelled", "the batch was cancelled before this request was done"
	case errors.Is(cause, context.DeadlineExceeded):
		status, code, why = "expired", "batch_expired", "this request could not be done within the batch's completion window"
	}
	br.mu.Lock()
	now := s.opts.Now().Unix()
	if status == "cancelled" && br.b.CancellingAt == nil {
		br.b.CancellingAt = &now
	}
	br.b.Status, br.b.FinalizingAt = "finalizing", &now
	br.mu.Unlock()
	br.save()
	out, errs := br.outputs(code, why)
	// Written even when ctx ended (cancelled, expired).
	if err := br.writeFiles(context.WithoutCancel(ctx), out, errs); err != nil {
		br.fail(err)
		return
	}
	br.mu.Lock()
	end := s.opts.Now().Unix()
	br.b.Status = status
	switch status {
	case "completed":
		br.b.CompletedAt = &end
	case "cancelled":
		br.b.CancelledAt = &end
	case "expired":
		br.b.ExpiredAt = &end
	}
	br.mu.Unlock()
	br.save()
	s.log.Info("batch ended", "batch", br.b.ID, "status", status, "completed", br.b.RequestCounts.Completed, "failed", br.b.RequestCounts.Failed)
}

// outputs returns the output lines and the error lines, in input order;
// a request not done gets an error line with code and why.
func (br *batchRun) outputs(code, why string) (out, errs [][]byte) {
	br.mu.Lock()
	defer br.mu.Unlock()
	for _, l := range br.lines {
		switch {
		case l.out == nil:
			line, _ := json.Marshal(openai.BatchOutput{ID: newID("batch_req_"), CustomID: l.CustomID,
				Error: &openai.BatchOutputError{Code: code, Message: why}})
			errs = append(errs, line)
		case l.failed:
			errs = append(errs, l.out)
		default:
			out = append(out, l.out)
		}
	}
	return out, errs
}

// writeFiles writes the batch's output and error files, those that have
// lines.
func (br *batchRun) writeFiles(ctx context.Context, out, errs [][]byte) error {
	write := func(lines [][]byte, kind string) (*string, error) {
		if len(lines) == 0 {
			return nil, nil
		}
		f, err := br.s.opts.Files.Write(ctx, br.b.ID+"_"+kind+".jsonl", "batch_output", br.s.opts.Now(), func(w io.Writer) error {
			for _, l := range lines {
				if _, err := w.Write(append(l, '\n')); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("writing the %s file: %w", kind, err)
		}
		return &f.ID, nil
	}
	outID, err := write(out, "output")
	if err != nil {
		return err
	}
	errID, err := write(errs, "error")
	if err != nil {
		return err
	}
	br.mu.Lock()
	br.b.OutputFileID, br.b.ErrorFileID = outID, errID
	br.mu.Unlock()
	return nil
}
