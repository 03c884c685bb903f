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
	// End ends the span; a non-nil err marks it failed.
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

type noSpan struct{}

func (noSpan) Set(...Attr) {}
func (noSpan) End(error)   {}

// startSpan starts a span with t, or does nothing when t is nil.
func startSpan(ctx context.Context, t Tracer, name string, attrs ...Attr) (context.Context, Span) {
	if t == nil {
		return ctx, noSpan{}
	}
	return t.Start(ctx, name, attrs...)
}
