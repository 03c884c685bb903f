package tracing

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/openai"
	"github.com/tpoproject/tpo/reward"
	"github.com/tpoproject/tpo/tpotest"
	"github.com/tpoproject/tpo/tracing/tracingtest"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestOffUnlessConfigured(t *testing.T) {
	for _, e := range []map[string]string{
		{},
		{"OTEL_SERVICE_NAME": "x"},
		{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
		{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"},
	} {
		tr, shutdown, err := FromEnv(context.Background(), env(e), io.Discard)
		if tr != nil || err != nil || shutdown(context.Background()) != nil {
			t.Errorf("%v: tracer %v, error %v; want none", e, tr, err)
		}
	}
	for _, e := range []map[string]string{
		{"OTEL_TRACES_EXPORTER": "jaeger"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
	} {
		if _, _, err := FromEnv(context.Background(), env(e), io.Discard); err == nil {
			t.Errorf("%v: want an error", e)
		}
	}
}

func TestConsole(t *testing.T) {
	var buf bytes.Buffer
	tr, shutdown, err := FromEnv(context.Background(), env(map[string]string{"OTEL_TRACES_EXPORTER": "console"}), &buf)
	if err != nil || tr == nil {
		t.Fatalf("console: %v, %v", tr, err)
	}
	_, span := tr.Start(context.Background(), "tpo.item", tpo.A("tpo.item", "q1"), tpo.A("tpo.width", 5))
	span.End(nil)
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"Name":"tpo.item"`) || !strings.Contains(buf.String(), "q1") {
		t.Errorf("console output lacks the span:\n%s", buf.String())
	}
}

// An optimization against fake model servers: spans per item, stage,
// model call and HTTP attempt, parented in that order, and a traceparent on
// every request to the servers carrying the same trace.
func TestOptimizationTrace(t *testing.T) {
	col := tracingtest.NewCollector(t)
	tr, shutdown, err := FromEnv(context.Background(), env(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL, "OTEL_SERVICE_NAME": "tpo-test",
	}), io.Discard)
	if err != nil || tr == nil {
		t.Fatalf("FromEnv: %v, %v", tr, err)
	}
	chat := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	rm := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{})
	pol, err := openai.New(openai.Options{Options: httpx.Options{URLs: []string{chat.URL()}, Tracer: tr}, Model: chat.Model()})
	if err != nil {
		t.Fatal(err)
	}
	rw, err := reward.NewVLLM(reward.VLLMOptions{Options: httpx.Options{URLs: []string{rm.URL}, Tracer: tr}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tpo.DefaultConfig()
	cfg.Depth = 1
	o := &tpo.Optimizer{Policy: pol, Reward: rw, Config: cfg, Tracer: tr}
	if _, err := o.Optimize(context.Background(), tpo.Item{ID: "q1", Messages: []tpo.Message{{Role: "user", Content: "hi"}}}, tpo.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := col.Spans()
	items := spans["tpo.item"]
	if len(items) != 1 {
		t.Fatalf("%d item spans, want 1; spans: %s", len(items), tracingtest.Names(spans))
	}
	item := items[0]
	for _, stage := range []string{"sample", "score", "loss", "gradient", "update"} {
		ss := spans["tpo.stage "+stage]
		if len(ss) == 0 {
			t.Errorf("no span for stage %s", stage)
			continue
		}
		for _, s := range ss {
			if !bytes.Equal(s.ParentSpanId, item.SpanId) || !bytes.Equal(s.TraceId, item.TraceId) {
				t.Errorf("stage %s span is not a child of the item span", stage)
			}
		}
	}
	calls := spans["chat "+chat.Model()]
	if len(calls) != 4 {
		t.Errorf("%d model call spans, want 4 (sample, loss, gradient, update)", len(calls))
	}
	for _, c := range calls {
		if p := tracingtest.ParentName(spans, c); !strings.HasPrefix(p, "tpo.stage ") || tracingtest.Attr(c, "gen_ai.request.model") == "" || tracingtest.Attr(c, "gen_ai.usage.output_tokens") == "" {
			t.Errorf("model call span %s: parent or attributes wrong: %v", c.Name, c.Attributes)
		}
	}
	if n := len(spans["HTTP POST /chat/completions"]); n != 4 {
		t.Errorf("%d HTTP attempt spans for chat, want 4", n)
	}
	if n := len(spans["HTTP POST /classify"]); n == 0 {
		t.Error("no HTTP span for the reward model's /classify")
	}
	// Every request to the servers carried the trace.
	want := hex.EncodeToString(item.TraceId)
	for _, r := range chat.Requests() {
		if tp := r.Header.Get("Traceparent"); !strings.Contains(tp, want) {
			t.Errorf("request to %s: traceparent %q, want trace %s", r.Path, tp, want)
		}
	}
}
