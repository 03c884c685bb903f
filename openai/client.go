// Package openai is tpo's client for policy models served behind the
// OpenAI-compatible chat completion API: vLLM, SGLang, llama.cpp server,
// Ollama, TGI and OpenAI itself. It holds the wire types, the conversions
// from tpo's domain types, and a Client that implements tpo.Generator and
// smooths over the servers' differences (servers that ignore or refuse n,
// context overflow errors in many wordings).
package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
)

// Names of the request field that limits the generated length.
const (
	MaxTokens           = "max_tokens"
	MaxCompletionTokens = "max_completion_tokens"
)

const chatPath = "/chat/completions"

// Options configures a Client. The embedded httpx.Options hold the server
// URLs (replicas of one model), the API key, timeouts and retry policy.
type Options struct {
	httpx.Options
	// Model is the model name sent with every request (required).
	Model string
	// MaxTokensField is the name of the length limit field: "max_tokens"
	// (the default) or "max_completion_tokens" (OpenAI reasoning models).
	MaxTokensField string
}

// Client talks to a chat completion server. It is safe for concurrent use.
type Client struct {
	http           *httpx.Client
	model          string
	maxTokensField string
	log            *slog.Logger
	modes          *modes
	tracer         tpo.Tracer // nil: none
}

// modes remembers what the server turned out to support; it is shared by
// the clients WithModel derives.
type modes struct {
	singles atomic.Bool // n is not honoured: send single requests
	once    sync.Once
}

// New returns a client for opts.
func New(opts Options) (*Client, error) {
	if opts.Name == "" {
		opts.Name = "policy"
	}
	if strings.TrimSpace(opts.Model) == "" {
		return nil, fmt.Errorf("%s server: no model name given", opts.Name)
	}
	switch opts.MaxTokensField {
	case "":
		opts.MaxTokensField = MaxTokens
	case MaxTokens, MaxCompletionTokens:
	default:
		return nil, fmt.Errorf("%s server: max tokens field %q: want %q or %q", opts.Name, opts.MaxTokensField, MaxTokens, MaxCompletionTokens)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	hopts := opts.Options
	if prev := hopts.Permanent; prev != nil {
		hopts.Permanent = func(e *httpx.StatusError) bool { return rejectsN(e) || prev(e) }
	} else {
		hopts.Permanent = rejectsN
	}
	hc, err := httpx.New(hopts)
	if err != nil {
		return nil, err
	}
	return &Client{
		http:           hc,
		model:          opts.Model,
		maxTokensField: opts.MaxTokensField,
		log:            opts.Logger,
		modes:          &modes{},
		tracer:         opts.Tracer,
	}, nil
}

// Model returns the model name the client sends.
func (c *Client) Model() string { return c.model }

// URLs returns the base URLs of the server's replicas.
func (c *Client) URLs() []string { return c.http.URLs() }

// WithModel returns a client for another model served by the same
// servers. It shares connections, limits and what was learnt about the
// servers.
func (c *Client) WithModel(model string) *Client {
	d := *c
	d.model = model
	return &d
}

// Generate implements tpo.Generator. It asks for N choices in one request
// when the server honours n; otherwise (the server ignored or refused n,
// now or before) it sends N concurrent single requests, giving seeded
// requests the seeds Seed, Seed+1, ... as vLLM does for the children of one
// request.
func (c *Client) Generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	ctx, span := c.startCall(ctx, c.model, req.Stage, req.N)
	gen, err := c.generate(ctx, req)
	span.Set(tpo.A("tpo.returned", len(gen.Texts)))
	span.End(gen.Usage, err)
	return gen, err
}

// startCall starts the span of a model call asking model for n choices.
func (c *Client) startCall(ctx context.Context, model string, st tpo.Stage, n int) (context.Context, *tpo.ModelCallSpan) {
	return tpo.StartModelCall(ctx, c.tracer, tpo.ModelCall{Operation: tpo.OpChat, Model: model, Backend: c.http.Name(), Stage: st, N: n})
}

func (c *Client) generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	var gen tpo.Generation
	if req.Sampling.MaxTokens <= 0 {
		return gen, fmt.Errorf("%s server: max tokens is %d; a positive length limit is required", c.http.Name(), req.Sampling.MaxTokens)
	}
	if len(req.Messages) == 0 {
		return gen, fmt.Errorf("%s server: no messages to send", c.http.Name())
	}
	choices, usage, err := c.choices(ctx, c.request(req), max(req.N, 1))
	gen.Usage = usage
	for _, ch := range choices {
		gen.Texts = append(gen.Texts, ch.Message.Content)
		gen.Finish = append(gen.Finish, ch.FinishReason)
	}
	return gen, err
}

// Choices sends req (Stream and N are ignored) asking for n choices and
// returns them in choice order as the server produced them, tool calls
// included, with what the requests cost. Like Generate, it asks for n
// choices at once when the server honours n and otherwise sends single
// requests, seeded Seed, Seed+1, ... An empty Model is filled with the
// client's. On error it returns the choices of the requests that
// succeeded, in order, up to the first failure.
func (c *Client) Choices(ctx context.Context, req ChatRequest, n int) ([]Choice, tpo.Usage, error) {
	if req.Model == "" {
		req.Model = c.model
	}
	req.Stream, req.StreamOptions, req.N = false, nil, nil
	ctx, span := c.startCall(ctx, req.Model, "", max(n, 1))
	choices, u, err := c.choices(ctx, req, max(n, 1))
	span.Set(tpo.A("tpo.returned", len(choices)))
	span.End(u, err)
	return choices, u, err
}

func (c *Client) choices(ctx context.Context, base ChatRequest, n int) ([]Choice, tpo.Usage, error) {
	var u tpo.Usage
	if n == 1 || c.modes.singles.Load() {
		got, err := c.singles(ctx, base, 0, n, &u)
		return got, u, err
	}
	req := base
	req.N = &n
	resp, info, err := c.chat(ctx, req)
	u.Retries += info.Retries
	if err != nil {
		var se *httpx.StatusError
		if !errors.As(err, &se) || !rejectsN(se) {
			return nil, u, err
		}
		c.useSingles(info.URL, fmt.Sprintf("the server refused n=%d: %s", n, se.Message))
		got, err := c.singles(ctx, base, 0, n, &u)
		return got, u, err
	}
	addUsage(&u, resp.Usage)
	choices := resp.Ordered()
	if len(choices) > n {
		choices = choices[:n]
	}
	if len(choices) < n {
		c.useSingles(info.URL, fmt.Sprintf("the server returned %d of n=%d choices", len(choices), n))
		more, err := c.singles(ctx, base, len(choices), n-len(choices), &u)
		return append(choices, more...), u, err
	}
	return choices, u, nil
}

// useSingles switches the client to single requests, logging it once.
func (c *Client) useSingles(url, reason string) {
	c.modes.singles.Store(true)
	c.modes.once.Do(func() {
		c.log.Info("policy server does not honour n; sending one request per sample from now on",
			"server", c.http.Name(), "url", url, "model", c.model, "reason", reason)
	})
}

// singles sends count concurrent one-choice requests like base for
// choices first, first+1, ...; seeded requests get base.Seed+choice. It
// adds their cost to u and returns the choices of the requests that
// succeeded, in choice order, up to the first failure.
func (c *Client) singles(ctx context.Context, base ChatRequest, first, count int, u *tpo.Usage) ([]Choice, error) {
	got := make([]Choice, count)
	ok := make([]bool, count)
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for i := range count {
		g.Go(func() error {
			req := base
			req.N = nil
			if base.Seed != nil {
				s := *base.Seed + int64(first+i)
				req.Seed = &s
			}
			resp, info, err := c.chat(gctx, req)
			mu.Lock()
			defer mu.Unlock()
			u.Retries += info.Retries
			if err != nil {
				return err
			}
			addUsage(u, resp.Usage)
			got[i] = resp.Ordered()[0]
			ok[i] = true
			return nil
		})
	}
	err := g.Wait()
	// Keep the prefix that succeeded: choices are in order.
	var out []Choice
	for i := 0; i < count && ok[i]; i++ {
		out = append(out, got[i])
	}
	return out, err
}

func addUsage(u *tpo.Usage, r *Usage) {
	u.Requests++
	if r != nil {
		u.PromptTokens += r.PromptTokens
		u.CompletionTokens += r.CompletionTokens
	}
}

// request builds the body of a Generate request: model, messages,
// temperature, top_p and the length limit always; seed when set (n is set
// by choices).
func (c *Client) request(req tpo.GenerateRequest) ChatRequest {
	temp, topP, maxTokens := req.Sampling.Temperature, req.Sampling.TopP, req.Sampling.MaxTokens
	r := ChatRequest{
		Model:       c.model,
		Messages:    Messages(req.Messages),
		Temperature: &temp,
		TopP:        &topP,
	}
	if c.maxTokensField == MaxCompletionTokens {
		r.MaxCompletionTokens = &maxTokens
	} else {
		r.MaxTokens = &maxTokens
	}
	if req.Seed != nil {
		s := *req.Seed
		r.Seed = &s
	}
	return r
}

// Messages converts tpo messages to wire messages.
func Messages(ms []tpo.Message) []Message {
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = Message{Role: m.Role, Content: m.Content}
	}
	return out
}

// Chat sends a chat completion request (Stream is ignored) and returns the
// response. An empty Model is filled with the client's. A response without
// choices is an error.
func (c *Client) Chat(ctx context.Context, req ChatRequest) (ChatResponse, httpx.Info, error) {
	if req.Model == "" {
		req.Model = c.model
	}
	req.Stream = false
	req.StreamOptions = nil
	n := 1
	if req.N != nil {
		n = *req.N
	}
	ctx, span := c.startCall(ctx, req.Model, "", n)
	resp, info, err := c.chat(ctx, req)
	u := info.Usage(err)
	if resp.Usage != nil {
		u.PromptTokens, u.CompletionTokens = resp.Usage.PromptTokens, resp.Usage.CompletionTokens
	}
	span.Set(tpo.A("tpo.returned", len(resp.Choices)))
	span.End(u, err)
	return resp, info, err
}

func (c *Client) chat(ctx context.Context, req ChatRequest) (ChatResponse, httpx.Info, error) {
	var resp ChatResponse
	info, err := c.http.PostJSON(ctx, chatPath, req, &resp)
	if err != nil {
		return resp, info, c.explain(err, req.Model)
	}
	if len(resp.Choices) == 0 {
		return resp, info, fmt.Errorf("%s server %s: POST %s: the response has no choices (model %q)", c.http.Name(), info.URL, chatPath, req.Model)
	}
	return resp, info, nil
}

// ChatRaw sends body, a chat completion request in JSON, unchanged and
// returns the response body unchanged (it must be JSON). The server uses it
// to pass requests through.
func (c *Client) ChatRaw(ctx context.Context, body []byte) (json.RawMessage, httpx.Info, error) {
	if !json.Valid(body) {
		return nil, httpx.Info{}, fmt.Errorf("%s server: the request body is not valid JSON", c.http.Name())
	}
	var out json.RawMessage
	info, err := c.http.PostJSON(ctx, chatPath, json.RawMessage(body), &out)
	if err != nil {
		return nil, info, c.explain(err, rawModel(body))
	}
	return out, info, nil
}

// ChatStreamRaw sends body, a streamed chat completion request in JSON,
// unchanged and returns the open event stream. The caller closes it.
func (c *Client) ChatStreamRaw(ctx context.Context, body []byte) (io.ReadCloser, httpx.Info, error) {
	if !json.Valid(body) {
		return nil, httpx.Info{}, fmt.Errorf("%s server: the request body is not valid JSON", c.http.Name())
	}
	resp, info, err := c.http.Stream(ctx, chatPath, json.RawMessage(body))
	if err != nil {
		return nil, info, c.explain(err, rawModel(body))
	}
	return resp.Body, info, nil
}

func rawModel(body []byte) string {
	var m struct {
		Model string `json:"model"`
	}
	_ = json.Unmarshal(body, &m)
	return m.Model
}

// ChatStream sends a streamed chat completion request and returns the
// stream of chunks. An empty Model is filled with the client's. The caller
// must close the stream.
func (c *Client) ChatStream(ctx context.Context, req ChatRequest) (*Stream, error) {
	if req.Model == "" {
		req.Model = c.model
	}
	req.Stream = true
	resp, info, err := c.http.Stream(ctx, chatPath, req)
	if err != nil {
		return nil, c.explain(err, req.Model)
	}
	return NewStream(resp.Body, c.http.Name()+" server "+info.URL), nil
}

// Models lists the models the server serves.
func (c *Client) Models(ctx context.Context) (ModelList, error) {
	var list ModelList
	_, err := c.http.GetJSON(ctx, "/models", &list)
	return list, err
}

// ModelIDs lists the names of the models the server serves.
func (c *Client) ModelIDs(ctx context.Context) ([]string, error) {
	list, err := c.Models(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(list.Data))
	for i, m := range list.Data {
		ids[i] = m.ID
	}
	return ids, nil
}

// Check verifies that the server answers and serves the client's model.
func (c *Client) Check(ctx context.Context) error {
	list, err := c.Models(ctx)
	if err != nil {
		return err
	}
	var ids []string
	for _, m := range list.Data {
		if m.ID == c.model {
			return nil
		}
		ids = append(ids, m.ID)
	}
	return fmt.Errorf("%s server %s does not serve model %q; it serves %q", c.http.Name(), strings.Join(c.http.URLs(), ", "), c.model, ids)
}

// explain adds what the server's error means for tpo: a context overflow
// wraps tpo.ErrContextLength, a 404 about the model names the model.
func (c *Client) explain(err error, model string) error {
	var se *httpx.StatusError
	if !errors.As(err, &se) {
		return err
	}
	switch {
	case IsContextLength(se):
		return fmt.Errorf("%w: %w", tpo.ErrContextLength, err)
	case IsUnknownModel(se):
		return fmt.Errorf("model %q is not served by %s server %s (check the model name): %w", model, c.http.Name(), se.Server, err)
	case se.Status == 404:
		return fmt.Errorf("%w (check the server URL: it usually ends in /v1)", err)
	case se.Status == 401 || se.Status == 403:
		return fmt.Errorf("%w (check the API key)", err)
	}
	return err
}

// IsUnknownModel reports whether a server's error says the requested model
// is not one it serves (a 404 that names the model).
func IsUnknownModel(se *httpx.StatusError) bool {
	return se.Status == 404 && mentionsModel(se)
}

func mentionsModel(se *httpx.StatusError) bool {
	return strings.Contains(strings.ToLower(se.Message), "model") || se.Param == "model" || se.Code == "model_not_found"
}

var contextWords = regexp.MustCompile(`(?i)(maximum context length|context length|context window|context size|` +
	`max_model_len|prompt is too long|prompt too long|input is too long|too many (input )?tokens|` +
	`input.*tokens?.*(must be|must have|exceed|too long|longer|less than)|` +
	`input.*(must have less than|exceed|too long|longer than).*tokens?|tokens?.*exceeds?.*(limit|maximum|context))`)

// IsContextLength reports whether a server's error says the request does
// not fit the model's context window.
func IsContextLength(se *httpx.StatusError) bool {
	switch strings.ToLower(se.Code) {
	case "context_length_exceeded", "exceed_context_size_error", "string_above_max_length":
		return true
	}
	switch strings.ToLower(se.Type) {
	case "context_length_exceeded", "exceed_context_size_error":
		return true
	}
	switch se.Status {
	case 400, 413, 422:
		return contextWords.MatchString(se.Message)
	}
	return false
}

var nWords = regexp.MustCompile(`(?i)(only one (completion )?choice|one choice|multiple (completion )?choices|` +
	`choices? (is|are) not supported|\bn\b\W{0,3}\s*(must be|should be|>|greater|is not supported|not supported|unsupported|only)|` +
	`(unsupported|invalid) (value|parameter)\W+.{0,3}\bn\b)`)

// rejectsN reports whether a server's error says it cannot give more than
// one choice per request (llama.cpp: "Only one completion choice is
// allowed").
func rejectsN(se *httpx.StatusError) bool {
	switch se.Status {
	case 400, 422, 500, 501:
	default:
		return false
	}
	return se.Param == "n" || nWords.MatchString(se.Message)
}
