package server

import (
	"context"
	"encoding/json"
	"io"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
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

// OpenAI returns the Upstream of a policy client: generations go through
// the client derived for the request's model (sharing the connections,
// limits and what was learnt about the servers), pass-through requests and
// the model list go through the client unchanged, so that no field is lost
// on the way. The client's configured URLs are the only hosts called.
func OpenAI(c *openai.Client) Upstream { return openaiUpstream{c} }

type openaiUpstream struct{ c *openai.Client }

func (u openaiUpstream) Generator(model string) tpo.Generator {
	if model == "" || model == u.c.Model() {
		return u.c
	}
	return u.c.WithModel(model)
}

func (u openaiUpstream) DefaultModel() string { return u.c.Model() }

func (u openaiUpstream) Models(ctx context.Context) (json.RawMessage, error) {
	list, err := u.c.Models(ctx)
	if err != nil {
		return nil, err
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
	return raw, err
}

func (u openaiUpstream) ChatStream(ctx context.Context, body []byte) (io.ReadCloser, error) {
	rc, _, err := u.c.ChatStreamRaw(ctx, body)
	return rc, err
}
