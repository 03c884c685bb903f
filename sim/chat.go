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
	Model               string         `json:"model"`
	Messages            []chatMessage  `json:"messages"`
	N                   *int           `json:"n"`
	Seed                *int64         `json:"seed"`
	MaxTokens           *int           `json:"max_tokens"`
	MaxCompletionTokens *int           `json:"max_completion_tokens"`
	Temperature         *float64       `json:"temperature"`
	TopP                *float64       `json:"top_p"`
	Logprobs            bool           `json:"logprobs"`
	TopLogprobs         *int           `json:"top_logprobs"`
	Stream              bool           `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options"`
	Tools               []tool         `json:"tools"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      answerMessage   `json:"message"`
	FinishReason string          `json:"finish_reason"`
	Logprobs     *choiceLogprobs `json:"logprobs"`
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

// chatParams are the checked settings of a chat request.
type chatParams struct {
	n           int
	maxTokens   *int // nil: the rest of the context window
	temperature float64
	topLogprobs int // -1 when logprobs were not asked for
}

// badRequest is the message and the parameter of a 400.
type badRequest struct{ msg, param string }

// checkChat checks a request's settings as vLLM does.
func checkChat(req *chatRequest) (chatParams, *badRequest) {
	p := chatParams{n: 1, maxTokens: req.MaxTokens, temperature: 1, topLogprobs: -1}
	if req.StreamOptions != nil && !req.Stream {
		return p, &badRequest{"stream_options can only be set when stream is true", "stream_options"}
	}
	if len(req.Messages) == 0 {
		return p, &badRequest{"messages must not be empty", "messages"}
	}
	if req.N != nil {
		p.n = *req.N
	}
	if p.n < 1 || p.n > 1024 {
		return p, &badRequest{fmt.Sprintf("n must be between 1 and 1024, got %d", p.n), "n"}
	}
	if req.MaxCompletionTokens != nil {
		p.maxTokens = req.MaxCompletionTokens
	}
	if p.maxTokens != nil && *p.maxTokens < 1 {
		return p, &badRequest{fmt.Sprintf("max_tokens must be at least 1, got %d", *p.maxTokens), "max_tokens"}
	}
	if req.Temperature != nil {
		p.temperature = *req.Temperature
	}
	if p.temperature < 0 || p.temperature > 2 {
		return p, &badRequest{fmt.Sprintf("temperature must be between 0 and 2, got %g", p.temperature), "temperature"}
	}
	if req.TopLogprobs != nil {
		k := *req.TopLogprobs
		switch {
		case !req.Logprobs:
			return p, &badRequest{"when using top_logprobs, logprobs must be set to true", "top_logprobs"}
		case k < 0 || k > maxTopLogprobs:
			return p, &badRequest{fmt.Sprintf("top_logprobs must be between 0 and %d, got %d", maxTopLogprobs, k), "top_logprobs"}
		}
	}
	if req.Logprobs {
		p.topLogprobs = 0
		if req.TopLogprobs != nil {
			p.topLogprobs = *req.TopLogprobs
		}
	}
	return p, nil
}

// contextLimit returns the most completion tokens a prompt of promptTokens
// leaves, or a 400 when the request does not fit the context window.
func (s *Server) contextLimit(promptTokens int, maxTokens *int) (int, *badRequest) {
	limit := s.opts.MaxModelLen - promptTokens
	if maxTokens != nil && *maxTokens > limit || limit < 1 {
		want := 1
		if maxTokens != nil {
			want = *maxTokens
		}
		return 0, &badRequest{fmt.Sprintf(
			"This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
			s.opts.MaxModelLen, promptTokens+want, promptTokens, want), ""}
	}
	if maxTokens != nil {
		limit = *maxTokens
	}
	return limit, nil
}

// chatMeta is what every chunk or response of a chat request shares.
type chatMeta struct {
	id           string
	created      int64
	promptTokens int
	completion   int
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
	p, bad := checkChat(&req)
	rendered := render(req.Messages, true)
	promptTokens := tokenCount(rendered)
	var limit int
	if bad == nil {
		limit, bad = s.contextLimit(promptTokens, p.maxTokens)
	}
	if bad != nil {
		writeBody(w, http.StatusBadRequest, vllmError(http.StatusBadRequest, bad.msg, bad.param))
		return
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
	seeds := s.childSeeds(conv.String(), req.Seed, p.n, p.temperature)
	choices := make([]choice, p.n)
	lengths := make([]int, p.n)
	meta := chatMeta{
		id:           "chatcmpl-" + hex8(hashOf(s.gen.seed, conv.String(), strconv.FormatUint(seeds[0], 16))),
		created:      time.Now().Unix(),
		promptTokens: promptTokens,
	}
	for i := range p.n {
		choices[i] = s.gen.generate(genRequest{conv: conv.String(), childSeed: seeds[i], temperature: p.temperature,
			maxTokens: limit, topLogprobs: p.topLogprobs})
		lengths[i] = choices[i].Tokens
		meta.completion += choices[i].Tokens
	}

	cached := s.cache.prefill(rendered, promptTokens)
	for _, c := range choices {
		s.cache.store(rendered + c.Text + turnEnd)
	}
	j, err := s.sched.submit(promptTokens-cached, lengths)
	if err != nil {
		s.writeError(w, http.StatusServiceUnavailable, "the simulated server is shutting down")
		return
	}
	if req.Stream {
		s.streamChat(w, r, j, choices, meta, req.StreamOptions != nil && req.StreamOptions.IncludeUsage, ft)
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
	s.countCompletion(meta.completion)
	w.Header().Set("X-Sim-Queue-Seconds", strconv.FormatFloat(j.QueueSeconds(), 'f', 6, 64))
	w.Header().Set("X-Sim-Seconds", strconv.FormatFloat(j.Seconds(), 'f', 6, 64))
	s.respond(w, http.StatusOK, chatResponse{
		ID:      meta.id,
		Object:  "chat.completion",
		Created: meta.created,
		Model:   s.opts.Model,
		Choices: withToolCalls(chatChoices(choices), req, meta.id),
		Usage:   usage{PromptTokens: promptTokens, CompletionTokens: meta.completion, TotalTokens: promptTokens + meta.completion},
	}, ft)
}

func chatChoices(cs []choice) []chatChoice {
	out := make([]chatChoice, len(cs))
	for i, c := range cs {
		out[i] = chatChoice{Index: i, Message: answerMessage{Role: "assistant", Content: c.Text}, FinishReason: c.Finish, Logprobs: c.Logprobs}
	}
	return out
}

// countCompletion counts completion tokens delivered.
func (s *Server) countCompletion(tokens int) {
	s.mu.Lock()
	s.counts.completions += int64(tokens)
	s.mu.Unlock()
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
