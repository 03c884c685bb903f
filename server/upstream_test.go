package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
	"github.com/tpoproject/tpo/tpotest"
)

// newHTTPEnv serves a Server whose upstream is a fake chat server reached
// through the openai client.
func newHTTPEnv(t *testing.T, chat *tpotest.ChatServer) *httptest.Server {
	t.Helper()
	return newHTTPEnvScoring(t, chat, testScorers())
}

func newOpenAIClient(t *testing.T, name string, chat *tpotest.ChatServer) *openai.Client {
	t.Helper()
	o := openai.Options{Model: chat.Model()}
	o.Name, o.URLs, o.MaxRetries, o.Timeout = name, []string{chat.URL()}, -1, 10*time.Second
	c, err := openai.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newHTTPEnvScoring(t *testing.T, chat *tpotest.ChatServer, scorers map[string]tpo.Scorer) *httptest.Server {
	t.Helper()
	srv, err := New(Options{
		Policy:  OpenAI(newOpenAIClient(t, "policy", chat)),
		Scorers: scorers, DefaultReward: "rm", Config: tpo.DefaultConfig(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts
}

func TestOpenAIUpstreamPassThrough(t *testing.T) {
	chat := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	ts := newHTTPEnv(t, chat)
	body := `{"model":"` + chat.Model() + `","messages":[{"role":"user","content":"hello there"}],"tpo":{"mode":"off"},"seed":3,"top_k":5}`

	resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var c completion
	decodeJSON(t, resp, 200, &c)
	if len(c.Choices) != 1 || c.Choices[0].Message.Content != "reply seed 3 to: hello there" || c.TPO != nil {
		t.Errorf("answer = %+v", c)
	}
	sent := chat.Bodies()[0]
	if _, ok := sent["tpo"]; ok || sent["top_k"] != float64(5) {
		t.Errorf("the upstream got %v: want every field but tpo", sent)
	}

	// Streamed: the upstream's events arrive unchanged.
	resp, err = http.Post(ts.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(strings.Replace(body, `"seed":3`, `"seed":3,"stream":true`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := readSSE(t, resp.Body)
	var text string
	for _, ev := range events[:len(events)-1] {
		var ch streamChunk
		if err := json.Unmarshal([]byte(ev.Data), &ch); err != nil {
			t.Fatalf("event %q: %v", ev.Data, err)
		}
		if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != nil {
			text += *ch.Choices[0].Delta.Content
		}
	}
	if text != "reply seed 3 to: hello there" || events[len(events)-1].Data != "[DONE]" {
		t.Errorf("streamed text %q, last event %+v", text, events[len(events)-1])
	}

	// An unknown model is the upstream's 404, relayed without the
	// upstream's address.
	resp, err = http.Post(ts.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(strings.Replace(body, chat.Model(), "nope", 1)))
	if err != nil {
		t.Fatal(err)
	}
	var b errorBody
	decodeJSON(t, resp, 404, &b)
	if strings.Contains(b.Error.Message, chat.URL()) || !strings.Contains(b.Error.Message, "nope") {
		t.Errorf("error %q: want the upstream's message about the model, not its address", b.Error.Message)
	}

	// The model list is the upstream's.
	resp, err = http.Get(ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(data), `"id":"`+chat.Model()+`"`) || !strings.Contains(string(data), `"object":"list"`) {
		t.Errorf("models = %s", data)
	}
}

func TestOpenAIUpstreamOptimizes(t *testing.T) {
	var mu sync.Mutex
	var want openai.Usage
	chat := tpotest.NewChatServer(t, tpotest.ChatOptions{
		Models: []string{"small", "big"},
		Respond: func(req tpotest.ChatRequestRecord, choice int) string {
			text := tpotest.DefaultChatReply(req, choice)
			if strings.Contains(req.Prompt(), "<improved_response>") {
				text = "<improved_response>better " + text + "</improved_response>"
			}
			mu.Lock()
			defer mu.Unlock()
			if choice == 0 {
				want.PromptTokens += tpotest.PromptTokens(req.Messages)
			}
			want.CompletionTokens += tpotest.CountTokens(text)
			return text
		},
	})
	ts := newHTTPEnv(t, chat)
	resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"big","messages":[{"role":"user","content":"hello there"}],"seed":1,"tpo":{"width":2,"depth":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	var c completion
	decodeJSON(t, resp, 200, &c)
	reqs := chat.ChatRequests()
	if len(reqs) != 4 || c.TPO.Requests != 4 {
		t.Fatalf("%d upstream requests, summary says %d; want 4", len(reqs), c.TPO.Requests)
	}
	for _, r := range reqs {
		if r.Chat.Model != "big" {
			t.Errorf("an upstream request named model %q, want big (the request's)", r.Chat.Model)
		}
	}
	mu.Lock()
	want.TotalTokens = want.PromptTokens + want.CompletionTokens
	mu.Unlock()
	if *c.Usage != want {
		t.Errorf("usage = %+v, the upstream reported %+v in all", c.Usage, want)
	}
}

// TestOpenAIUpstreamClientErrors: through the real openai client, an
// optimized request for a model the policy server does not serve is a
// 404, one whose conversation overflows the model's context a 400, both
// in the OpenAI shape and without the upstream's address. Passed through,
// the overflow is the same 400, not the model server's own shape (vLLM's
// code "400", no param).
func TestOpenAIUpstreamClientErrors(t *testing.T) {
	chat := tpotest.NewChatServer(t, tpotest.ChatOptions{ContextLength: 3000})
	ts := newHTTPEnv(t, chat)
	long := `"messages":[{"role":"user","content":"` + strings.Repeat("word ", 4000) + `"}]`
	tests := []struct {
		body        string
		status      int
		code, param string
	}{
		{`{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, "model_not_found", "model"},
		{`{"model":"` + chat.Model() + `","max_tokens":100,` + long + `}`, 400, "context_length_exceeded", "messages"},
		{`{"model":"` + chat.Model() + `","max_tokens":100,"tpo":{"mode":"off"},` + long + `}`, 400, "context_length_exceeded", "messages"},
		{`{"model":"` + chat.Model() + `","max_tokens":100,"stream":true,"tpo":{"mode":"off"},` + long + `}`, 400, "context_length_exceeded", "messages"},
	}
	for _, tt := range tests {
		resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		var b errorBody
		decodeJSON(t, resp, tt.status, &b)
		if b.Error.Code == nil || *b.Error.Code != tt.code || b.Error.Param == nil || *b.Error.Param != tt.param || b.Error.Type != typeInvalidRequest {
			t.Errorf("%d: error %+v, want %s on %s", tt.status, b.Error, tt.code, tt.param)
		}
		if strings.Contains(b.Error.Message, chat.URL()) || strings.Contains(b.Error.Message, "127.0.0.1") {
			t.Errorf("%d: message %q shows the upstream", tt.status, b.Error.Message)
		}
	}
}

// scorerFunc is a tpo.Scorer made of a function.
type scorerFunc func(ctx context.Context, messages []tpo.Message, responses []string) (tpo.Scores, error)

func (f scorerFunc) Score(ctx context.Context, messages []tpo.Message, responses []string) (tpo.Scores, error) {
	return f(ctx, messages, responses)
}

// TestUpstreamErrorsOfTheAdapters: the error answers of the policy
// server (through OpenAI) and of a reward server (through
// WithUpstreamErrors) reach the server as *UpstreamError: a reward
// server's 503 is a 502 naming its status, a refused pass-through request
// keeps its 400 and param.
func TestUpstreamErrorsOfTheAdapters(t *testing.T) {
	chat := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	rewardSrv := tpotest.NewChatServer(t, tpotest.ChatOptions{Fail: func(int) (int, string) {
		return 503, `{"error":{"message":"reward model loading","type":"ServiceUnavailable"}}`
	}})
	rm := newOpenAIClient(t, "reward", rewardSrv)
	scorer := scorerFunc(func(ctx context.Context, _ []tpo.Message, _ []string) (tpo.Scores, error) {
		_, _, err := rm.Chat(ctx, openai.ChatRequest{Messages: []openai.Message{{Role: "user", Content: "x"}}})
		return tpo.Scores{}, err
	})
	ts := newHTTPEnvScoring(t, chat, map[string]tpo.Scorer{"rm": WithUpstreamErrors(scorer)})
	resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"`+chat.Model()+`","messages":[{"role":"user","content":"hi"}],"tpo":{"mode":"bon","width":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	var b errorBody
	decodeJSON(t, resp, http.StatusBadGateway, &b)
	if b.Error.Code == nil || *b.Error.Code != "upstream_status_503" || !strings.Contains(b.Error.Message, "reward model loading") ||
		strings.Contains(b.Error.Message, rewardSrv.URL()) {
		t.Errorf("reward failure: %+v", b.Error)
	}

	refusing := tpotest.NewChatServer(t, tpotest.ChatOptions{Fail: func(int) (int, string) {
		return 400, `{"error":{"message":"tools are not supported by this model","type":"BadRequestError","param":"tools"}}`
	}})
	ts = newHTTPEnv(t, refusing)
	resp, err = http.Post(ts.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"`+refusing.Model()+`","messages":[{"role":"user","content":"hi"}],"tpo":{"mode":"off"}}`))
	if err != nil {
		t.Fatal(err)
	}
	decodeJSON(t, resp, http.StatusBadRequest, &b)
	if b.Error.Param == nil || *b.Error.Param != "tools" || b.Error.Message != "tools are not supported by this model" {
		t.Errorf("pass-through refusal: %+v", b.Error)
	}
}
