package openai_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/openai"
	"github.com/tpoproject/tpo/tpotest"
)

// newClient returns a client for srv with millisecond backoff.
func newClient(t *testing.T, srv *tpotest.ChatServer, edit ...func(*openai.Options)) *openai.Client {
	t.Helper()
	opts := openai.Options{Model: srv.Model()}
	opts.URLs = []string{srv.URL()}
	opts.BaseBackoff = time.Millisecond
	opts.MaxBackoff = 2 * time.Millisecond
	for _, e := range edit {
		e(&opts)
	}
	c, err := openai.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func seed(s int64) *int64 { return &s }

var conversation = []tpo.Message{
	{Role: tpo.RoleSystem, Content: "You are helpful."},
	{Role: tpo.RoleUser, Content: "Name a color."},
}

func genReq(n int, s *int64) tpo.GenerateRequest {
	return tpo.GenerateRequest{
		Messages: conversation,
		N:        n,
		Sampling: tpo.Sampling{Temperature: 0.7, TopP: 0.95, MaxTokens: 64},
		Seed:     s,
		Stage:    tpo.StageSample,
	}
}

// body is the JSON a Generate request should send.
func body(n int, s *int64, edits ...func(map[string]any)) map[string]any {
	m := map[string]any{
		"model": tpotest.DefaultChatModel,
		"messages": []any{
			map[string]any{"role": "system", "content": "You are helpful."},
			map[string]any{"role": "user", "content": "Name a color."},
		},
		"temperature": 0.7,
		"top_p":       0.95,
		"max_tokens":  float64(64),
	}
	if n > 1 {
		m["n"] = float64(n)
	}
	if s != nil {
		m["seed"] = float64(*s)
	}
	for _, e := range edits {
		e(m)
	}
	return m
}

// sameBodies compares the bodies sent with want, ignoring order (single
// requests are concurrent).
func sameBodies(t *testing.T, got, want []map[string]any) {
	t.Helper()
	key := func(m map[string]any) string { b, _ := json.Marshal(m); return string(b) }
	count := map[string]int{}
	for _, m := range want {
		count[key(m)]++
	}
	for _, m := range got {
		count[key(m)]--
	}
	for k, v := range count {
		if v != 0 {
			t.Errorf("bodies sent:\n%s\nwant:\n%s\n(mismatch on %s)", dump(got), dump(want), k)
			return
		}
	}
}

func dump(ms []map[string]any) string {
	var b strings.Builder
	for _, m := range ms {
		j, _ := json.Marshal(m)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func replies(s int64, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("reply seed %d to: Name a color.", s+int64(i)))
	}
	return out
}

func TestGenerateBody(t *testing.T) {
	tests := []struct {
		name   string
		flavor tpotest.Flavor
		req    tpo.GenerateRequest
		edit   func(*openai.Options)
		want   []map[string]any
		texts  []string
	}{
		{
			name:  "vllm n seeded",
			req:   genReq(3, seed(42)),
			want:  []map[string]any{body(3, seed(42))},
			texts: replies(42, 3),
		},
		{
			name:  "single unseeded",
			req:   genReq(1, nil),
			want:  []map[string]any{body(1, nil)},
			texts: []string{"reply 0 to: Name a color."},
		},
		{
			name: "zero temperature is sent",
			req: func() tpo.GenerateRequest {
				r := genReq(1, seed(0))
				r.Sampling.Temperature = 0
				return r
			}(),
			want:  []map[string]any{body(1, seed(0), func(m map[string]any) { m["temperature"] = float64(0) })},
			texts: replies(0, 1),
		},
		{
			name:   "max_completion_tokens",
			flavor: tpotest.OpenAI,
			req:    genReq(2, nil),
			edit:   func(o *openai.Options) { o.MaxTokensField = openai.MaxCompletionTokens },
			want: []map[string]any{body(2, nil, func(m map[string]any) {
				delete(m, "max_tokens")
				m["max_completion_tokens"] = float64(64)
			})},
			texts: []string{"reply 0 to: Name a color.", "reply 1 to: Name a color."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Flavor: tt.flavor})
			var edits []func(*openai.Options)
			if tt.edit != nil {
				edits = append(edits, tt.edit)
			}
			c := newClient(t, srv, edits...)
			gen, err := c.Generate(context.Background(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			sameBodies(t, srv.Bodies(), tt.want)
			if !reflect.DeepEqual(gen.Texts, tt.texts) {
				t.Errorf("texts = %q, want %q", gen.Texts, tt.texts)
			}
			if gen.Usage.Requests != 1 {
				t.Errorf("usage.Requests = %d, want 1", gen.Usage.Requests)
			}
		})
	}
}

func TestGenerateUsage(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	c := newClient(t, srv)
	gen, err := c.Generate(context.Background(), genReq(3, seed(1)))
	if err != nil {
		t.Fatal(err)
	}
	wantPrompt := tpotest.PromptTokens(conversation)
	wantCompletion := 0
	for _, s := range gen.Texts {
		wantCompletion += tpotest.CountTokens(s)
	}
	want := tpo.Usage{Requests: 1, PromptTokens: wantPrompt, CompletionTokens: wantCompletion}
	if gen.Usage != want {
		t.Errorf("usage = %+v, want %+v", gen.Usage, want)
	}
}

func TestGenerateRequiresMaxTokens(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	c := newClient(t, srv)
	req := genReq(1, nil)
	req.Sampling.MaxTokens = 0
	if _, err := c.Generate(context.Background(), req); err == nil || !strings.Contains(err.Error(), "max tokens") {
		t.Errorf("error = %v, want one about max tokens", err)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

// logCounter counts log records whose message contains a word.
type logCounter struct {
	mu    sync.Mutex
	lines []string
}

func (l *logCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	return len(p), nil
}

func (l *logCounter) count(word string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, word) {
			n++
		}
	}
	return n
}

func TestGenerateNFallback(t *testing.T) {
	tests := []struct {
		name   string
		opts   tpotest.ChatOptions
		kept   int // choices kept from the first request
		status int // of the first request
	}{
		{"ollama ignores n", tpotest.ChatOptions{Flavor: tpotest.Ollama}, 1, 200},
		{"llama.cpp 500", tpotest.ChatOptions{Flavor: tpotest.LlamaCPP}, 0, 500},
		{"llama.cpp 400", tpotest.ChatOptions{Flavor: tpotest.LlamaCPP, RejectNStatus: 400}, 0, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tpotest.NewChatServer(t, tt.opts)
			logs := &logCounter{}
			c := newClient(t, srv, func(o *openai.Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })

			gen, err := c.Generate(context.Background(), genReq(3, seed(5)))
			if err != nil {
				t.Fatal(err)
			}
			// The same texts vLLM gives for n=3, seed 5.
			if want := replies(5, 3); !reflect.DeepEqual(gen.Texts, want) {
				t.Errorf("texts = %q, want %q", gen.Texts, want)
			}
			want := []map[string]any{body(3, seed(5))}
			for i := tt.kept; i < 3; i++ {
				want = append(want, body(1, seed(5+int64(i))))
			}
			sameBodies(t, srv.Bodies(), want)
			if got := srv.Bodies()[0]["n"]; got != float64(3) {
				t.Errorf("first request n = %v, want 3", got)
			}
			if wantReq := len(want) - 1 + tt.kept; gen.Usage.Requests != wantReq {
				t.Errorf("usage.Requests = %d, want %d (successful requests)", gen.Usage.Requests, wantReq)
			}
			if gen.Usage.Retries != 0 {
				t.Errorf("usage.Retries = %d, want 0: a refused n is not retried", gen.Usage.Retries)
			}

			// Remembered: the next call goes straight to single requests.
			before := len(srv.Bodies())
			gen, err = c.Generate(context.Background(), genReq(2, nil))
			if err != nil {
				t.Fatal(err)
			}
			sameBodies(t, srv.Bodies()[before:], []map[string]any{body(1, nil), body(1, nil)})
			if len(gen.Texts) != 2 || gen.Usage.Requests != 2 {
				t.Errorf("second call: %d texts, %d requests; want 2 and 2", len(gen.Texts), gen.Usage.Requests)
			}
			if n := logs.count("does not honour n"); n != 1 {
				t.Errorf("fallback logged %d times, want once", n)
			}
			// WithModel shares what was learnt.
			before = len(srv.Bodies())
			if _, err := c.WithModel(srv.Model()).Generate(context.Background(), genReq(2, nil)); err != nil {
				t.Fatal(err)
			}
			for _, b := range srv.Bodies()[before:] {
				if _, ok := b["n"]; ok {
					t.Errorf("WithModel client sent n: %v", b)
				}
			}
		})
	}
}

func TestGenerateVLLMKeepsN(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	c := newClient(t, srv)
	for range 2 {
		if _, err := c.Generate(context.Background(), genReq(4, nil)); err != nil {
			t.Fatal(err)
		}
	}
	sameBodies(t, srv.Bodies(), []map[string]any{body(4, nil), body(4, nil)})
}

func TestGenerateRetry(t *testing.T) {
	tests := []struct {
		name string
		opts tpotest.ChatOptions
	}{
		{"503 twice", tpotest.ChatOptions{Fail: func(n int) (int, string) {
			if n < 2 {
				return 503, `{"error":{"message":"server busy, please try again.  maximum pending requests exceeded","type":"api_error"}}`
			}
			return 0, ""
		}}},
		{"dropped twice", tpotest.ChatOptions{Drop: func(n int) bool { return n < 2 }}},
		{"truncated body", tpotest.ChatOptions{Fail: func(n int) (int, string) {
			if n < 2 {
				return 200, `{"choices":[{"index":0,"message":{"content":"half`
			}
			return 0, ""
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tpotest.NewChatServer(t, tt.opts)
			c := newClient(t, srv)
			gen, err := c.Generate(context.Background(), genReq(2, seed(3)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gen.Texts, replies(3, 2)) {
				t.Errorf("texts = %q", gen.Texts)
			}
			if gen.Usage.Retries != 2 || gen.Usage.Requests != 1 {
				t.Errorf("usage = %+v, want 2 retries and 1 request", gen.Usage)
			}
			sameBodies(t, srv.Bodies(), []map[string]any{body(2, seed(3)), body(2, seed(3)), body(2, seed(3))})
		})
	}
}

func TestGenerateNoRetryOn400(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Fail: func(n int) (int, string) {
		return 400, `{"error":{"message":"temperature must be non-negative","type":"BadRequestError","param":null,"code":400}}`
	}})
	c := newClient(t, srv)
	_, err := c.Generate(context.Background(), genReq(2, nil))
	var se *httpx.StatusError
	if !errors.As(err, &se) || se.Status != 400 {
		t.Fatalf("error = %v, want a 400 StatusError", err)
	}
	for _, want := range []string{srv.URL(), "400 Bad Request", "temperature must be non-negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if errors.Is(err, tpo.ErrContextLength) {
		t.Error("a plain 400 was reported as a context length error")
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestContextLength(t *testing.T) {
	long := genReq(1, nil)
	long.Messages = []tpo.Message{{Role: tpo.RoleUser, Content: strings.Repeat("word ", 50)}}
	tests := []struct {
		name string
		opts tpotest.ChatOptions
	}{
		{"vllm", tpotest.ChatOptions{Flavor: tpotest.VLLM, ContextLength: 40}},
		{"llama.cpp", tpotest.ChatOptions{Flavor: tpotest.LlamaCPP, ContextLength: 40}},
		{"openai", tpotest.ChatOptions{Flavor: tpotest.OpenAI, ContextLength: 40}},
		{"tgi 422", tpotest.ChatOptions{Fail: func(int) (int, string) {
			return 422, `{"error":"Input validation error: ` + "`inputs`" + ` tokens + ` + "`max_new_tokens`" + ` must be <= 4096. Given: 4050 ` + "`inputs`" + ` tokens and 64 ` + "`max_new_tokens`" + `","error_type":"validation"}`
		}}},
		{"sglang flat", tpotest.ChatOptions{Fail: func(int) (int, string) {
			return 400, `{"object":"error","message":"The input (5000 tokens) is longer than the model's context length (4096 tokens).","type":"BadRequestError","param":null,"code":400}`
		}}},
		{"vllm max_tokens too large", tpotest.ChatOptions{Fail: func(int) (int, string) {
			return 400, `{"error":{"message":"'max_tokens' or 'max_completion_tokens' is too large: 3000. This model's maximum context length is 4096 tokens and your request has 2000 input tokens (3000 > 4096 - 2000).","type":"BadRequestError","param":null,"code":400}}`
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tpotest.NewChatServer(t, tt.opts)
			c := newClient(t, srv)
			_, err := c.Generate(context.Background(), long)
			if !errors.Is(err, tpo.ErrContextLength) {
				t.Fatalf("error = %v, want it to wrap tpo.ErrContextLength", err)
			}
			var se *httpx.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("error = %v, want it to keep the *httpx.StatusError", err)
			}
			if !strings.Contains(err.Error(), srv.URL()) {
				t.Errorf("error %q does not name the server", err)
			}
			if n := len(srv.Requests()); n != 1 {
				t.Errorf("%d requests, want 1 (not retried)", n)
			}
		})
	}
}

func TestIsContextLength(t *testing.T) {
	tests := []struct {
		se   httpx.StatusError
		want bool
	}{
		{httpx.StatusError{Status: 400, Message: "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens"}, true},
		{httpx.StatusError{Status: 400, Type: "exceed_context_size_error", Message: "the request exceeds the available context size"}, true},
		{httpx.StatusError{Status: 400, Code: "context_length_exceeded", Message: "too long"}, true},
		{httpx.StatusError{Status: 422, Message: "Input validation error: `inputs` must have less than 4096 tokens. Given: 5000"}, true},
		{httpx.StatusError{Status: 400, Message: "prompt is too long"}, true},
		{httpx.StatusError{Status: 413, Message: "Input is too long for this model"}, true},
		{httpx.StatusError{Status: 400, Message: "max_tokens must be at least 1, got 0."}, false},
		{httpx.StatusError{Status: 400, Message: "temperature must be non-negative"}, false},
		{httpx.StatusError{Status: 404, Message: "The model `x` does not exist."}, false},
		{httpx.StatusError{Status: 500, Message: "CUDA out of memory"}, false},
		{httpx.StatusError{Status: 503, Message: "maximum context length is 4096 tokens"}, false},
	}
	for _, tt := range tests {
		if got := openai.IsContextLength(&tt.se); got != tt.want {
			t.Errorf("IsContextLength(%d %q type=%q code=%q) = %v, want %v", tt.se.Status, tt.se.Message, tt.se.Type, tt.se.Code, got, tt.want)
		}
	}
}

func TestRejectsN(t *testing.T) {
	// Servers that refuse n with other words fall back too.
	tests := []struct {
		status int
		body   string
		want   bool
	}{
		{500, `{"error":{"code":500,"message":"Only one completion choice is allowed","type":"server_error"}}`, true},
		{400, `{"error":{"message":"n must be 1 when using greedy sampling","type":"invalid_request_error","param":"n"}}`, true},
		{400, `{"error":{"message":"Unsupported value: 'n' does not support 3 with this model.","type":"invalid_request_error"}}`, true},
		{400, `{"error":{"message":"multiple choices are not supported","type":"invalid_request_error"}}`, true},
		{500, `{"error":{"message":"CUDA out of memory","type":"server_error"}}`, false},
	}
	for _, tt := range tests {
		srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Fail: func(n int) (int, string) {
			if n == 0 {
				return tt.status, tt.body
			}
			return 0, ""
		}})
		c := newClient(t, srv, func(o *openai.Options) { o.MaxRetries = -1 })
		gen, err := c.Generate(context.Background(), genReq(2, nil))
		switch {
		case tt.want && (err != nil || len(gen.Texts) != 2 || len(srv.Requests()) != 3):
			t.Errorf("%s: err=%v texts=%d requests=%d; want a fallback to 2 single requests", tt.body, err, len(gen.Texts), len(srv.Requests()))
		case !tt.want && err == nil:
			t.Errorf("%s: no error; want the server's error", tt.body)
		}
	}
}

func TestZeroChoices(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Fail: func(int) (int, string) {
		return 200, `{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":3}}`
	}})
	c := newClient(t, srv)
	_, err := c.Generate(context.Background(), genReq(1, nil))
	if err == nil || !strings.Contains(err.Error(), srv.URL()) || !strings.Contains(err.Error(), "no choices") {
		t.Errorf("error = %v, want one naming the server and saying there are no choices", err)
	}
}

func TestNullAndTruncatedContent(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Fail: func(int) (int, string) {
		return 200, `{"choices":[
			{"index":1,"message":{"role":"assistant","content":"cut off mid"},"finish_reason":"length"},
			{"index":0,"message":{"role":"assistant","content":null,"reasoning_content":"thinking"},"finish_reason":"stop"}],
			"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}`
	}})
	c := newClient(t, srv)
	gen, err := c.Generate(context.Background(), genReq(2, nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"", "cut off mid"}; !reflect.DeepEqual(gen.Texts, want) {
		t.Errorf("texts = %q, want %q (ordered by index, null kept as empty)", gen.Texts, want)
	}
	if want := (tpo.Usage{Requests: 1, PromptTokens: 5, CompletionTokens: 9}); gen.Usage != want {
		t.Errorf("usage = %+v, want %+v", gen.Usage, want)
	}
}

func TestModelNotFound(t *testing.T) {
	for _, flavor := range []tpotest.Flavor{tpotest.VLLM, tpotest.Ollama, tpotest.OpenAI} {
		t.Run(string(flavor), func(t *testing.T) {
			srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Flavor: flavor})
			c := newClient(t, srv, func(o *openai.Options) { o.Model = "lama3" })
			_, err := c.Generate(context.Background(), genReq(1, nil))
			var se *httpx.StatusError
			if !errors.As(err, &se) || se.Status != 404 {
				t.Fatalf("error = %v, want a 404", err)
			}
			if !strings.Contains(err.Error(), `model "lama3" is not served`) {
				t.Errorf("error %q does not say the model name is wrong", err)
			}
			if err := c.Check(context.Background()); err == nil || !strings.Contains(err.Error(), tpotest.DefaultChatModel) {
				t.Errorf("Check = %v, want an error listing the served models", err)
			}
		})
	}
}

func TestWrongPath(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	opts := openai.Options{Model: srv.Model()}
	opts.URLs = []string{strings.TrimSuffix(srv.URL(), "/v1")}
	c, err := openai.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Generate(context.Background(), genReq(1, nil))
	if err == nil || !strings.Contains(err.Error(), "/v1") {
		t.Errorf("error = %v, want a hint about /v1", err)
	}
}

func TestAPIKey(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Flavor: tpotest.OpenAI, APIKey: "sk-abc"})
	c := newClient(t, srv, func(o *openai.Options) { o.APIKey = "sk-abc" })
	if _, err := c.Generate(context.Background(), genReq(1, nil)); err != nil {
		t.Fatal(err)
	}
	if got := srv.Requests()[0].Header.Get("Authorization"); got != "Bearer sk-abc" {
		t.Errorf("Authorization = %q", got)
	}
	c = newClient(t, srv, func(o *openai.Options) { o.APIKey = "sk-wrong" })
	_, err := c.Generate(context.Background(), genReq(1, nil))
	if err == nil || !strings.Contains(err.Error(), "API key") || strings.Contains(err.Error(), "sk-wrong") {
		t.Errorf("error = %v, want a hint about the API key that does not show it", err)
	}
}

func TestSinglesFailure(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Flavor: tpotest.LlamaCPP, Fail: func(n int) (int, string) {
		if n >= 2 {
			return 400, `{"error":{"code":400,"message":"invalid grammar","type":"invalid_request_error"}}`
		}
		return 0, ""
	}})
	c := newClient(t, srv)
	// Request 0 is the refused n; request 1 succeeds, the rest fail.
	_, err := c.Generate(context.Background(), genReq(3, nil))
	if err == nil || !strings.Contains(err.Error(), "invalid grammar") {
		t.Errorf("error = %v, want the server's error", err)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		opts openai.Options
		want string
	}{
		{openai.Options{}, "no model"},
		{openai.Options{Model: "m", MaxTokensField: "max_length"}, "max tokens field"},
		{openai.Options{Model: "m"}, "no URL"},
	}
	for _, tt := range tests {
		if _, err := openai.New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", tt.opts, err, tt.want)
		}
	}
}

func TestChatLogprobs(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Respond: func(tpotest.ChatRequestRecord, int) string { return "8" }})
	c := newClient(t, srv)
	yes, k, zero, one := true, 3, 0.0, 1
	resp, info, err := c.Chat(context.Background(), openai.ChatRequest{
		Messages:    []openai.Message{{Role: "user", Content: "Grade it."}},
		Temperature: &zero,
		MaxTokens:   &one,
		Logprobs:    &yes,
		TopLogprobs: &k,
	})
	if err != nil {
		t.Fatal(err)
	}
	if info.URL != srv.URL() {
		t.Errorf("info.URL = %q, want %q", info.URL, srv.URL())
	}
	want := map[string]any{
		"model":        tpotest.DefaultChatModel,
		"messages":     []any{map[string]any{"role": "user", "content": "Grade it."}},
		"temperature":  float64(0),
		"max_tokens":   float64(1),
		"logprobs":     true,
		"top_logprobs": float64(3),
	}
	sameBodies(t, srv.Bodies(), []map[string]any{want})
	lp := resp.Choices[0].Logprobs
	if lp == nil || len(lp.Content) != 1 || len(lp.Content[0].TopLogprobs) != 3 {
		t.Fatalf("logprobs = %+v, want one token with 3 alternatives", lp)
	}
	if top := lp.Content[0].TopLogprobs; top[0].Token != "8" || top[1].Token != "alt1" || top[1].Logprob != -1 {
		t.Errorf("top logprobs = %+v", top)
	}
}

func TestChatRaw(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	c := newClient(t, srv)
	in := []byte(`{"model":"test-model","messages":[{"role":"user","content":"hi"}],"top_k":5,"tools":[]}`)
	out, _, err := c.ChatRaw(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Requests()[0].Body; !bytes.Equal(got, in) {
		t.Errorf("body sent = %s, want %s unchanged", got, in)
	}
	var resp openai.ChatResponse
	if err := json.Unmarshal(out, &resp); err != nil || resp.Texts()[0] != "reply 0 to: hi" {
		t.Errorf("response = %s (%v)", out, err)
	}
	if _, _, err := c.ChatRaw(context.Background(), []byte(`{"model":`)); err == nil {
		t.Error("ChatRaw accepted invalid JSON")
	}
	_, _, err = c.ChatRaw(context.Background(), []byte(`{"model":"other","messages":[{"role":"user","content":"hi"}]}`))
	if err == nil || !strings.Contains(err.Error(), `model "other"`) {
		t.Errorf("error = %v, want it to name the model", err)
	}
}

func TestModels(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Models: []string{"a", "b"}, ContextLength: 4096})
	c := newClient(t, srv, func(o *openai.Options) { o.Model = "b" })
	list, err := c.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Data) != 2 || list.Data[0].ID != "a" || list.Data[1].MaxModelLen != 4096 {
		t.Errorf("models = %+v", list)
	}
	if err := c.Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
	ids, err := c.ModelIDs(context.Background())
	if err != nil || !reflect.DeepEqual(ids, []string{"a", "b"}) {
		t.Errorf("ModelIDs = %q, %v; want [a b]", ids, err)
	}
}

func TestRequestExtra(t *testing.T) {
	temp := 0.5
	req := openai.ChatRequest{
		Model:       "m",
		Messages:    []openai.Message{{Role: "user", Content: "x"}},
		Temperature: &temp,
		Extra:       map[string]any{"top_k": 20, "min_p": 0.05, "temperature": 9, "chat_template_kwargs": map[string]bool{"enable_thinking": false}},
	}
	got, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":0.5,"chat_template_kwargs":{"enable_thinking":false},"min_p":0.05,"top_k":20}`
	if string(got) != want {
		t.Errorf("json = %s\nwant   %s", got, want)
	}
}

func TestGenerateCancelled(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	c := newClient(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Generate(ctx, genReq(3, nil)); !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
}

func TestGenerateFinishReasons(t *testing.T) {
	// Choice 1 (seed 11 on every flavor) is longer than max_tokens: the
	// server cuts it ("length").
	respond := func(req tpotest.ChatRequestRecord, i int) string {
		if req.Seed != nil && *req.Seed == 11 {
			return strings.Repeat("word ", 100)
		}
		return "short"
	}
	for _, flavor := range []tpotest.Flavor{tpotest.VLLM, tpotest.LlamaCPP} {
		t.Run(string(flavor), func(t *testing.T) {
			srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Flavor: flavor, Respond: respond})
			c := newClient(t, srv)
			gen, err := c.Generate(context.Background(), genReq(3, seed(10)))
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"stop", "length", "stop"}; !reflect.DeepEqual(gen.Finish, want) {
				t.Errorf("finish = %q, want %q", gen.Finish, want)
			}
			if !gen.Cut(1) || gen.Cut(0) || gen.Cut(5) {
				t.Errorf("Cut: %v %v %v, want false true false", gen.Cut(0), gen.Cut(1), gen.Cut(5))
			}
		})
	}
}

// TestChoicesToolCalls: Choices sends the tools and the structured
// conversation as they are and returns the choices as the server produced
// them, tool calls included; a server that ignores n gets single requests.
func TestChoicesToolCalls(t *testing.T) {
	toolReply := `{"id":"c","object":"chat.completion","created":1,"model":"test-model","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Flavor: tpotest.Ollama, Fail: func(n int) (int, string) {
		if n == 1 {
			return 200, toolReply
		}
		return 0, ""
	}})
	c := newClient(t, srv)
	tools := json.RawMessage(`[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]`)
	req := openai.ChatRequest{
		Messages: []openai.Message{
			{Role: "user", Content: "Weather in Paris?"},
			{Role: "assistant", ToolCalls: []openai.ToolCall{{ID: "call_0", Type: "function", Function: openai.FunctionCall{Name: "get_weather", Arguments: `{"city":"Rome"}`}}}},
			{Role: "tool", ToolCallID: "call_0", Content: "18C"},
		},
		Tools:      tools,
		ToolChoice: json.RawMessage(`"auto"`),
	}
	choices, usage, err := c.Choices(context.Background(), req, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(choices) != 2 {
		t.Fatalf("%d choices, want 2", len(choices))
	}
	// Ollama answered the first request (n=2) with one choice: the second
	// came from a single request, which got the tool call.
	if choices[0].Message.Content == "" || len(choices[1].Message.ToolCalls) != 1 || choices[1].FinishReason != "tool_calls" ||
		choices[1].Message.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` {
		t.Errorf("choices = %+v", choices)
	}
	if usage.Requests != 2 || usage.CompletionTokens < 7 {
		t.Errorf("usage = %+v", usage)
	}
	for i, b := range srv.Bodies() {
		if !reflect.DeepEqual(b["tools"], []any{map[string]any{"type": "function", "function": map[string]any{"name": "get_weather", "parameters": map[string]any{"type": "object"}}}}) ||
			b["tool_choice"] != "auto" {
			t.Errorf("request %d: tools %v, tool_choice %v", i, b["tools"], b["tool_choice"])
		}
		msgs := b["messages"].([]any)
		if call := msgs[1].(map[string]any); call["content"] != nil || call["tool_calls"] == nil || msgs[2].(map[string]any)["tool_call_id"] != "call_0" {
			t.Errorf("request %d: messages %v", i, msgs)
		}
	}
}
