package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// chatMessage is a chat turn; its content is a string or a list of parts of
// which the text parts are kept.
type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func (m *chatMessage) UnmarshalJSON(b []byte) error {
	var raw struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	m.Role = raw.Role
	m.Content = ""
	if len(raw.Content) == 0 || string(raw.Content) == "null" {
		return nil
	}
	if raw.Content[0] == '"' {
		return json.Unmarshal(raw.Content, &m.Content)
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw.Content, &parts); err != nil {
		return errors.New("content must be a string or a list of parts")
	}
	var b2 strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b2.WriteString(p.Text)
		}
	}
	m.Content = b2.String()
	return nil
}

type chatRequest struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	N                   *int            `json:"n"`
	Seed                *int64          `json:"seed"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Stream              bool            `json:"stream"`
	StreamOptions       json.RawMessage `json:"stream_options"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	Message      chatMessage `json:"message"`
	FinishReason string      `json:"finish_reason"`
	Logprobs     any         `json:"logprobs"`
}

// usage is the OpenAI usage object.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type chatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   usage        `json:"usage"`
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	s.count(EndpointChat)
	var req chatRequest
	if !s.decode(w, r, &req) {
		return
	}
	if !s.checkModel(w, req.Model, s.opts.Model) {
		return
	}
	if req.Stream {
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, "stream is not supported by the simulated server", "stream"))
		return
	}
	if len(req.StreamOptions) > 0 && string(req.StreamOptions) != "null" {
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, "stream_options can only be set when stream is true", "stream_options"))
		return
	}
	if len(req.Messages) == 0 {
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, "messages must not be empty", "messages"))
		return
	}
	n := 1
	if req.N != nil {
		n = *req.N
	}
	if n < 1 || n > 1024 {
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, fmt.Sprintf("n must be between 1 and 1024, got %d", n), "n"))
		return
	}
	maxTokens := req.MaxTokens
	if req.MaxCompletionTokens != nil {
		maxTokens = req.MaxCompletionTokens
	}
	if maxTokens != nil && *maxTokens < 1 {
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, fmt.Sprintf("max_tokens must be at least 1, got %d", *maxTokens), "max_tokens"))
		return
	}
	temperature := 1.0
	if req.Temperature != nil {
		temperature = *req.Temperature
	}
	if temperature < 0 || temperature > 2 {
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, fmt.Sprintf("temperature must be between 0 and 2, got %g", temperature), "temperature"))
		return
	}

	prompt := render(req.Messages, true)
	promptTokens := tokenCount(prompt)
	limit := s.opts.MaxModelLen - promptTokens
	if maxTokens != nil && *maxTokens > limit || limit < 1 {
		want := 1
		if maxTokens != nil {
			want = *maxTokens
		}
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, fmt.Sprintf(
			"This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
			s.opts.MaxModelLen, promptTokens+want, promptTokens, want), ""))
		return
	}
	if maxTokens != nil {
		limit = *maxTokens
	}

	k, style := s.drawFault(s.opts.Faults, EndpointChat)
	ft := fault{kind: k, style: style, f: s.opts.Faults}
	if s.before(r.Context(), w, ft) {
		return
	}

	var conv strings.Builder
	for _, m := range req.Messages {
		conv.WriteString(m.Role + "\n" + m.Content + "\n")
	}
	seeds := s.childSeeds(conv.String(), req.Seed, n, temperature)
	choices := make([]chatChoice, n)
	lengths := make([]int, n)
	completion := 0
	for i := range n {
		c := s.gen.generate(genRequest{conv: conv.String(), childSeed: seeds[i], temperature: temperature, maxTokens: limit})
		choices[i] = chatChoice{Index: i, Message: chatMessage{Role: "assistant", Content: c.Text}, FinishReason: c.Finish}
		lengths[i] = c.Tokens
		completion += c.Tokens
	}

	j, err := s.sched.submit(promptTokens, lengths)
	if err != nil {
		s.writeError(w, http.StatusServiceUnavailable, "the simulated server is shutting down")
		return
	}
	select {
	case <-j.done:
	case <-r.Context().Done():
		s.sched.cancel(j)
		return
	}
	if j.err != nil {
		s.writeError(w, http.StatusServiceUnavailable, "the simulated server is shutting down")
		return
	}
	s.mu.Lock()
	s.counts.completions += int64(completion)
	s.mu.Unlock()

	w.Header().Set("X-Sim-Queue-Seconds", strconv.FormatFloat(j.QueueSeconds(), 'f', 6, 64))
	w.Header().Set("X-Sim-Seconds", strconv.FormatFloat(j.Seconds(), 'f', 6, 64))
	s.respond(w, http.StatusOK, chatResponse{
		ID:      "chatcmpl-" + hex8(hashOf(s.gen.seed, conv.String(), strconv.FormatUint(seeds[0], 16))),
		Object:  "chat.completion",
		Created: time.Now().Unix(),
		Model:   s.opts.Model,
		Choices: choices,
		Usage:   usage{PromptTokens: promptTokens, CompletionTokens: completion, TotalTokens: promptTokens + completion},
	}, ft)
}

// childSeeds returns the seed of each of the n choices: seed+i with a seed
// (as vLLM does), the same for all at temperature 0, and otherwise a stream
// numbered by how many unseeded requests the conversation has had.
func (s *Server) childSeeds(conv string, seed *int64, n int, temperature float64) []uint64 {
	seeds := make([]uint64, n)
	if temperature == 0 {
		return seeds
	}
	var base uint64
	if seed != nil {
		base = uint64(*seed)
	} else {
		key := hashOf("unseeded", conv)
		s.mu.Lock()
		k := s.unseeded[key]
		s.unseeded[key] = k + 1
		s.mu.Unlock()
		base = mix(key+k) | 1<<63
	}
	for i := range seeds {
		seeds[i] = base + uint64(i)
	}
	return seeds
}
