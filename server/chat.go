package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/tpoproject/tpo"
)

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, aerr := s.readBody(w, r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	p, aerr := parseRequest(body, s.settings())
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	ctx, cancel := s.requestContext(r.Context())
	defer cancel()
	if p.Off {
		s.passThrough(ctx, w, p)
		return
	}
	o := s.newOutcome(newCompletionID(), arrived, p)
	release, aerr := s.begin(ctx, &o)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer release()
	if p.Stream {
		s.stream(ctx, w, o, release, chatStream{s: s, c: chunkMaker{id: o.ID, created: o.Created, model: o.Model}}, s.optimize)
		return
	}
	o, err := s.optimize(ctx, o, nil)
	release()
	if err != nil {
		s.writeOptimizeError(ctx, w, o, err)
		return
	}
	writeJSON(w, http.StatusOK, completionOf(o))
}

// begin waits for an optimization slot for o and records o's run in the
// store. The slot is to be freed, with the function it returns, when the
// optimization ends, before the answer is written: a client slow to read
// it holds no slot. The function may be called more than once.
func (s *Server) begin(ctx context.Context, o *outcome) (release func(), _ *apiError) {
	acquired, aerr := s.acquire(ctx)
	if aerr != nil {
		return nil, aerr
	}
	id, err := s.openRun(ctx, *o)
	if err != nil {
		acquired()
		s.log.Error("opening a run in the store failed", "err", err)
		return nil, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "store_error",
			Message: fmt.Sprintf("recording the optimization failed: %v", err)}
	}
	o.RunID = id
	return sync.OnceFunc(acquired), nil
}

// newOutcome starts the outcome of plan p, answered under id.
func (s *Server) newOutcome(id string, arrived time.Time, p *plan) outcome {
	o := outcome{ID: id, Created: s.opts.Now().Unix(), Arrived: arrived, Model: p.Model, Upstream: p.Upstream, Plan: p}
	if o.Upstream == "" {
		o.Upstream = s.up.DefaultModel()
	}
	if o.Model == "" {
		o.Model = o.Upstream
	}
	return o
}

// acquire waits for an optimization slot, up to the queue wait.
func (s *Server) acquire(ctx context.Context) (func(), *apiError) {
	release := func() {
		<-s.slots
		s.metrics.inFlight.Dec()
	}
	select {
	case s.slots <- struct{}{}:
		s.metrics.inFlight.Inc()
		return release, nil
	default:
	}
	busy := &apiError{Status: http.StatusTooManyRequests, Type: typeRateLimit, Code: "server_busy",
		RetryAfter: max(1, int(math.Ceil(s.opts.QueueWait.Seconds()))),
		Message:    fmt.Sprintf("the server is running its maximum of %s; retry later", plural(cap(s.slots), "optimization", "optimizations"))}
	if s.opts.QueueWait < 0 {
		return nil, busy
	}
	s.metrics.queued.Inc()
	defer s.metrics.queued.Dec()
	t := time.NewTimer(s.opts.QueueWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		s.metrics.inFlight.Inc()
		return release, nil
	case <-t.C:
		return nil, busy
	case <-ctx.Done():
		return nil, upstreamError(ctx.Err(), errors.Is(ctx.Err(), context.DeadlineExceeded))
	}
}

// openRun records the request as a run of kind "serve" with one item.
func (s *Server) openRun(ctx context.Context, o outcome) (string, error) {
	if s.opts.Store == nil {
		return "", nil
	}
	cfg, _ := json.Marshal(map[string]any{
		"config": o.Plan.Config, "model": o.Upstream, "reward": o.Plan.Reward, "n": o.Plan.N,
		"completion_id": o.ID, "stream": o.Plan.Stream, "requested_model": o.Model, "tools": o.Plan.Tools.any(),
	})
	run, _, err := s.opts.Store.OpenRun(ctx, tpo.Run{Kind: "serve", Source: "api", Config: cfg, Created: s.opts.Now(), ItemCount: 1, Owner: s.opts.Owner})
	if err != nil {
		return "", err
	}
	return run.ID, nil
}

// optimize runs the optimization of o's plan, recording it in the store,
// and returns o with the result and the usage filled in. onEvent, if set,
// sees every event.
func (s *Server) optimize(ctx context.Context, o outcome, onEvent func(tpo.Event)) (outcome, error) {
	p := o.Plan
	item := p.Item
	item.ID = o.ID
	flightID := o.RunID
	if flightID == "" {
		flightID = o.ID
	}
	s.hub.start(tpo.LiveRun{RunID: flightID, Model: o.Upstream, Mode: p.Config.Mode, Width: p.Config.Width,
		Depth: p.Config.Steps(), Prompt: item.Prompt(), Started: s.opts.Now()})
	defer s.hub.end(flightID)

	store := s.opts.Store
	if store != nil {
		if _, err := store.StartItem(ctx, o.RunID, 0, item); err != nil {
			return o, fmt.Errorf("recording the item: %w", err)
		}
	}
	gen := s.up.Generator(o.Upstream)
	var tools *toolSampler
	if p.Tools.any() {
		tools = &toolSampler{up: s.up, inner: gen, model: o.Upstream, conv: p.Conversation, tools: p.Tools}
		gen = tools
	}
	m := newMeter(gen, s.opts.Scorers[p.Reward], s.metrics)
	opt := &tpo.Optimizer{Policy: meterGenerator{m}, Reward: meterScorer{m}, Config: p.Config,
		Templates: s.opts.Templates, Logger: s.log, Tracer: s.opts.Tracer}
	opts := tpo.Options{Deadline: o.deadline(), OnEvent: func(e tpo.Event) {
		s.hub.publish(flightID, e)
		if s.opts.Events != nil {
			s.opts.Events(flightID, e)
		}
		if onEvent != nil {
			onEvent(e)
		}
	}}
	if store != nil {
		opts.OnStep = func(ctx context.Context, st tpo.Step) error {
			return store.SaveStep(context.WithoutCancel(ctx), o.RunID, item.ID, st)
		}
	}
	s.log.Info("optimizing", "run", o.RunID, "id", o.ID, "model", o.Upstream, "mode", p.Config.Mode,
		"width", p.Config.Width, "depth", p.Config.Steps(), "reward", p.Reward, "messages", len(item.Messages))
	t0 := time.Now()
	res, err := opt.Optimize(ctx, item, opts)
	o.Result, o.Meter = res, m.snapshot()
	if tools != nil {
		o.Tools = tools.outcome()
	}

	outcomeLabel := "ok"
	switch {
	case errors.Is(err, errToolCalls) && o.Tools.answered():
		// The answer is the model's tool calls: a success, recorded as
		// an item that was not optimized, and why.
		outcomeLabel, err = "tool_calls", nil
		res.Error = "not optimized: " + o.Tools.why()
	case err != nil && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		outcomeLabel = "cancelled"
		if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
			res.Error = "cancelled: " + cause.Error()
		} else if res.Error == "" {
			res.Error = err.Error()
		}
	case err != nil:
		outcomeLabel = "error"
	}
	s.metrics.optimizations.WithLabelValues(string(p.Config.Mode), outcomeLabel).Inc()
	s.log.Info("optimized", "run", o.RunID, "id", o.ID, "outcome", outcomeLabel, "score", res.Score,
		"initial_best", res.InitialBest, "requests", o.Meter.Policy.Requests, "tokens", o.Meter.usage().TotalTokens,
		"elapsed", time.Since(t0).Round(time.Millisecond), "err", err)
	if store != nil {
		sctx := context.WithoutCancel(ctx)
		res.ID = item.ID
		serr := store.FinishItem(sctx, o.RunID, res)
		if serr == nil {
			serr = store.FinishRun(sctx, o.RunID, s.opts.Now())
		}
		if serr != nil {
			s.log.Error("recording the result failed", "run", o.RunID, "err", serr)
			if err == nil {
				err = fmt.Errorf("recording the result: %w", serr)
			}
		}
	}
	return o, err
}

// optimizeError converts an optimization failure into an API error.
func (s *Server) optimizeError(ctx context.Context, o outcome, err error) *apiError {
	deadline := errors.Is(ctx.Err(), context.DeadlineExceeded)
	switch due := o.deadline(); {
	case deadline:
		err = fmt.Errorf("request timeout of %v: %w", s.opts.RequestTimeout, err)
	case !due.IsZero() && !time.Now().Before(due) && errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("no response was scored before the answer was due (%v after the request): %w", o.Plan.Deadline, err)
		deadline = true
	}
	e := upstreamError(err, deadline)
	if o.RunID != "" {
		e.Message += " (run " + o.RunID + ")"
	}
	return e
}

func (s *Server) writeOptimizeError(ctx context.Context, w http.ResponseWriter, o outcome, err error) {
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// The client went away (or the server is shutting down).
		s.log.Info("request cancelled", "run", o.RunID, "err", err)
	} else {
		// The whole error, with the servers' addresses the client is not
		// told.
		s.log.Warn("optimization failed", "run", o.RunID, "err", err)
	}
	writeError(w, s.optimizeError(ctx, o, err))
}
