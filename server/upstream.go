package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/httpx"
)

// Upstream is the policy model server as the server uses it.
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
}

// HTTPUpstream is an Upstream for an OpenAI-compatible server: generations
// go through Generators (the policy client, which knows each server's
// quirks), pass-through requests and the model list go through Client
// as they are, so that no field is lost on the way. The URLs are those of
// the client's configuration: nothing in a request chooses the host.
type HTTPUpstream struct {
	Client *httpx.Client
	// Generators returns the generator for a model name ("" for Model).
	Generators func(model string) tpo.Generator
	Model      string
}

// Generator implements Upstream.
func (u *HTTPUpstream) Generator(model string) tpo.Generator {
	if model == "" {
		model = u.Model
	}
	return u.Generators(model)
}

// DefaultModel implements Upstream.
func (u *HTTPUpstream) DefaultModel() string { return u.Model }

// Models implements Upstream.
func (u *HTTPUpstream) Models(ctx context.Context) (json.RawMessage, error) {
	var raw json.RawMessage
	if _, err := u.Client.GetJSON(ctx, "/models", &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// Chat implements Upstream.
func (u *HTTPUpstream) Chat(ctx context.Context, body []byte) ([]byte, error) {
	if !json.Valid(body) {
		return nil, errors.New("pass-through: the request body is not JSON")
	}
	var raw json.RawMessage
	if _, err := u.Client.PostJSON(ctx, "/chat/completions", json.RawMessage(body), &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// ChatStream implements Upstream.
func (u *HTTPUpstream) ChatStream(ctx context.Context, body []byte) (io.ReadCloser, error) {
	if !json.Valid(body) {
		return nil, errors.New("pass-through: the request body is not JSON")
	}
	resp, _, err := u.Client.Stream(ctx, "/chat/completions", json.RawMessage(body))
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
