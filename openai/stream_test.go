package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/tpoproject/tpo/openai"
	"github.com/tpoproject/tpo/tpotest"
)

// collect reads a stream to its end: the text of each choice, the usage
// chunk's completion tokens, and the error that ended it.
func collect(s *openai.Stream) (texts []string, usage *openai.Usage, err error) {
	for {
		chunk, err := s.Next()
		if err != nil {
			return texts, usage, err
		}
		for _, c := range chunk.Choices {
			for len(texts) <= c.Index {
				texts = append(texts, "")
			}
			texts[c.Index] += c.Delta.Content
		}
		if chunk.Usage != nil {
			usage = chunk.Usage
		}
	}
}

func TestChatStream(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	c := newClient(t, srv)
	n := 2
	s, err := c.ChatStream(context.Background(), openai.ChatRequest{
		Messages:      []openai.Message{{Role: "user", Content: "Name a color."}},
		N:             &n,
		StreamOptions: &openai.StreamOptions{IncludeUsage: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	texts, usage, err := collect(s)
	if err != io.EOF {
		t.Fatalf("stream ended with %v, want io.EOF", err)
	}
	if want := []string{"reply 0 to: Name a color.", "reply 1 to: Name a color."}; !reflect.DeepEqual(texts, want) {
		t.Errorf("texts = %q, want %q", texts, want)
	}
	if usage == nil || usage.CompletionTokens != 12 || usage.PromptTokens != 3 {
		t.Errorf("usage = %+v, want 3 prompt and 12 completion tokens", usage)
	}
	want := map[string]any{
		"model":          tpotest.DefaultChatModel,
		"messages":       []any{map[string]any{"role": "user", "content": "Name a color."}},
		"n":              float64(2),
		"stream":         true,
		"stream_options": map[string]any{"include_usage": true},
	}
	sameBodies(t, srv.Bodies(), []map[string]any{want})
	if _, err := s.Next(); err != io.EOF {
		t.Errorf("Next after the end = %v, want io.EOF again", err)
	}
}

func TestChatStreamMidStreamError(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{StreamFail: func(int) string {
		return `{"error":{"message":"CUDA error: an illegal memory access","type":"InternalServerError","code":500}}`
	}})
	c := newClient(t, srv)
	s, err := c.ChatStream(context.Background(), openai.ChatRequest{Messages: []openai.Message{{Role: "user", Content: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _, err = collect(s)
	var se *openai.StreamError
	if !errors.As(err, &se) || se.Message != "CUDA error: an illegal memory access" || se.Type != "InternalServerError" {
		t.Fatalf("error = %v, want a StreamError with the server's message", err)
	}
	if !strings.Contains(err.Error(), srv.URL()) {
		t.Errorf("error %q does not name the server", err)
	}
}

func TestChatStreamStatusError(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Flavor: tpotest.OpenAI})
	c := newClient(t, srv, func(o *openai.Options) { o.Model = "nope" })
	_, err := c.ChatStream(context.Background(), openai.ChatRequest{Messages: []openai.Message{{Role: "user", Content: "x"}}})
	if err == nil || !strings.Contains(err.Error(), `model "nope"`) {
		t.Errorf("error = %v, want a model-not-found error", err)
	}
}

func TestChatStreamRaw(t *testing.T) {
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	c := newClient(t, srv)
	body, _, err := c.ChatStreamRaw(context.Background(), []byte(`{"model":"test-model","messages":[{"role":"user","content":"x"}],"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	raw, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), "data: {") || !strings.HasSuffix(string(raw), "data: [DONE]\n\n") {
		t.Errorf("raw stream = %q", raw)
	}
}

func decodeAll(input string) (texts []string, err error) {
	s := openai.NewStream(io.NopCloser(strings.NewReader(input)), "policy server http://test/v1")
	texts, _, err = collect(s)
	return texts, err
}

func TestStreamDecoder(t *testing.T) {
	const c1 = `{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}`
	const c2 = `{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}`
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string // "" means io.EOF
	}{
		{"plain", "data: " + c1 + "\n\ndata: " + c2 + "\n\ndata: [DONE]\n\n", []string{"Hello"}, ""},
		{"no space", "data:" + c1 + "\n\ndata:" + c2 + "\n\ndata:[DONE]\n\n", []string{"Hello"}, ""},
		{"crlf", "data: " + c1 + "\r\n\r\ndata: " + c2 + "\r\n\r\ndata: [DONE]\r\n\r\n", []string{"Hello"}, ""},
		{"cr", "data: " + c1 + "\r\rdata: " + c2 + "\r\rdata: [DONE]\r\r", []string{"Hello"}, ""},
		{"comments and other fields", ": ping\n\nid: 1\nevent: message\nretry: 10\ndata: " + c1 + "\n\n: keep-alive\n\ndata: " + c2 + "\n\ndata: [DONE]\n\n", []string{"Hello"}, ""},
		{"multi-line data", "data: {\"choices\":[{\"index\":0,\ndata: \"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", []string{"Hi"}, ""},
		{"null content and finish", `data: {"choices":[{"index":0,"delta":{"content":null},"finish_reason":null}]}` + "\n\ndata: " + c2 + "\n\ndata: [DONE]\n\n", []string{"lo"}, ""},
		{"done without blank line", "data: " + c2 + "\n\ndata: [DONE]", []string{"lo"}, ""},
		{"ends after finish without done", "data: " + c1 + "\n\ndata: " + c2 + "\n\n", []string{"Hello"}, ""},
		{"ends early", "data: " + c1 + "\n\n", []string{"Hel"}, "unexpected EOF"},
		{"empty", "", nil, "unexpected EOF"},
		{"mid-stream error", "data: " + c1 + "\n\ndata: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"code\":500}}\n\n", []string{"Hel"}, "error in stream: boom (server_error)"},
		{"flat error", "data: {\"object\":\"error\",\"message\":\"overloaded\",\"type\":\"ServiceUnavailableError\",\"code\":503}\n\n", nil, "error in stream: overloaded"},
		{"error event", "event: error\ndata: {\"error\":\"Input validation error\",\"error_type\":\"validation\"}\n\n", nil, "Input validation error"},
		{"malformed chunk", "data: {\"choices\":[\n\n", nil, "malformed stream chunk"},
		{"usage chunk", "data: " + c2 + "\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\ndata: [DONE]\n\n", []string{"lo"}, ""},
		{"interleaved choices", `data: {"choices":[{"index":1,"delta":{"content":"b"}}]}` + "\n\n" + `data: {"choices":[{"index":0,"delta":{"content":"a"}}]}` + "\n\n" + `data: {"choices":[{"index":1,"delta":{"content":"B"},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n", []string{"a", "bB"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			texts, err := decodeAll(tt.in)
			if tt.wantErr == "" {
				if err != io.EOF {
					t.Fatalf("error = %v, want io.EOF", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if !reflect.DeepEqual(texts, tt.want) {
				t.Errorf("texts = %q, want %q", texts, tt.want)
			}
		})
	}
}

func TestStreamUnexpectedEOFIs(t *testing.T) {
	_, err := decodeAll("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("error = %v, want io.ErrUnexpectedEOF", err)
	}
}

func FuzzStream(f *testing.F) {
	for _, s := range []string{
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
		"data:[DONE]\r\n\r\n",
		": c\n\nevent: error\ndata: {\"error\":\"x\"}\n\n",
		"data: {\"error\":{\"message\":\"m\",\"code\":1}}\r\r",
		"data: a\ndata: b\n\n",
		"data",
		"\r\n\r\r\n",
		"data: {\"choices\":[{\"index\":-1,\"delta\":{\"content\":[{\"type\":\"text\",\"text\":\"p\"}]}}]}\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := openai.NewStream(io.NopCloser(strings.NewReader(string(in))), "fuzz")
		for i := 0; ; i++ {
			if i > len(in)+1 {
				t.Fatalf("stream of %d bytes gave more than %d chunks", len(in), i)
			}
			_, err := s.Next()
			if err != nil {
				if _, again := s.Next(); again != err {
					t.Errorf("Next after error %v returned %v", err, again)
				}
				return
			}
		}
	})
}

func FuzzChatResponse(f *testing.F) {
	for _, s := range []string{
		`{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`,
		`{"choices":[{"index":1,"message":{"content":null}},{"index":1,"message":{"content":"x"}},{"index":7,"message":{"content":"y"}}]}`,
		`{"choices":[{"index":0,"message":{"content":[{"type":"text","text":"a"},{"type":"image_url"}]}}]}`,
		`{"choices":[{"index":0,"message":{"content":"a","reasoning":"r"},"logprobs":{"content":[{"token":"a","logprob":-0.1,"top_logprobs":[{"token":"a","logprob":-0.1}]}]}}]}`,
		`{"choices":[]}`,
		`{"choices":null}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var resp openai.ChatResponse
		if err := json.Unmarshal(in, &resp); err != nil {
			return
		}
		texts := resp.Texts()
		if len(texts) != len(resp.Choices) {
			t.Fatalf("Texts() has %d entries for %d choices", len(texts), len(resp.Choices))
		}
		// Every choice's content appears in Texts exactly as often.
		count := map[string]int{}
		for _, c := range resp.Choices {
			count[c.Message.Content]++
		}
		for _, s := range texts {
			count[s]--
		}
		for s, n := range count {
			if n != 0 {
				t.Fatalf("Texts() = %q lost or duplicated %q", texts, s)
			}
		}
		// What we decode, we can encode and decode again to the same value.
		out, err := json.Marshal(resp)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		var again openai.ChatResponse
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("decoding our own encoding %s: %v", out, err)
		}
		if !reflect.DeepEqual(again.Texts(), texts) {
			t.Fatalf("round trip changed texts: %q vs %q", again.Texts(), texts)
		}
	})
}
