package reward

import (
	"context"
	"sync"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
)

// tally adds up what the requests of one Score call cost, and the notes
// it makes. It is safe for concurrent use.
type tally struct {
	mu     sync.Mutex
	s      tpo.Scores
	tokens int // the input tokens the reward model read, when known
}

// post sends one request with c and counts it.
func (t *tally) post(ctx context.Context, c *httpx.Client, path string, body, out any) error {
	info, err := c.PostJSON(ctx, path, body, out)
	t.add(info.Usage(err))
	return err
}

// add counts u.
func (t *tally) add(u tpo.Usage) {
	t.mu.Lock()
	t.s.Usage.Add(u)
	t.mu.Unlock()
}

// read counts n input tokens the reward model read.
func (t *tally) read(n int) {
	t.mu.Lock()
	t.tokens += n
	t.mu.Unlock()
}

// note records something the step's notes should show.
func (t *tally) note(s string) {
	t.mu.Lock()
	t.s.Notes = append(t.s.Notes, s)
	t.mu.Unlock()
}

// scores returns the call's scores with what it cost.
func (t *tally) scores(values []float64) tpo.Scores {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.s
	out.Values = values
	return out
}

// startCall starts the span of a Score call of a reward model served by c
// (model "" when the server picks it), scoring n responses.
func startCall(ctx context.Context, c *httpx.Client, model string, n int) (context.Context, *tpo.ModelCallSpan) {
	return tpo.StartModelCall(ctx, c.Tracer(), tpo.ModelCall{Operation: tpo.OpScore, Model: model, Backend: c.Name(), N: n})
}

// end ends the span of the call whose cost t holds.
func (t *tally) end(span *tpo.ModelCallSpan, err error) {
	t.mu.Lock()
	u := t.s.Usage
	u.PromptTokens += t.tokens
	t.mu.Unlock()
	span.End(u, err)
}
