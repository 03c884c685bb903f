package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tpoproject/tpo/openai"
)

// streamed is what a client read from a streamed chat completion.
type streamed struct {
	chunks []openai.ChatChunk
	err    error // the error that ended the stream; nil after [DONE]
	resp   *http.Response
}

// texts joins each choice's content deltas.
func (s streamed) texts(n int) []string {
	out := make([]string, n)
	for _, c := range s.chunks {
		for _, ch := range c.Choices {
			out[ch.Index] += ch.Delta.Content
		}
	}
	return out
}

// stream posts a streamed chat request and reads it to the end.
func stream(t *testing.T, url string, body map[string]any) streamed {
	t.Helper()
	body["stream"] = true
	b, _ := json.Marshal(body)
	resp, err := http.Post(url+EndpointChat, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("status %d, content type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), data)
	}
	st := openai.NewStream(resp.Body, "sim")
	defer st.Close()
	var out streamed
	out.resp = resp
	for {
		c, err := st.Next()
		if errors.Is(err, io.EOF) {
			// The trailers arrive after [DONE], at the end of the body.
			_, _ = io.Copy(io.Discard, resp.Body)
			return out
		}
		if err != nil {
			out.err = err
			return out
		}
		out.chunks = append(out.chunks, c)
	}
}

func TestChatStream(t *testing.T) {
	// Slow enough for the tokens to come over several chunks: a decode
	// step takes about 1.5ms.
	_, ts := newTest(t, Options{Seed: 2, TimeScale: 0.1, MeanTokens: 20})
	req := func() map[string]any {
		return map[string]any{"model": "sim-policy", "messages": msgs("user", "Explain TCP slow start."),
			"n": 3, "seed": 11, "temperature": 0.7, "max_tokens": 30}
	}
	whole := chat(t, ts, chatReq{Messages: msgs("user", "Explain TCP slow start."), N: 3, Seed: ptr[int64](11), Temperature: ptr(0.7), MaxTokens: 30})

	for _, withUsage := range []bool{false, true} {
		body := req()
		if withUsage {
			body["stream_options"] = map[string]any{"include_usage": true}
		}
		got := stream(t, ts.URL, body)
		if got.err != nil {
			t.Fatalf("stream: %v", got.err)
		}
		// The same texts as without streaming.
		if streamedTexts := got.texts(3); !equal(streamedTexts, texts(whole)) {
			t.Errorf("streamed texts %q, want %q", streamedTexts, texts(whole))
		}
		roles, finishes, contents := map[int]int{}, map[int]string{}, 0
		var order []int
		for k, c := range got.chunks {
			if c.Object != "chat.completion.chunk" || c.ID != got.chunks[0].ID || c.Model != "sim-policy" {
				t.Fatalf("chunk %d: object %q id %q model %q", k, c.Object, c.ID, c.Model)
			}
			last := k == len(got.chunks)-1
			if withUsage && last {
				if len(c.Choices) != 0 || c.Usage == nil || *c.Usage != (openai.Usage{PromptTokens: whole.Usage.PromptTokens,
					CompletionTokens: whole.Usage.CompletionTokens, TotalTokens: whole.Usage.TotalTokens}) {
					t.Errorf("last chunk %+v, want no choices and the usage %+v", c, whole.Usage)
				}
				continue
			}
			if c.Usage != nil || len(c.Choices) != 1 {
				t.Fatalf("chunk %d: %+v, want one choice and no usage", k, c)
			}
			ch := c.Choices[0]
			switch {
			case ch.Delta.Role != "":
				if ch.Delta.Role != "assistant" || contents > 0 {
					t.Errorf("role chunk %+v after %d content chunks", ch, contents)
				}
				roles[ch.Index]++
			case ch.FinishReason != "":
				finishes[ch.Index] = ch.FinishReason
			default:
				if _, done := finishes[ch.Index]; done {
					t.Errorf("content for choice %d after its finish", ch.Index)
				}
				contents++
				order = append(order, ch.Index)
			}
		}
		for i, c := range whole.Choices {
			if roles[i] != 1 || finishes[i] != c.FinishReason {
				t.Errorf("choice %d: %d role chunks, finish %q; want 1 and %q", i, roles[i], finishes[i], c.FinishReason)
			}
		}
		if contents <= 3 || !interleaved(order) {
			t.Errorf("content chunks by choice %v: want the choices' tokens interleaved over several chunks", order)
		}
		if got.resp.Trailer.Get("X-Sim-Seconds") == "" {
			t.Errorf("no X-Sim-Seconds trailer: %v", got.resp.Trailer)
		}
	}
}

// interleaved reports whether a choice index ever follows a larger one.
func interleaved(order []int) bool {
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			return true
		}
	}
	return false
}

func TestChatStreamGrade(t *testing.T) {
	_, ts := newTest(t, Options{Seed: 1, RewardNoise: -1})
	got := stream(t, ts.URL, map[string]any{"messages": judgePrompt(t, "Explain TCP slow start.", "[q=2.000 id=aa] words"),
		"temperature": 0, "max_tokens": 8, "logprobs": true, "top_logprobs": 20})
	if got.err != nil {
		t.Fatal(got.err)
	}
	if text := got.texts(1)[0]; text != "7" { // MeanGrade(2) = 6.6
		t.Errorf("streamed grade %q, want 7", text)
	}
	var lp *openai.Logprobs
	for _, c := range got.chunks {
		for _, ch := range c.Choices {
			if ch.Delta.Content != "" {
				lp = ch.Logprobs
			}
		}
	}
	if lp == nil || len(lp.Content) != 1 || lp.Content[0].Token != "7" || len(lp.Content[0].TopLogprobs) != 20 {
		t.Errorf("logprobs of the grade's chunk: %+v", lp)
	}
}

func TestChatStreamFaults(t *testing.T) {
	for _, tt := range []struct {
		name   string
		faults Faults
		want   string // in the error that ends the stream
	}{
		{"drop", Faults{Drop: 1}, "unexpected EOF"},
		{"malformed", Faults{Malformed: 1}, "malformed stream chunk"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, ts := newTest(t, Options{Seed: 1, MeanTokens: 50, Faults: tt.faults})
			got := stream(t, ts.URL, map[string]any{"messages": msgs("user", "hi"), "n": 2, "seed": 1})
			if got.err == nil || !strings.Contains(got.err.Error(), tt.want) {
				t.Errorf("stream ended with %v, want an error containing %q", got.err, tt.want)
			}
		})
	}
	_, ts := newTest(t, Options{Seed: 1, Faults: Faults{Unavailable: 1}})
	resp, body := post(t, nil, ts.URL+EndpointChat, map[string]any{"messages": msgs("user", "hi"), "stream": true})
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "overloaded") {
		t.Errorf("503 fault on a stream: %d %s", resp.StatusCode, body)
	}
}

func TestChatStreamClientLeaves(t *testing.T) {
	s, ts := newTest(t, Options{Seed: 1, TimeScale: 1, MeanTokens: 5000}) // real time: minutes
	b, _ := json.Marshal(map[string]any{"messages": msgs("user", "take your time"), "stream": true, "n": 2})
	resp, err := http.Post(ts.URL+EndpointChat, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	st := openai.NewStream(resp.Body, "sim")
	if c, err := st.Next(); err != nil || len(c.Choices) != 1 || c.Choices[0].Delta.Role != "assistant" {
		t.Fatalf("first chunk %+v, %v; want the role", c, err)
	}
	waitFor(t, func() bool { return s.Stats().Active == 2 })
	st.Close()
	waitFor(t, func() bool { return s.Stats().Active == 0 })
}
