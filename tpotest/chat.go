package tpotest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/tpoproject/tpo"
)

// Flavor selects which chat server a ChatServer imitates.
type Flavor string

// The flavors of chat server. They differ where the real servers differ:
//
//	        n > 1                 errors                   unknown model
//	VLLM    honoured, child i     {"error":{...}}          404 NotFoundError
//	        gets seed+i
//	Ollama  ignored: 1 choice     {"error":{...}}          404 "not found, try pulling it"
//	LlamaCPP HTTP 500 "Only one   {"error":{"code",...}}   accepted (one model per server)
//	        completion choice is allowed"
//	OpenAI  honoured              {"error":{...,"code"}}   404 model_not_found
const (
	VLLM     Flavor = "vllm"
	Ollama   Flavor = "ollama"
	LlamaCPP Flavor = "llamacpp"
	OpenAI   Flavor = "openai"
)

// DefaultChatModel is the model a ChatServer serves unless told otherwise.
const DefaultChatModel = "test-model"

// ChatOptions configures a fake chat server.
type ChatOptions struct {
	// Flavor is the server imitated; the default is VLLM.
	Flavor Flavor
	// Models are the served model names (default DefaultChatModel).
	Models []string
	// APIKey, when set, is required as "Authorization: Bearer APIKey".
	APIKey string
	// Respond returns the text of choice i of the reply to req. For
	// VLLM, req.Seed is the child's seed (the request's seed plus i). The
	// default is DefaultChatReply.
	Respond func(req ChatRequestRecord, choice int) string
	// Logprobs returns the tokens reported for a choice's text when the
	// request asks for logprobs. The default is DefaultLogprobs.
	Logprobs func(req ChatRequestRecord, choice int, text string) []TokenLogprob
	// Fail, when set, is called with the 0-based number of each chat
	// request before it is handled. A non-zero status is sent with body
	// as is, instead of the normal answer (a 200 with a crafted body also
	// works).
	Fail func(n int) (status int, body string)
	// Drop, when set and true for request n, closes the connection
	// without answering.
	Drop func(n int) bool
	// StreamFail, when set and non-empty for request n, makes a streamed
	// answer send `data: <StreamFail(n)>` after its first chunk and end
	// without [DONE], as servers do when generation fails midway.
	StreamFail func(n int) string
	// Before, when set, is called before chat request n is handled; it
	// may block (to hold requests in flight) until r's context ends.
	Before func(r *http.Request, n int)
	// ContextLength, when positive, is the context window in tokens
	// (words, see CountTokens). A request whose prompt plus max_tokens
	// exceeds it fails with the flavor's context-length error. Ollama
	// accepts it (Ollama truncates instead).
	ContextLength int
	// RejectNStatus is the status LlamaCPP answers to n > 1 (default 500;
	// some builds answer 400).
	RejectNStatus int
}

// ChatRequestRecord is a decoded chat completion request.
type ChatRequestRecord struct {
	Model               string
	Messages            []tpo.Message
	N                   *int
	Seed                *int64
	Temperature         *float64
	TopP                *float64
	MaxTokens           *int
	MaxCompletionTokens *int
	Stream              bool
	IncludeUsage        bool // stream_options.include_usage
	Logprobs            bool
	TopLogprobs         int
}

// Choices is the number of choices the request asks for (n, default 1).
func (r ChatRequestRecord) Choices() int {
	if r.N == nil || *r.N < 1 {
		return 1
	}
	return *r.N
}

// Prompt is the content of the request's last user message.
func (r ChatRequestRecord) Prompt() string {
	return tpo.Item{Messages: r.Messages}.Prompt()
}

// Recorded is one request received by a fake chat server.
type Recorded struct {
	Method string
	Path   string // e.g. "/v1/chat/completions"
	Header http.Header
	Body   []byte         // the raw body
	JSON   map[string]any // the body decoded, nil when it is not a JSON object
	// Chat is the decoded chat request, for chat requests.
	Chat *ChatRequestRecord
	// N is the chat request's 0-based number (as passed to Fail), or -1.
	N int
}

// TokenLogprob is one token of a choice with its log probability and the
// most likely alternatives.
type TokenLogprob struct {
	Token       string       `json:"token"`
	Logprob     float64      `json:"logprob"`
	Bytes       []int        `json:"bytes"`
	TopLogprobs []TopLogprob `json:"top_logprobs"`
}

// TopLogprob is one alternative token.
type TopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// ChatServer is a fake OpenAI-compatible chat completion server.
type ChatServer struct {
	opts ChatOptions
	srv  *httptest.Server

	mu   sync.Mutex
	reqs []Recorded
	n    int       // chat requests seen
	used tpo.Usage // the usage of the answers
}

// NewChatServer starts a fake chat server; it is closed when the test ends.
func NewChatServer(t testing.TB, opts ChatOptions) *ChatServer {
	t.Helper()
	if opts.Flavor == "" {
		opts.Flavor = VLLM
	}
	switch opts.Flavor {
	case VLLM, Ollama, LlamaCPP, OpenAI:
	default:
		t.Fatalf("tpotest: unknown chat server flavor %q", opts.Flavor)
	}
	if len(opts.Models) == 0 {
		opts.Models = []string{DefaultChatModel}
	}
	if opts.Respond == nil {
		opts.Respond = DefaultChatReply
	}
	if opts.Logprobs == nil {
		opts.Logprobs = DefaultLogprobs
	}
	if opts.RejectNStatus == 0 {
		opts.RejectNStatus = http.StatusInternalServerError
	}
	s := &ChatServer{opts: opts}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the base URL of the OpenAI-compatible API, ending in /v1.
func (s *ChatServer) URL() string { return s.srv.URL + "/v1" }

// Model is the first served model name.
func (s *ChatServer) Model() string { return s.opts.Models[0] }

// Close shuts the server down (for tests of unreachable servers).
func (s *ChatServer) Close() { s.srv.Close() }

// Requests returns every request received so far, in arrival order.
func (s *ChatServer) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// Usage sums the usage the server reported in its answers so far (one
// request per answer, streamed or not, and its prompt and completion
// tokens): what a client that asked for them all was billed.
func (s *ChatServer) Usage() tpo.Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// ChatRequests returns the chat requests received so far.
func (s *ChatServer) ChatRequests() []Recorded {
	var out []Recorded
	for _, r := range s.Requests() {
		if r.Chat != nil {
			out = append(out, r)
		}
	}
	return out
}

// Bodies returns the decoded JSON bodies of the chat requests received.
func (s *ChatServer) Bodies() []map[string]any {
	var out []map[string]any
	for _, r := range s.ChatRequests() {
		out = append(out, r.JSON)
	}
	return out
}

// CountTokens is the fake servers' tokenizer: one token per
// whitespace-separated word.
func CountTokens(s string) int { return len(strings.Fields(s)) }

// PromptTokens is the prompt token count the fake reports for messages.
func PromptTokens(messages []tpo.Message) int {
	n := 0
	for _, m := range messages {
		n += CountTokens(m.Content)
	}
	return n
}

// DefaultChatReply is the default reply text: it names the seed (or, with
// no seed, the choice) and repeats the prompt, so that different seeds give
// different texts and the same seed the same text.
func DefaultChatReply(req ChatRequestRecord, choice int) string {
	if req.Seed != nil {
		return fmt.Sprintf("reply seed %d to: %s", *req.Seed, req.Prompt())
	}
	return fmt.Sprintf("reply %d to: %s", choice, req.Prompt())
}

// DefaultLogprobs makes each word of text a token with log probability
// -0.1 and top alternatives "alt1", "alt2", ... with -1, -2, ..., as many
// as the request's top_logprobs. The token itself heads the list.
func DefaultLogprobs(req ChatRequestRecord, choice int, text string) []TokenLogprob {
	var out []TokenLogprob
	for _, w := range chatWords(text) {
		tl := TokenLogprob{Token: w, Logprob: -0.1, Bytes: chatBytes(w), TopLogprobs: []TopLogprob{}}
		for k := range req.TopLogprobs {
			if k == 0 {
				tl.TopLogprobs = append(tl.TopLogprobs, TopLogprob{Token: w, Logprob: -0.1, Bytes: chatBytes(w)})
				continue
			}
			alt := fmt.Sprintf("alt%d", k)
			tl.TopLogprobs = append(tl.TopLogprobs, TopLogprob{Token: alt, Logprob: -float64(k), Bytes: chatBytes(alt)})
		}
		out = append(out, tl)
	}
	return out
}

func chatBytes(s string) []int {
	b := make([]int, len(s))
	for i := range len(s) {
		b[i] = int(s[i])
	}
	return b
}

// chatWords splits text into tokens that concatenate back to text: each
// word with the whitespace after it.
func chatWords(text string) []string {
	var out []string
	start := 0
	prevSpace := false
	for i, r := range text {
		space := unicode.IsSpace(r)
		if !space && prevSpace && strings.TrimSpace(text[start:i]) != "" {
			out = append(out, text[start:i])
			start = i
		}
		prevSpace = space
	}
	if start < len(text) {
		out = append(out, text[start:])
	}
	return out
}

func (s *ChatServer) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec := Recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, N: -1}
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		rec.JSON = m
	}
	isChat := r.Method == http.MethodPost && r.URL.Path == "/v1/chat/completions"
	if isChat {
		chat, err := chatDecode(body)
		if err == nil {
			rec.Chat = &chat
		}
	}
	s.mu.Lock()
	if isChat {
		rec.N = s.n
		s.n++
	}
	s.reqs = append(s.reqs, rec)
	s.mu.Unlock()

	if s.opts.APIKey != "" && r.Header.Get("Authorization") != "Bearer "+s.opts.APIKey {
		s.authError(w)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		s.models(w)
	case isChat:
		s.chat(w, r, rec)
	default:
		s.error(w, http.StatusNotFound, "not_found_error", fmt.Sprintf("%s %s not found", r.Method, r.URL.Path))
	}
}

func (s *ChatServer) chat(w http.ResponseWriter, r *http.Request, rec Recorded) {
	n := rec.N
	if s.opts.Before != nil {
		s.opts.Before(r, n)
	}
	if s.opts.Drop != nil && s.opts.Drop(n) {
		chatHangUp(w)
		return
	}
	if s.opts.Fail != nil {
		if status, body := s.opts.Fail(n); status != 0 {
			if json.Valid([]byte(body)) {
				w.Header().Set("Content-Type", "application/json")
			} else {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
			return
		}
	}
	if rec.Chat == nil {
		_, err := chatDecode(rec.Body)
		s.error(w, http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("invalid request body: %v", err))
		return
	}
	req := *rec.Chat
	if !s.checkModel(w, req.Model) {
		return
	}
	if len(req.Messages) == 0 {
		s.error(w, http.StatusBadRequest, "invalid_request_error", "messages must not be empty")
		return
	}
	if s.opts.Flavor == VLLM && !req.Stream && rec.JSON["stream_options"] != nil {
		s.error(w, http.StatusBadRequest, "BadRequestError", "Stream options can only be defined when `stream=True`.")
		return
	}
	choices := req.Choices()
	switch s.opts.Flavor {
	case Ollama:
		choices = 1
	case LlamaCPP:
		if choices > 1 {
			chatWriteJSON(w, s.opts.RejectNStatus, map[string]any{"error": map[string]any{
				"code": s.opts.RejectNStatus, "message": "Only one completion choice is allowed", "type": "server_error",
			}})
			return
		}
	}
	prompt := PromptTokens(req.Messages)
	limit := s.maxTokens(req)
	if s.overflow(w, prompt, limit) {
		return
	}

	texts := make([]string, choices)
	finish := make([]string, choices)
	children := make([]ChatRequestRecord, choices)
	completion := 0
	for i := range choices {
		child := req
		if s.opts.Flavor == VLLM && req.Seed != nil {
			seed := *req.Seed + int64(i)
			child.Seed = &seed
		}
		children[i] = child
		text := s.opts.Respond(child, i)
		finish[i] = "stop"
		if limit > 0 {
			if words := chatWords(text); len(words) > limit {
				text = strings.Join(words[:limit], "")
				finish[i] = "length"
			}
		}
		texts[i] = text
		completion += CountTokens(text)
	}
	usage := map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
	s.mu.Lock()
	s.used.Add(tpo.Usage{Requests: 1, PromptTokens: prompt, CompletionTokens: completion})
	s.mu.Unlock()
	id := fmt.Sprintf("chatcmpl-%d", n)
	model := req.Model
	if model == "" {
		model = s.opts.Models[0]
	}
	if req.Stream {
		s.stream(w, n, id, model, req, children, texts, finish, usage)
		return
	}
	var out []map[string]any
	for i, text := range texts {
		c := map[string]any{
			"index":         i,
			"message":       map[string]any{"role": "assistant", "content": text},
			"logprobs":      nil,
			"finish_reason": finish[i],
		}
		if req.Logprobs {
			c["logprobs"] = map[string]any{"content": s.opts.Logprobs(children[i], i, text)}
		}
		out = append(out, c)
	}
	chatWriteJSON(w, http.StatusOK, map[string]any{
		"id":      id,
		"object":  "chat.completion",
		"created": 1700000000,
		"model":   model,
		"choices": out,
		"usage":   usage,
	})
}

// stream answers in server-sent events, one word per chunk, choices
// interleaved.
func (s *ChatServer) stream(w http.ResponseWriter, n int, id, model string, req ChatRequestRecord, children []ChatRequestRecord, texts, finish []string, usage map[string]any) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	chunk := func(choices []map[string]any, withUsage bool) {
		c := map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": 1700000000, "model": model,
			"choices": choices,
		}
		if req.IncludeUsage {
			c["usage"] = nil
			if withUsage {
				c["usage"] = usage
			}
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(c)
		fmt.Fprintf(w, "data: %s\n\n", bytes.TrimSpace(buf.Bytes()))
		if flusher != nil {
			flusher.Flush()
		}
	}
	for i := range texts {
		chunk([]map[string]any{{"index": i, "delta": map[string]any{"role": "assistant", "content": ""}, "logprobs": nil, "finish_reason": nil}}, false)
	}
	if s.opts.StreamFail != nil {
		if msg := s.opts.StreamFail(n); msg != "" {
			fmt.Fprintf(w, "data: %s\n\n", msg)
			return
		}
	}
	words := make([][]string, len(texts))
	var lps [][]TokenLogprob
	for i, t := range texts {
		words[i] = chatWords(t)
		if req.Logprobs {
			lps = append(lps, s.opts.Logprobs(children[i], i, t))
		}
	}
	for k := 0; ; k++ {
		more := false
		for i := range texts {
			if k >= len(words[i]) {
				continue
			}
			more = true
			c := map[string]any{"index": i, "delta": map[string]any{"content": words[i][k]}, "logprobs": nil, "finish_reason": nil}
			if req.Logprobs && k < len(lps[i]) {
				c["logprobs"] = map[string]any{"content": []TokenLogprob{lps[i][k]}}
			}
			chunk([]map[string]any{c}, false)
		}
		if !more {
			break
		}
	}
	for i := range texts {
		chunk([]map[string]any{{"index": i, "delta": map[string]any{}, "logprobs": nil, "finish_reason": finish[i]}}, false)
	}
	if req.IncludeUsage {
		chunk([]map[string]any{}, true)
	}
	io.WriteString(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

func (s *ChatServer) maxTokens(req ChatRequestRecord) int {
	switch {
	case s.opts.Flavor == Ollama:
		if req.MaxTokens != nil {
			return *req.MaxTokens
		}
	case req.MaxCompletionTokens != nil:
		return *req.MaxCompletionTokens
	case req.MaxTokens != nil:
		return *req.MaxTokens
	}
	return 0
}

// overflow answers with the flavor's context-length error when the request
// does not fit.
func (s *ChatServer) overflow(w http.ResponseWriter, prompt, limit int) bool {
	ctx := s.opts.ContextLength
	if ctx <= 0 {
		return false
	}
	switch s.opts.Flavor {
	case VLLM:
		if prompt+limit <= ctx {
			return false
		}
		s.error(w, http.StatusBadRequest, "BadRequestError", fmt.Sprintf(
			"This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
			ctx, prompt+limit, prompt, limit))
	case LlamaCPP:
		if prompt < ctx {
			return false
		}
		chatWriteJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
			"code": 400, "message": "the request exceeds the available context size, try increasing it",
			"type": "exceed_context_size_error", "n_prompt_tokens": prompt, "n_ctx": ctx,
		}})
	case OpenAI:
		if prompt+limit <= ctx {
			return false
		}
		chatWriteJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
			"message": fmt.Sprintf("This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.", ctx, prompt+limit, prompt, limit),
			"type":    "invalid_request_error", "param": "messages", "code": "context_length_exceeded",
		}})
	default:
		return false
	}
	return true
}

func (s *ChatServer) checkModel(w http.ResponseWriter, model string) bool {
	if slices.Contains(s.opts.Models, model) {
		return true
	}
	switch s.opts.Flavor {
	case LlamaCPP:
		return true // llama.cpp serves its one model whatever the name
	case VLLM:
		if model == "" {
			return true // vLLM uses the served model
		}
		chatWriteJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{
			"message": fmt.Sprintf("The model `%s` does not exist.", model), "type": "NotFoundError", "param": "model", "code": 404,
		}})
	case Ollama:
		if model == "" {
			s.error(w, http.StatusBadRequest, "invalid_request_error", "model is required")
			return false
		}
		chatWriteJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{
			"message": fmt.Sprintf("model %q not found, try pulling it first", model), "type": "api_error", "param": nil, "code": nil,
		}})
	case OpenAI:
		chatWriteJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{
			"message": fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", model),
			"type":    "invalid_request_error", "param": nil, "code": "model_not_found",
		}})
	}
	return false
}

func (s *ChatServer) models(w http.ResponseWriter) {
	owner := map[Flavor]string{VLLM: "vllm", Ollama: "library", LlamaCPP: "llamacpp", OpenAI: "openai"}[s.opts.Flavor]
	var data []map[string]any
	for _, m := range s.opts.Models {
		d := map[string]any{"id": m, "object": "model", "created": 1700000000, "owned_by": owner}
		if s.opts.Flavor == VLLM && s.opts.ContextLength > 0 {
			d["max_model_len"] = s.opts.ContextLength
		}
		data = append(data, d)
	}
	chatWriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (s *ChatServer) authError(w http.ResponseWriter) {
	switch s.opts.Flavor {
	case VLLM:
		chatWriteJSON(w, http.StatusUnauthorized, map[string]any{"error": "Unauthorized"})
	case LlamaCPP:
		chatWriteJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"code": 401, "message": "Invalid API Key", "type": "authentication_error"}})
	case OpenAI:
		chatWriteJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
			"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": nil, "code": "invalid_api_key",
		}})
	default:
		chatWriteJSON(w, http.StatusUnauthorized, map[string]any{"error": "unauthorized"})
	}
}

// error writes an error in the flavor's shape.
func (s *ChatServer) error(w http.ResponseWriter, status int, typ, msg string) {
	e := map[string]any{"message": msg, "type": typ, "param": nil, "code": status}
	switch s.opts.Flavor {
	case LlamaCPP:
		e = map[string]any{"code": status, "message": msg, "type": typ}
	case OpenAI:
		e["code"] = nil
	case Ollama:
		e["type"], e["code"] = "invalid_request_error", nil
	}
	chatWriteJSON(w, status, map[string]any{"error": e})
}

// chatWire is the request as sent; content may be a string or a list of
// parts.
type chatWire struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	N                   *int     `json:"n"`
	Seed                *int64   `json:"seed"`
	Temperature         *float64 `json:"temperature"`
	TopP                *float64 `json:"top_p"`
	MaxTokens           *int     `json:"max_tokens"`
	MaxCompletionTokens *int     `json:"max_completion_tokens"`
	Stream              bool     `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Logprobs    bool `json:"logprobs"`
	TopLogprobs int  `json:"top_logprobs"`
}

func chatDecode(body []byte) (ChatRequestRecord, error) {
	var w chatWire
	if err := json.Unmarshal(body, &w); err != nil {
		return ChatRequestRecord{}, err
	}
	rec := ChatRequestRecord{
		Model: w.Model, N: w.N, Seed: w.Seed, Temperature: w.Temperature, TopP: w.TopP,
		MaxTokens: w.MaxTokens, MaxCompletionTokens: w.MaxCompletionTokens,
		Stream: w.Stream, Logprobs: w.Logprobs, TopLogprobs: w.TopLogprobs,
	}
	if w.StreamOptions != nil {
		rec.IncludeUsage = w.StreamOptions.IncludeUsage
	}
	for i, m := range w.Messages {
		text, err := chatContent(m.Content)
		if err != nil {
			return ChatRequestRecord{}, fmt.Errorf("messages[%d].content: %w", i, err)
		}
		rec.Messages = append(rec.Messages, tpo.Message{Role: m.Role, Content: text})
	}
	return rec, nil
}

// chatContent reads a message's content: a string, null, or a list of
// {"type":"text","text":...} parts (joined).
func chatContent(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", fmt.Errorf("want a string or a list of parts")
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String(), nil
}

func chatWriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// chatHangUp closes the connection without an answer.
func chatHangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}
