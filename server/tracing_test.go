package server

import (
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tpoproject/tpo/tracing"
)

// A request that carries a traceparent continues the caller's trace: the
// server's request span is its child, the item span the request span's.
func TestRequestContinuesTheCallersTrace(t *testing.T) {
	rec := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(rec))
	e := newTestEnv(t, func(o *Options) { o.Tracer = tracing.New(tp) })
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	var c completion
	decodeJSON(t, e.post(t, `{"model":"m",`+convo+`}`, "Traceparent", "00-"+traceID+"-"+parentID+"-01"), http.StatusOK, &c)
	spans := map[string]tracetest.SpanStub{}
	for _, s := range rec.GetSpans() {
		spans[s.Name] = s
	}
	req, ok := spans["POST /v1/chat/completions"]
	if !ok {
		t.Fatalf("no request span among %d spans", len(spans))
	}
	if req.SpanContext.TraceID().String() != traceID || req.Parent.SpanID().String() != parentID {
		t.Errorf("request span: trace %s parent %s, want %s and %s", req.SpanContext.TraceID(), req.Parent.SpanID(), traceID, parentID)
	}
	item, ok := spans["tpo.item"]
	if !ok || item.Parent.SpanID() != req.SpanContext.SpanID() {
		t.Errorf("item span missing or not the request span's child: %+v", item.Parent)
	}
	if _, ok := spans["tpo.stage update"]; !ok {
		t.Error("no stage spans")
	}
}
