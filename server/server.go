// Package server is tpo's OpenAI-compatible HTTP server: point any OpenAI
// client's base URL at it and every answer comes back optimized with
// Test-Time Preference Optimization.
//
// POST /v1/chat/completions takes a standard request whose model field names
// the upstream policy model, or PRESET/MODEL for a preset's settings. An
// optional "tpo" object in the body overrides the server's TPO settings for
// that request ({"mode": "off"} relays the request to the policy server
// unchanged). The answer is a complete chat.completion whose usage sums every
// model call the request caused (the policy's, and a judge's when the reward
// is one), with a "tpo" object describing the optimization;
// with stream: true the server sends progress chunks while optimizing, then
// the answer. Requests with tools get the model's tool calls when it makes
// them, unoptimized.
//
// POST /v1/responses answers the Responses API the same way, streamed or
// not; responses are stored (Options.Jobs) for GET /v1/responses/{id} and
// previous_response_id, and may run in the background, with the server's
// workers, until cancelled. The Files and Batch APIs (Options.Files) run
// whole files of requests through tpo.Runner. Every optimization is
// recorded in the run store; Shutdown ends the background work.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/guard"
)

// Defaults of Options fields left zero.
const (
	DefaultMaxBody        = 4 << 20
	DefaultMaxConcurrent  = 8
	DefaultQueueWait      = 5 * time.Second
	DefaultKeepAlive      = 10 * time.Second
	DefaultRequestTimeout = 15 * time.Minute
	DefaultJobPoll        = time.Second
)

// deltaSize is the approximate size in bytes of the content deltas a
// streamed answer is cut into.
const deltaSize = 48

// Options configures a Server.
type Options struct {
	// Policy is the upstream policy model server (OpenAI(client) for an
	// OpenAI-compatible one). Its generator for the request's model drives
	// the optimizations; pass-through requests and /v1/models go to it too.
	Policy Upstream
	// Scorers are the reward models by name; a request's "reward" override
	// picks one, DefaultReward is used otherwise.
	Scorers       map[string]tpo.Scorer
	DefaultReward string
	// Config is the default optimization settings; Templates the prompt
	// templates (nil: the built-in ones).
	Config    tpo.Config
	Templates *tpo.Templates
	// Store records every optimization as a run of kind "serve" (nil: not
	// recorded), with Owner as its owner when set.
	Store tpo.Store
	Owner *tpo.Owner
	// Limits bound the per-request overrides.
	Limits Limits
	// MaxBody is the largest request body in bytes (default 4 MiB).
	MaxBody int64
	// RequestTimeout is the deadline of one request (default 15m; negative:
	// none).
	RequestTimeout time.Duration
	// Deadline, when positive, is when an answer is due after a request
	// arrives: the best answer found by then is returned, and the calls in
	// flight are cancelled. A request's "tpo": {"deadline_ms": ...} may
	// ask for less.
	Deadline time.Duration
	// MaxConcurrent is the number of optimizations run at once (default 8);
	// a request waits up to QueueWait (default 5s; negative: not at all)
	// for a slot, then gets a 429.
	MaxConcurrent int
	QueueWait     time.Duration
	// APIKeys are the keys clients must send as "Authorization: Bearer
	// KEY". Empty means no authentication. Spaces around a key are
	// trimmed (as they are around the key a client sends); a blank key
	// is an error.
	APIKeys []string
	// KeepAlive is the interval of SSE comments sent while a streamed
	// request is optimized (default 10s).
	KeepAlive time.Duration
	// AllowedHosts are the host names the server answers to: a request
	// whose Host header names another gets a 421 (DNS rebinding). Nil
	// answers to every host.
	AllowedHosts *guard.Hosts
	// WriteTimeout bounds each write of a response (default 30s;
	// negative: none): a client that reads nothing for that long is
	// dropped, and the optimization of its streamed request cancelled.
	WriteTimeout time.Duration
	// ReadTimeout bounds the time a request's body takes to arrive
	// (default 30s; negative: none); a late body gets a 408.
	ReadTimeout time.Duration
	Logger      *slog.Logger
	// Events, if set, receives every event of every optimization, with the
	// run's id, synchronously from the optimizing goroutine: it must not
	// block.
	Events func(runID string, e tpo.Event)
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// Tracer, when set, records a span per request (continuing a caller's
	// trace from its traceparent header) and per item and stage.
	Tracer tpo.Tracer
	// Jobs keeps the responses of the Responses API and the batches (nil:
	// responses are not stored, and background responses and batches are
	// not available). Background jobs record Owner as their owner.
	Jobs tpo.JobStore
	// Files keeps the files of the Files API, batch input and output (nil:
	// the Files and Batch APIs are off).
	Files FileStore
	// BatchConcurrency is the number of requests of a batch optimized at
	// once (default DefaultBatchConcurrency), besides MaxConcurrent.
	BatchConcurrency int
	// MaxBackground bounds the background responses queued or running at
	// once (default DefaultMaxBackground); beyond, a 429.
	MaxBackground int
	// Presets are the presets /v1/models lists for each model, as
	// PRESET/MODEL (default DefaultPresets: tpo and off). A request may
	// name any preset, listed or not.
	Presets []string
	// JobPoll is how often, while this process runs background work, it
	// looks in Jobs for the cancels that clients asked of its jobs through
	// other processes sharing the store (default DefaultJobPoll). It needs
	// an Owner.
	JobPoll time.Duration
}

// Server answers the OpenAI chat completions API with optimized answers.
// It implements http.Handler.
type Server struct {
	opts    Options
	up      Upstream
	log     *slog.Logger
	keys    guard.Keys
	slots   chan struct{}
	metrics *metrics
	hub     *hub
	guard   guard.Options
	routes  []endpoint
	bg      *workers
	// crossOrigin refuses the requests of a browser on a page of another
	// site that need no preflight: a form's upload or cancel.
	crossOrigin *http.CrossOriginProtection
}

// New returns a server for opts.
func New(opts Options) (*Server, error) {
	if opts.Policy == nil {
		return nil, errors.New("server: no policy upstream")
	}
	if len(opts.Scorers) == 0 {
		return nil, errors.New("server: no reward scorer")
	}
	if opts.DefaultReward == "" && len(opts.Scorers) == 1 {
		for name := range opts.Scorers {
			opts.DefaultReward = name
		}
	}
	if _, ok := opts.Scorers[opts.DefaultReward]; !ok {
		return nil, fmt.Errorf("server: default reward %q is not among the scorers (%s)", opts.DefaultReward, strings.Join(sortedKeys(opts.Scorers), ", "))
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, fmt.Errorf("server: config: %w", err)
	}
	if opts.Templates == nil {
		opts.Templates = tpo.DefaultTemplates()
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	if opts.QueueWait == 0 {
		opts.QueueWait = DefaultQueueWait
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = guard.DefaultWriteTimeout
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = guard.DefaultReadTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Limits = opts.Limits.withDefaults()
	if opts.BatchConcurrency <= 0 {
		opts.BatchConcurrency = DefaultBatchConcurrency
	}
	if opts.MaxBackground <= 0 {
		opts.MaxBackground = DefaultMaxBackground
	}
	if opts.Presets == nil {
		opts.Presets = DefaultPresets
	}
	if opts.JobPoll <= 0 {
		opts.JobPoll = DefaultJobPoll
	}
	if err := ParsePresets(opts.Presets); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:    opts,
		up:      opts.Policy,
		log:     log,
		slots:   make(chan struct{}, opts.MaxConcurrent),
		metrics: newMetrics(),
		hub:     newHub(),

		crossOrigin: http.NewCrossOriginProtection(),
	}
	var watch func(context.Context)
	if opts.Jobs != nil && opts.Owner != nil {
		watch = s.pollCancels
	}
	s.bg = newWorkers(opts.MaxBackground, watch, opts.JobPoll)
	s.routes = s.endpoints()
	s.guard = guard.Options{Hosts: opts.AllowedHosts, WriteTimeout: max(opts.WriteTimeout, 0), ReadTimeout: max(opts.ReadTimeout, 0),
		Misdirected: func(w http.ResponseWriter, _ *http.Request, msg string) {
			writeError(w, &apiError{Status: http.StatusMisdirectedRequest, Type: typeInvalidRequest, Code: "misdirected_request", Message: msg})
		}}
	keys, err := guard.NewKeys(opts.APIKeys)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.keys = keys
	return s, nil
}

// Subscribe returns the events of the optimization recorded as run runID
// from now on. The channel is closed when the optimization ends or cancel
// is called; for a run not in flight it is closed at once. A subscriber
// that falls behind by more than a few hundred events misses events.
func (s *Server) Subscribe(runID string) (<-chan tpo.Event, func()) {
	return s.hub.subscribe(runID)
}

// InFlight lists the optimizations running now, oldest first.
func (s *Server) InFlight() []tpo.LiveRun { return s.hub.inFlight() }

// Metrics returns the handler of the Prometheus metrics (also served on
// /metrics).
func (s *Server) Metrics() http.Handler { return s.metrics.handler() }

// statusRecorder remembers the status code written, for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// FlushError flushes the response, reporting a failed write (the client
// stopped reading or went away).
func (r *statusRecorder) FlushError() error {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return http.NewResponseController(r.ResponseWriter).Flush()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	var span tpo.Span
	if t := s.opts.Tracer; t != nil {
		ctx := t.Extract(r.Context(), r.Header.Get)
		ctx, span = t.Start(ctx, r.Method+" "+r.URL.Path, tpo.A("http.request.method", r.Method), tpo.A("url.path", r.URL.Path))
		r = r.WithContext(ctx)
	}
	route := "misdirected"
	guard.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route = s.route(w, r)
	}), s.guard).ServeHTTP(rec, r)
	code := rec.code
	if code == 0 {
		code = http.StatusOK
	}
	s.metrics.observeRequest(route, code, time.Since(t0))
	if span != nil {
		span.Set(tpo.A("http.route", route), tpo.A("http.response.status_code", code))
		var err error
		if code >= 500 {
			err = fmt.Errorf("status %d", code)
		}
		span.End(err)
	}
}

// authenticate checks the request's bearer key against every configured
// key in constant time. The key itself is never logged.
func (s *Server) authenticate(r *http.Request) *apiError {
	if !s.keys.Required() {
		return nil
	}
	key, ok := guard.Bearer(r)
	if !ok {
		return &apiError{Status: http.StatusUnauthorized, Type: typeAuthentication, Code: "missing_api_key",
			Message: "no API key given: send it as \"Authorization: Bearer KEY\""}
	}
	if !s.keys.Match(key) {
		return &apiError{Status: http.StatusUnauthorized, Type: typeAuthentication, Code: "invalid_api_key",
			Message: "incorrect API key"}
	}
	return nil
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "ok", "in_flight": len(s.slots)})
}

func (s *Server) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.opts.RequestTimeout > 0 {
		return context.WithTimeout(ctx, s.opts.RequestTimeout)
	}
	return context.WithCancel(ctx)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readBody reads a JSON request body of at most s.opts.MaxBody bytes.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	if aerr := checkJSON(r.Header.Get("Content-Type")); aerr != nil {
		guard.Hangup(w, r)
		return nil, aerr
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest, Code: "request_too_large",
				Message: fmt.Sprintf("the request body exceeds %d bytes", mbe.Limit)}
		case guard.BodyTimedOut(err):
			guard.Hangup(w, r)
			return nil, &apiError{Status: http.StatusRequestTimeout, Type: typeInvalidRequest, Code: "request_timeout",
				Message: fmt.Sprintf("the request body did not arrive within %v", s.opts.ReadTimeout)}
		}
		return nil, badRequest("", "reading the request body: %v", err)
	}
	return body, nil
}

// checkJSON refuses a request body that is not declared as JSON. A form of
// another site can post text/plain (and a script, a body with no type)
// without the browser asking the server first; JSON it cannot.
func checkJSON(contentType string) *apiError {
	mt, _, err := mime.ParseMediaType(contentType)
	if err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	got := "no Content-Type"
	if contentType != "" {
		got = fmt.Sprintf("Content-Type %q", contentType)
	}
	return &apiError{Status: http.StatusUnsupportedMediaType, Type: typeInvalidRequest, Code: "unsupported_media_type",
		Message: fmt.Sprintf("the request body must be JSON, sent with the header \"Content-Type: application/json\" (got %s)", got)}
}
