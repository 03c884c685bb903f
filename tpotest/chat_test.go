package tpotest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// chatPost sends body to the fake's chat endpoint.
func chatPost(t *testing.T, s *ChatServer, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

type chatTestResponse struct {
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
		Logprobs     *struct {
			Content []TokenLogprob `json:"content"`
		} `json:"logprobs"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

func chatTexts(t *testing.T, body string) []string {
	t.Helper()
	var r chatTestResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	var out []string
	for _, c := range r.Choices {
		out = append(out, c.Message.Content)
	}
	return out
}

func TestChatServerFlavorsN(t *testing.T) {
	const body = `{"model":"test-model","messages":[{"role":"user","content":"hi there"}],"n":3,"seed":7}`
	tests := []struct {
		flavor     Flavor
		wantStatus int
		want       []string
		wantInBody string
	}{
		{VLLM, 200, []string{"reply seed 7 to: hi there", "reply seed 8 to: hi there", "reply seed 9 to: hi there"}, ""},
		{OpenAI, 200, []string{"reply seed 7 to: hi there", "reply seed 7 to: hi there", "reply seed 7 to: hi there"}, ""},
		{Ollama, 200, []string{"reply seed 7 to: hi there"}, ""},
		{LlamaCPP, 500, nil, `{"error":{"code":500,"message":"Only one completion choice is allowed","type":"server_error"}}`},
	}
	for _, tt := range tests {
		t.Run(string(tt.flavor), func(t *testing.T) {
			s := NewChatServer(t, ChatOptions{Flavor: tt.flavor})
			status, got := chatPost(t, s, "", body)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", status, tt.wantStatus, got)
			}
			if tt.wantInBody != "" {
				if strings.TrimSpace(got) != tt.wantInBody {
					t.Errorf("body = %s, want %s", got, tt.wantInBody)
				}
				return
			}
			if texts := chatTexts(t, got); strings.Join(texts, "|") != strings.Join(tt.want, "|") {
				t.Errorf("texts = %q, want %q", texts, tt.want)
			}
		})
	}
}

func TestChatServerRecords(t *testing.T) {
	s := NewChatServer(t, ChatOptions{})
	body := `{"model":"test-model","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a b"}]}],"temperature":0.7,"max_tokens":3}`
	status, got := chatPost(t, s, "", body)
	if status != 200 {
		t.Fatalf("status %d: %s", status, got)
	}
	reqs := s.ChatRequests()
	if len(reqs) != 1 {
		t.Fatalf("recorded %d chat requests, want 1", len(reqs))
	}
	r := reqs[0]
	if string(r.Body) != body || r.JSON["temperature"] != 0.7 || r.N != 0 {
		t.Errorf("recorded %+v, want the raw body, decoded JSON and number 0", r)
	}
	if r.Chat.Prompt() != "a b" || *r.Chat.MaxTokens != 3 || r.Chat.Choices() != 1 {
		t.Errorf("decoded chat %+v, want prompt %q, max_tokens 3, 1 choice", r.Chat, "a b")
	}
	var resp chatTestResponse
	if err := json.Unmarshal([]byte(got), &resp); err != nil {
		t.Fatal(err)
	}
	// "reply 0 to: a b" is 5 words; max_tokens 3 cuts it.
	c := resp.Choices[0]
	if c.Message.Content != "reply 0 to: " || c.FinishReason != "length" {
		t.Errorf("choice = %q %q, want the reply cut to 3 words and finish_reason length", c.Message.Content, c.FinishReason)
	}
	if resp.Usage.PromptTokens != 4 || resp.Usage.CompletionTokens != 3 || resp.Usage.TotalTokens != 7 {
		t.Errorf("usage = %+v, want 4 + 3 = 7", resp.Usage)
	}
}

func TestChatServerErrors(t *testing.T) {
	tests := []struct {
		name       string
		opts       ChatOptions
		key, body  string
		wantStatus int
		wantIn     string
	}{
		{"vllm unknown model", ChatOptions{}, "", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, 404, "The model `nope` does not exist."},
		{"ollama unknown model", ChatOptions{Flavor: Ollama}, "", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, 404, `not found, try pulling it first`},
		{"openai unknown model", ChatOptions{Flavor: OpenAI}, "", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, 404, `"code":"model_not_found"`},
		{"llama.cpp any model", ChatOptions{Flavor: LlamaCPP}, "", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, 200, `"choices"`},
		{"missing key", ChatOptions{APIKey: "k"}, "", `{"model":"test-model","messages":[{"role":"user","content":"x"}]}`, 401, `Unauthorized`},
		{"wrong key", ChatOptions{Flavor: OpenAI, APIKey: "k"}, "j", `{"model":"test-model","messages":[{"role":"user","content":"x"}]}`, 401, `invalid_api_key`},
		{"right key", ChatOptions{APIKey: "k"}, "k", `{"model":"test-model","messages":[{"role":"user","content":"x"}]}`, 200, `"choices"`},
		{"bad json", ChatOptions{}, "", `{"model":`, 400, `invalid request body`},
		{"vllm stream_options without stream", ChatOptions{}, "", `{"model":"test-model","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}`, 400, "stream=True"},
		{"vllm context", ChatOptions{ContextLength: 5}, "", `{"model":"test-model","messages":[{"role":"user","content":"a b c"}],"max_tokens":3}`, 400, "maximum context length is 5 tokens"},
		{"llama.cpp context", ChatOptions{Flavor: LlamaCPP, ContextLength: 3}, "", `{"messages":[{"role":"user","content":"a b c"}]}`, 400, "exceed_context_size_error"},
		{"openai context", ChatOptions{Flavor: OpenAI, ContextLength: 3}, "", `{"model":"test-model","messages":[{"role":"user","content":"a b c d"}]}`, 400, "context_length_exceeded"},
		{"ollama no context error", ChatOptions{Flavor: Ollama, ContextLength: 3}, "", `{"model":"test-model","messages":[{"role":"user","content":"a b c d"}]}`, 200, `"choices"`},
		{"llama.cpp 400 for n", ChatOptions{Flavor: LlamaCPP, RejectNStatus: 400}, "", `{"messages":[{"role":"user","content":"x"}],"n":2}`, 400, "Only one completion choice is allowed"},
		{"fail hook", ChatOptions{Fail: func(n int) (int, string) { return 503, "busy" }}, "", `{"model":"test-model","messages":[{"role":"user","content":"x"}]}`, 503, "busy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewChatServer(t, tt.opts)
			status, got := chatPost(t, s, tt.key, tt.body)
			if status != tt.wantStatus || !strings.Contains(got, tt.wantIn) {
				t.Errorf("got %d %s, want %d with %q", status, got, tt.wantStatus, tt.wantIn)
			}
		})
	}
}

func TestChatServerDrop(t *testing.T) {
	s := NewChatServer(t, ChatOptions{Drop: func(n int) bool { return n == 0 }})
	_, err := http.Post(s.URL()+"/chat/completions", "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"x"}]}`))
	if err == nil {
		t.Fatal("first request succeeded, want a dropped connection")
	}
	if status, _ := chatPost(t, s, "", `{"messages":[{"role":"user","content":"x"}]}`); status != 200 {
		t.Errorf("second request status = %d, want 200", status)
	}
}

func TestChatServerModels(t *testing.T) {
	s := NewChatServer(t, ChatOptions{Models: []string{"a", "b"}, ContextLength: 99})
	resp, err := http.Get(s.URL() + "/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Object string `json:"object"`
		Data   []struct {
			ID          string `json:"id"`
			MaxModelLen int    `json:"max_model_len"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Object != "list" || len(got.Data) != 2 || got.Data[1].ID != "b" || got.Data[0].MaxModelLen != 99 {
		t.Errorf("models = %+v, want a list of a and b with max_model_len 99", got)
	}
}

func TestChatServerStream(t *testing.T) {
	s := NewChatServer(t, ChatOptions{})
	status, body := chatPost(t, s, "", `{"model":"test-model","messages":[{"role":"user","content":"x"}],"n":2,"stream":true,"stream_options":{"include_usage":true}}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	events := strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n")
	if last := events[len(events)-1]; last != "data: [DONE]" {
		t.Errorf("last event = %q, want data: [DONE]", last)
	}
	texts := make([]string, 2)
	var usage map[string]any
	for _, ev := range events[:len(events)-1] {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok {
			t.Fatalf("event %q is not a data line", ev)
		}
		var chunk struct {
			Choices []struct {
				Index int `json:"index"`
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage map[string]any `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.Fatalf("chunk %s: %v", data, err)
		}
		for _, c := range chunk.Choices {
			texts[c.Index] += c.Delta.Content
		}
		if chunk.Usage != nil {
			usage = chunk.Usage
			if len(chunk.Choices) != 0 {
				t.Errorf("usage chunk has %d choices, want none", len(chunk.Choices))
			}
		}
	}
	if texts[0] != "reply 0 to: x" || texts[1] != "reply 1 to: x" {
		t.Errorf("streamed texts = %q", texts)
	}
	if usage == nil || usage["completion_tokens"] != float64(8) {
		t.Errorf("usage = %v, want completion_tokens 8", usage)
	}
}

func TestChatServerStreamFail(t *testing.T) {
	s := NewChatServer(t, ChatOptions{StreamFail: func(int) string { return `{"error":{"message":"boom","code":500}}` }})
	_, body := chatPost(t, s, "", `{"messages":[{"role":"user","content":"x"}],"stream":true}`)
	if !strings.Contains(body, `data: {"error":{"message":"boom","code":500}}`) || strings.Contains(body, "[DONE]") {
		t.Errorf("body = %q, want an error event and no [DONE]", body)
	}
}

func TestChatServerLogprobs(t *testing.T) {
	s := NewChatServer(t, ChatOptions{Respond: func(ChatRequestRecord, int) string { return "7 out of 10" }})
	_, body := chatPost(t, s, "", `{"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":3}`)
	var r chatTestResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	lp := r.Choices[0].Logprobs
	if lp == nil || len(lp.Content) != 4 {
		t.Fatalf("logprobs = %+v, want 4 tokens", lp)
	}
	if tok := lp.Content[0]; tok.Token != "7 " || len(tok.TopLogprobs) != 3 || tok.TopLogprobs[0].Token != "7 " || tok.TopLogprobs[2].Logprob != -2 {
		t.Errorf("first token = %+v, want \"7 \" with 3 alternatives", tok)
	}
}

func TestChatWords(t *testing.T) {
	for _, s := range []string{"", "a", "a b", "  a  b\n c ", "x\n\ny"} {
		words := chatWords(s)
		if strings.Join(words, "") != s {
			t.Errorf("chatWords(%q) = %q does not join back", s, words)
		}
		if n := CountTokens(s); n > 0 && len(words) != n {
			t.Errorf("chatWords(%q) has %d tokens, CountTokens says %d", s, len(words), n)
		}
	}
}
