package tpo

import "context"

// A Tracer records what optimizations do as spans: the optimizer starts one
// per item and one per stage, and the clients of model servers one per
// model call and per HTTP attempt, each a child of the span its context
// carries. It is tpo's own small interface, so that this package needs no
// tracing library; package tracing implements it with OpenTelemetry.
type Tracer interface {
	// Start begins a span named name, a child of the span in ctx, and
	// returns a context that carries it.
	Start(ctx context.Context, name string, attrs ...Attr) (context.Context, Span)
	// Inject writes the trace position of ctx into the headers of an
	// outgoing request (W3C traceparent), so that the model server's own
	// spans join the trace.
	Inject(ctx context.Context, set func(key, value string))
	// Extract returns ctx with the trace position of an incoming request's
	// headers, read with get, so that a caller's trace continues.
	Extract(ctx context.Context, get func(key string) string) context.Context
}

// A Span is an operation being traced.
type Span interface {
	// Set adds attributes.
	Set(attrs ...Attr)
	// End ends the span; a non-nil err marks it failed. A span is
	// recorded as it ends: one never ended is dropped.
	End(err error)
}

// Attr is a span attribute. Values are strings, bools, ints, int64s or
// float64s.
type Attr struct {
	Key   string
	Value any
}

// A returns an attribute.
func A(key string, value any) Attr { return Attr{key, value} }

// NoSpan is a span that records nothing.
var NoSpan Span = noSpan{}

type noSpan struct{}

func (noSpan) Set(...Attr) {}
func (noSpan) End(error)   {}

// StartSpan starts a span with t, a child of the span in ctx, or does
// nothing when t is nil.
func StartSpan(ctx context.Context, t Tracer, name string, attrs ...Attr) (context.Context, Span) {
	if t == nil {
		return ctx, noSpan{}
	}
	return t.Start(ctx, name, attrs...)
}

type stageKey struct{}

// WithStage returns ctx marked as serving stage st of an optimization, so
// that the model calls made with it name their stage (a scorer is not told
// which stage calls it).
func WithStage(ctx context.Context, st Stage) context.Context {
	return context.WithValue(ctx, stageKey{}, st)
}

// StageOf returns the stage ctx serves (see WithStage), or "".
func StageOf(ctx context.Context) Stage {
	st, _ := ctx.Value(stageKey{}).(Stage)
	return st
}

// The operations of model calls, the first word of their spans' names.
const (
	OpChat  = "chat"  // a chat completion (policy, judge): GenAI's own name
	OpScore = "score" // a reward model's scores (vLLM, TEI): tpo's name
)

// The values of a model call span's tpo.status attribute.
const (
	StatusOK        = "ok"
	StatusError     = "error"
	StatusCancelled = "cancelled" // the caller's context ended: cancelled, or its deadline passed
)

// A ModelCall describes a call to a model server, for its span.
type ModelCall struct {
	// Operation is OpChat or OpScore.
	Operation string
	// Model is the model name sent; "" when the server uses its own.
	Model string
	// Backend is tpo's name for the server: policy, judge, reward.
	Backend string
	// Stage is the stage the call serves; "" means the stage of the
	// context (see WithStage), if any.
	Stage Stage
	// N is how many outputs the call asks for: responses to generate,
	// responses to score.
	N int
}

// A ModelCallSpan is the span of one model call.
type ModelCallSpan struct {
	ctx  context.Context
	span Span
}

// StartModelCall starts the span of a model call with t, a child of the
// span in ctx; it records nothing when t is nil. The span is named
// "OPERATION MODEL" (OPERATION BACKEND without a model name), as
// OpenTelemetry's GenAI conventions name spans, and carries
// gen_ai.operation.name, gen_ai.request.model, tpo.backend, tpo.stage and
// tpo.n; End adds the tokens and the status.
func StartModelCall(ctx context.Context, t Tracer, c ModelCall) (context.Context, *ModelCallSpan) {
	if t == nil {
		return ctx, &ModelCallSpan{ctx: ctx, span: noSpan{}}
	}
	if c.Stage == "" {
		c.Stage = StageOf(ctx)
	}
	name := c.Model
	if name == "" {
		name = c.Backend
	}
	attrs := []Attr{A("gen_ai.operation.name", c.Operation)}
	if c.Model != "" {
		attrs = append(attrs, A("gen_ai.request.model", c.Model))
	}
	attrs = append(attrs, A("tpo.backend", c.Backend), A("tpo.n", c.N))
	if c.Stage != "" {
		attrs = append(attrs, A("tpo.stage", string(c.Stage)))
	}
	sctx, span := t.Start(ctx, c.Operation+" "+name, attrs...)
	return sctx, &ModelCallSpan{ctx: ctx, span: span}
}

// Set adds attributes.
func (s *ModelCallSpan) Set(attrs ...Attr) { s.span.Set(attrs...) }

// End ends the span with what the call cost: gen_ai.usage.input_tokens
// and gen_ai.usage.output_tokens when known (non-zero), tpo.requests and
// tpo.retries; and how it ended: tpo.status, StatusOK, StatusCancelled when
// err came with the end of the caller's context, or StatusError.
func (s *ModelCallSpan) End(u Usage, err error) {
	if u.PromptTokens > 0 {
		s.span.Set(A("gen_ai.usage.input_tokens", u.PromptTokens))
	}
	if u.CompletionTokens > 0 {
		s.span.Set(A("gen_ai.usage.output_tokens", u.CompletionTokens))
	}
	s.span.Set(A("tpo.requests", u.Requests), A("tpo.retries", u.Retries), A("tpo.status", callStatus(s.ctx, err)))
	s.span.End(err)
}

// callStatus is the tpo.status of a call made with ctx that returned err.
func callStatus(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return StatusOK
	case ctx.Err() != nil:
		return StatusCancelled
	}
	return StatusError
}
