package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// UpstreamError is a model server's answer with an error status. The
// errors of an Upstream, of its generators and of the scorers wrap one
// (errors.As finds it) for each such answer, so that the server can tell
// what the client's request caused (a model the server does not serve, a
// parameter it refused: 4xx) from a server's failure (502).
type UpstreamError struct {
	// Role is what the server is to tpo: "policy", "reward", "judge".
	Role   string
	Status int // the HTTP status it answered with
	// The fields of its OpenAI error body, Message in its own words.
	Type, Param, Code, Message string
	// RetryAfter is the delay it asked for, or zero.
	RetryAfter time.Duration
	// UnknownModel is true when it says it does not serve the model asked
	// for.
	UnknownModel bool
	// Err is the whole error, with the server's address: for the log.
	Err error
}

func (e *UpstreamError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s server: %d: %s", e.Role, e.Status, e.Message)
}

func (e *UpstreamError) Unwrap() error { return e.Err }

// upstreamErr returns err wrapped in an *UpstreamError when it wraps a
// model server's error answer, as package openai sees it.
func upstreamErr(err error) error {
	a, ok := openai.ErrorOf(err)
	if !ok {
		return err
	}
	return &UpstreamError{Role: a.Role, Status: a.Status, Type: a.Type, Param: a.Param, Code: a.Code, Message: a.Message,
		RetryAfter: a.RetryAfter, UnknownModel: a.UnknownModel, Err: err}
}

// WithUpstreamErrors returns s, whose errors wrap an *UpstreamError for
// each error answer of its model server: for the scorers of Options,
// built on package httpx (the reward backends, the judge).
func WithUpstreamErrors(s tpo.Scorer) tpo.Scorer { return errScorer{s} }

type errScorer struct{ s tpo.Scorer }

func (e errScorer) Score(ctx context.Context, messages []tpo.Message, responses []string) (tpo.Scores, error) {
	scores, err := e.s.Score(ctx, messages, responses)
	if err != nil {
		err = upstreamErr(err)
	}
	return scores, err
}

type errGenerator struct{ g tpo.Generator }

func (e errGenerator) Generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	gen, err := e.g.Generate(ctx, req)
	if err != nil {
		err = upstreamErr(err)
	}
	return gen, err
}

// Upstream is the policy model server as the server uses it. Its errors
// wrap an *UpstreamError for each error answer of the server.
type Upstream interface {
	// Generator returns a generator calling model; "" names DefaultModel.
	Generator(model string) tpo.Generator
	// DefaultModel is the model of requests that name none.
	DefaultModel() string
	// Models returns the upstream's model list, in the OpenAI list format.
	Models(ctx context.Context) (json.RawMessage, error)
	// Chat sends a chat completion request body unchanged and returns the
	// response body.
	Chat(ctx context.Context, body []byte) ([]byte, error)
	// ChatStream sends a streamed chat completion request body unchanged
	// and returns the open SSE stream; the caller closes it.
	ChatStream(ctx context.Context, body []byte) (io.ReadCloser, error)
	// Choices sends req (a conversation with tools) asking for n choices
	// and returns them as the model produced them, tool calls included,
	// with what the requests cost.
	Choices(ctx context.Context, req openai.ChatRequest, n int) ([]openai.Choice, tpo.Usage, error)
}

// OpenAI returns the Upstream of a policy client: generations go through
// the client derived for the request's model (sharing the connections,
// limits and what was learnt about the servers), pass-through requests and
// the model list go through the client unchanged, so that no field is lost
// on the way. The client's configured URLs are the only hosts called.
func OpenAI(c *openai.Client) Upstream { return openaiUpstream{c} }

type openaiUpstream struct{ c *openai.Client }

func (u openaiUpstream) Generator(model string) tpo.Generator {
	if model == "" || model == u.c.Model() {
		return errGenerator{u.c}
	}
	return errGenerator{u.c.WithModel(model)}
}

func (u openaiUpstream) DefaultModel() string { return u.c.Model() }

func (u openaiUpstream) Models(ctx context.Context) (json.RawMessage, error) {
	list, err := u.c.Models(ctx)
	if err != nil {
		return nil, upstreamErr(err)
	}
	if list.Object == "" {
		list.Object = "list"
	}
	if list.Data == nil {
		list.Data = []openai.Model{}
	}
	return json.Marshal(list)
}

func (u openaiUpstream) Chat(ctx context.Context, body []byte) ([]byte, error) {
	raw, _, err := u.c.ChatRaw(ctx, body)
	if err != nil {
		return nil, upstreamErr(err)
	}
	return raw, nil
}

func (u openaiUpstream) ChatStream(ctx context.Context, body []byte) (io.ReadCloser, error) {
	rc, _, err := u.c.ChatStreamRaw(ctx, body)
	if err != nil {
		return nil, upstreamErr(err)
	}
	return rc, nil
}

func (u openaiUpstream) Choices(ctx context.Context, req openai.ChatRequest, n int) ([]openai.Choice, tpo.Usage, error) {
	choices, usage, err := u.c.Choices(ctx, req, n)
	if err != nil {
		err = upstreamErr(err)
	}
	return choices, usage, err
}
