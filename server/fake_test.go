package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/files"
	"github.com/tpoproject/tpo/openai"
	"github.com/tpoproject/tpo/tpotest"
)

// fakeUpstream is an in-memory upstream: tpotest.Policy generates, and
// pass-through requests get canned answers.
type fakeUpstream struct {
	policy *tpotest.Policy
	// toolCall, if set, says whether choice i of a request with tools
	// is a tool call, and which.
	toolCall func(req openai.ChatRequest, i int) *openai.ToolCall
	// block, if set, is called before every generation; it may wait (for
	// ctx) to hold an optimization at a given call. Set it (and toolCall)
	// under mu once the server may run.
	block func(ctx context.Context, call int, req tpo.GenerateRequest) error

	mu         sync.Mutex
	calls      int
	reported   tpo.Usage // the sum of the usage the fake reported
	genModels  []string  // the model of each generation
	passBodies [][]byte
	chatReply  []byte
	chatErr    error
	stream     func(w io.Writer) // writes the pass-through SSE stream
	streamErr  error
	choiceReqs []openai.ChatRequest
}

type fakeGen struct {
	f     *fakeUpstream
	model string
}

func (g fakeGen) Generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	g.f.mu.Lock()
	call := g.f.calls
	g.f.calls++
	g.f.genModels = append(g.f.genModels, g.model)
	block := g.f.block
	g.f.mu.Unlock()
	if block != nil {
		if err := block(ctx, call, req); err != nil {
			return tpo.Generation{Usage: tpo.Usage{Requests: 1}}, err
		}
	}
	gen, err := g.f.policy.Generate(ctx, req)
	g.f.mu.Lock()
	g.f.reported.Add(gen.Usage)
	g.f.mu.Unlock()
	return gen, err
}

func (f *fakeUpstream) Generator(model string) tpo.Generator { return fakeGen{f, model} }
func (f *fakeUpstream) DefaultModel() string                 { return "default-model" }

func (f *fakeUpstream) Models(ctx context.Context) (json.RawMessage, error) {
	return json.RawMessage(`{"object":"list","data":[{"id":"m1","object":"model","created":0,"owned_by":"fake"}]}`), nil
}

func (f *fakeUpstream) Chat(ctx context.Context, body []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.passBodies = append(f.passBodies, body)
	return f.chatReply, f.chatErr
}

// passed returns the bodies of the pass-through requests.
func (f *fakeUpstream) passed() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.passBodies...)
}

// setChat sets the answer to pass-through requests.
func (f *fakeUpstream) setChat(reply string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.chatReply, f.chatErr = []byte(reply), err
}

func (f *fakeUpstream) ChatStream(ctx context.Context, body []byte) (io.ReadCloser, error) {
	f.mu.Lock()
	f.passBodies = append(f.passBodies, body)
	f.mu.Unlock()
	if f.streamErr != nil {
		return nil, f.streamErr
	}
	pr, pw := io.Pipe()
	go func() {
		f.stream(pw)
		pw.Close()
	}()
	return pr, nil
}

// Choices answers with the policy's texts for the conversation written
// out, or with the tool calls toolCall says.
func (f *fakeUpstream) Choices(ctx context.Context, req openai.ChatRequest, n int) ([]openai.Choice, tpo.Usage, error) {
	f.mu.Lock()
	f.choiceReqs = append(f.choiceReqs, req)
	toolCall := f.toolCall
	f.mu.Unlock()
	gr := tpo.GenerateRequest{Messages: renderConversation(req.Messages), N: n, Stage: tpo.StageSample,
		Sampling: tpo.Sampling{Temperature: *req.Temperature, TopP: *req.TopP, MaxTokens: *req.MaxTokens}}
	gen, err := fakeGen{f, req.Model}.Generate(ctx, gr)
	var out []openai.Choice
	for i, text := range gen.Texts {
		c := openai.Choice{Index: i, Message: openai.ResponseMessage{Role: "assistant", Content: text}, FinishReason: "stop"}
		if toolCall != nil {
			if call := toolCall(req, i); call != nil {
				c.Message = openai.ResponseMessage{Role: "assistant", ToolCalls: []openai.ToolCall{*call}}
				c.FinishReason = "tool_calls"
			}
		}
		out = append(out, c)
	}
	return out, gen.Usage, err
}

// toolRequests returns the requests sent with tools.
func (f *fakeUpstream) toolRequests() []openai.ChatRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]openai.ChatRequest(nil), f.choiceReqs...)
}

func (f *fakeUpstream) generations() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// testEnv is a server under test with its fakes.
type testEnv struct {
	srv    *Server
	up     *fakeUpstream
	reward *tpotest.Reward
	store  *tpotest.MemStore
	ts     *httptest.Server
	opts   Options // as given to New
}

func newTestEnv(t *testing.T, edit func(*Options)) *testEnv {
	t.Helper()
	e := &testEnv{up: &fakeUpstream{policy: &tpotest.Policy{}}, reward: &tpotest.Reward{}, store: tpotest.NewMemStore()}
	cfg := tpo.DefaultConfig()
	cfg.Width, cfg.Depth = 3, 2
	opts := Options{
		Policy:        e.up,
		Scorers:       map[string]tpo.Scorer{"len": e.reward, "words": &tpotest.Reward{Func: func(_ []tpo.Message, r string) float64 { return float64(len(strings.Fields(r))) }}},
		DefaultReward: "len", Config: cfg, Store: e.store, Jobs: e.store, KeepAlive: time.Hour,
	}
	if edit != nil {
		edit(&opts)
	}
	if opts.Files == nil {
		dir, err := files.Open(t.TempDir(), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		opts.Files = dir
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	e.opts = opts
	e.ts = httptest.NewServer(srv)
	t.Cleanup(e.ts.Close)
	t.Cleanup(func() {
		// No background work outlives the test.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return e
}

func (e *testEnv) post(t *testing.T, body string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.ts.URL+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// decodeJSON reads a response body into v, failing on a wrong status.
func decodeJSON(t *testing.T, resp *http.Response, status int, v any) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
}

// sseEvent is one data line of an SSE stream (comments are kept too).
type sseEvent struct {
	Comment string
	Data    string
}

// readSSE reads a whole SSE stream.
func readSSE(t *testing.T, r io.Reader) []sseEvent {
	t.Helper()
	var out []sseEvent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
		case strings.HasPrefix(line, ":"):
			out = append(out, sseEvent{Comment: strings.TrimSpace(line[1:])})
		case strings.HasPrefix(line, "data: "):
			out = append(out, sseEvent{Data: line[len("data: "):]})
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("reading the stream: %v", err)
	}
	return out
}

// streamChunk is what tests read of a chunk.
type streamChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role    string  `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *openai.Usage    `json:"usage"`
	TPO   *json.RawMessage `json:"tpo"`
	Error *errorObject     `json:"error"`
}

// usageOf is the usage object of what the fake upstream reported.
func usageOf(u tpo.Usage) openai.Usage { return meterSnapshot{Policy: u}.usage() }
