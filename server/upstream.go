package server

import (
	"context"
	"io"

	"github.com/tpoproject/tpo"
)

// upstream is what the server needs of the policy model server.
type upstream interface {
	// generator returns a generator calling model ("" for the default).
	generator(model string) tpo.Generator
	// defaultModel is the model used when a request names none.
	defaultModel() string
	// models returns the upstream's model list in the OpenAI list format.
	models(ctx context.Context) (any, error)
	// chat sends a chat completion request body unchanged and returns the
	// response body.
	chat(ctx context.Context, body []byte) ([]byte, error)
	// chatStream sends a streamed chat completion request body unchanged
	// and returns the open SSE stream.
	chatStream(ctx context.Context, body []byte) (io.ReadCloser, error)
}
