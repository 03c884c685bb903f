package tracing

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

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
	for _, k := range []string{`"host.name"`, `"process.pid"`} {
		if !strings.Contains(buf.String(), k) {
			t.Errorf("console output lacks the resource attribute %s:\n%s", k, buf.String())
		}
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

// collect returns a tracer exporting to a fake collector, and a function
// that flushes it and returns the spans received.
func collect(t *testing.T) (*Tracer, func() map[string][]*tracepb.Span) {
	t.Helper()
	col := tracingtest.NewCollector(t)
	tr, shutdown, err := FromEnv(context.Background(), env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL}), io.Discard)
	if err != nil || tr == nil {
		t.Fatalf("FromEnv: %v, %v", tr, err)
	}
	return tr, func() map[string][]*tracepb.Span {
		if err := shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		return col.Spans()
	}
}

// Every model call of an optimization has a span under its stage, with
// the model, stage, n, tokens (where the server reports them) and status:
// the policy's generations, and the reward model's scoring whichever
// serves it (a vLLM or TEI reward model, or an LLM judge, one call per
// response graded).
func TestModelCallSpans(t *testing.T) {
	const width = 3
	tests := []struct {
		name   string
		scorer func(t *testing.T, tr *Tracer) tpo.Scorer
		span   string // the name of the reward's model call spans
		calls  int    // how many
		n      string // their tpo.n
		tokens []string
	}{
		{"vllm", func(t *testing.T, tr *Tracer) tpo.Scorer {
			rm := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{})
			return must(reward.NewVLLM(reward.VLLMOptions{Options: httpx.Options{URLs: []string{rm.URL}, Tracer: tr}, Model: "rm"}))
		}, "score rm", 2, "3", []string{"gen_ai.usage.input_tokens"}},
		{"tei", func(t *testing.T, tr *Tracer) tpo.Scorer {
			rm := tpotest.NewTEIServer(t, tpotest.TEIOptions{})
			return must(reward.NewTEI(reward.TEIOptions{Options: httpx.Options{URLs: []string{rm.URL}, Tracer: tr}}))
		}, "score reward", 2, "3", nil},
		{"judge", func(t *testing.T, tr *Tracer) tpo.Scorer {
			judge := tpotest.NewChatServer(t, tpotest.ChatOptions{Models: []string{"judge-model"},
				Respond: func(tpotest.ChatRequestRecord, int) string { return "7" }})
			return must(reward.NewJudge(reward.JudgeOptions{Options: httpx.Options{URLs: []string{judge.URL()}, Tracer: tr}, Model: "judge-model"}))
		}, "chat judge-model", 2 * width, "1", []string{"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, spans := collect(t)
			chat := tpotest.NewChatServer(t, tpotest.ChatOptions{Respond: func(req tpotest.ChatRequestRecord, choice int) string {
				return fmt.Sprintf("<improved_response>answer %d</improved_response>", *req.Seed) // every response differs
			}})
			pol := must(openai.New(openai.Options{Options: httpx.Options{URLs: []string{chat.URL()}, Tracer: tr}, Model: chat.Model()}))
			cfg := tpo.DefaultConfig()
			cfg.Width, cfg.Depth = width, 1
			seed := int64(1)
			cfg.Seed = &seed
			o := &tpo.Optimizer{Policy: pol, Reward: tt.scorer(t, tr), Config: cfg, Tracer: tr}
			if _, err := o.Optimize(context.Background(), tpo.Item{ID: "q1", Messages: []tpo.Message{{Role: "user", Content: "hi"}}}, tpo.Options{}); err != nil {
				t.Fatal(err)
			}
			got := spans()
			if n := len(got[tt.span]); n != tt.calls {
				t.Fatalf("%d %q spans, want %d; spans: %s", n, tt.span, tt.calls, tracingtest.Names(got))
			}
			for _, s := range got[tt.span] {
				checkCall(t, got, s, "tpo.stage score", map[string]string{"tpo.stage": "score", "tpo.n": tt.n, "tpo.status": "ok"}, tt.tokens)
			}
			for _, s := range got["chat "+chat.Model()] {
				checkCall(t, got, s, "", map[string]string{"gen_ai.request.model": chat.Model(), "tpo.status": "ok"},
					[]string{"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"})
			}
		})
	}
}

// checkCall checks a model call span: its parent (any stage when parent
// is ""), attributes, and non-zero token counts.
func checkCall(t *testing.T, spans map[string][]*tracepb.Span, s *tracepb.Span, parent string, want map[string]string, tokens []string) {
	t.Helper()
	p := tracingtest.ParentName(spans, s)
	if parent == "" && !strings.HasPrefix(p, "tpo.stage ") || parent != "" && p != parent {
		t.Errorf("%s: parent %q, want %q", s.Name, p, cmp.Or(parent, "a stage"))
	}
	for k, v := range want {
		if got := tracingtest.Attr(s, k); got != v {
			t.Errorf("%s: %s = %q, want %q", s.Name, k, got, v)
		}
	}
	for _, k := range tokens {
		if got := tracingtest.Attr(s, k); got == "" || got == "0" {
			t.Errorf("%s: %s = %q, want a count", s.Name, k, got)
		}
	}
}

// A model call that fails has the status error, one whose caller gave up
// cancelled.
func TestModelCallStatus(t *testing.T) {
	tr, spans := collect(t)
	chat := tpotest.NewChatServer(t, tpotest.ChatOptions{Fail: func(n int) (int, string) {
		return http.StatusBadRequest, `{"error": {"message": "no"}}`
	}})
	pol := must(openai.New(openai.Options{Options: httpx.Options{URLs: []string{chat.URL()}, Tracer: tr}, Model: chat.Model()}))
	req := tpo.GenerateRequest{Messages: []tpo.Message{{Role: "user", Content: "hi"}}, N: 1, Stage: tpo.StageLoss,
		Sampling: tpo.Sampling{MaxTokens: 10}}
	if _, err := pol.Generate(context.Background(), req); err == nil {
		t.Fatal("the failing server's generation succeeded")
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	req.Stage = tpo.StageUpdate
	if _, err := pol.Generate(cancelled, req); err == nil {
		t.Fatal("a cancelled generation succeeded")
	}
	status := map[string]string{}
	for _, s := range spans()["chat "+chat.Model()] {
		status[tracingtest.Attr(s, "tpo.stage")] = tracingtest.Attr(s, "tpo.status")
	}
	if want := map[string]string{"loss": "error", "update": "cancelled"}; !maps.Equal(status, want) {
		t.Errorf("status by stage %v, want %v", status, want)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
