package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// sseWriter writes Server-Sent Events, flushing each one. After a write
// fails every later write fails too.
type sseWriter struct {
	w   io.Writer
	rc  *http.ResponseController
	err error
}

func startSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

func (s *sseWriter) raw(b []byte) error {
	if s.err != nil {
		return s.err
	}
	if _, err := s.w.Write(b); err != nil {
		s.err = err
		return err
	}
	if err := s.rc.Flush(); err != nil {
		s.err = err
	}
	return s.err
}

// data sends v as one JSON event.
func (s *sseWriter) data(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding an event: %w", err)
	}
	buf := make([]byte, 0, len(b)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, b...)
	buf = append(buf, "\n\n"...)
	return s.raw(buf)
}

func (s *sseWriter) comment(text string) error { return s.raw([]byte(": " + text + "\n\n")) }

func (s *sseWriter) done() error { return s.raw([]byte("data: [DONE]\n\n")) }

// chunkMaker builds the chunks of one streamed completion.
type chunkMaker struct {
	id      string
	created int64
	model   string
}

func (c chunkMaker) chunk(choices ...openai.ChunkChoice) chunk {
	if choices == nil {
		choices = []openai.ChunkChoice{}
	}
	return chunk{ChatChunk: openai.ChatChunk{ID: c.id, Object: "chat.completion.chunk", Created: c.created, Model: c.model, Choices: choices}}
}

func (c chunkMaker) role(index int) chunk {
	return c.chunk(openai.ChunkChoice{Index: index, Delta: openai.Delta{Role: tpo.RoleAssistant}})
}

func (c chunkMaker) content(index int, text string) chunk {
	return c.chunk(openai.ChunkChoice{Index: index, Delta: openai.Delta{Content: text}})
}

func (c chunkMaker) progress(p Progress) chunk {
	ch := c.chunk(openai.ChunkChoice{Index: 0})
	ch.TPO = p
	return ch
}

func (c chunkMaker) finish(index int, reason string) chunk {
	return c.chunk(openai.ChunkChoice{Index: index, FinishReason: reason})
}

func (c chunkMaker) usage(u openai.Usage) chunk {
	ch := c.chunk()
	ch.Usage = &u
	return ch
}

// answerChunks returns the chunks that carry a finished optimization's
// answer: for each choice its role (after the first, whose role was sent
// when the stream began) and content deltas, then one finish chunk per
// choice, the last one carrying the "tpo" summary, then the usage chunk
// when asked for.
func answerChunks(o outcome) []chunk {
	c := chunkMaker{id: o.ID, created: o.Created, model: o.Model}
	if o.Tools.answered() {
		return toolCallChunks(o, c)
	}
	cands := bestDistinct(o.Result, o.Plan.N)
	var out []chunk
	for i, cd := range cands {
		if i > 0 {
			out = append(out, c.role(i))
		}
		for _, d := range splitDeltas(cd.Text, deltaSize) {
			out = append(out, c.content(i, d))
		}
	}
	for i := range cands {
		f := c.finish(i, "stop")
		if i == len(cands)-1 {
			f.TPO = o.optimization(cands)
		}
		out = append(out, f)
	}
	if o.Plan.IncludeUsage {
		out = append(out, c.usage(o.Meter.usage()))
	}
	return out
}

// toolCallChunks returns the chunks of an answer that is the model's tool
// calls: for each choice its role (after the first), its text if any and
// one delta per call, whole; then the finish chunks, the last with the
// "tpo" summary; then the usage chunk when asked for.
func toolCallChunks(o outcome, c chunkMaker) []chunk {
	choices := o.toolChoices()
	var out []chunk
	for i, ch := range choices {
		if i > 0 {
			out = append(out, c.role(i))
		}
		if ch.Message.Content != "" {
			out = append(out, c.content(i, ch.Message.Content))
		}
		for k, call := range ch.Message.ToolCalls {
			call.Index = &k
			out = append(out, c.chunk(openai.ChunkChoice{Index: i, Delta: openai.Delta{ToolCalls: []openai.ToolCall{call}}}))
		}
	}
	for i, ch := range choices {
		f := c.finish(i, cmp.Or(ch.FinishReason, "tool_calls"))
		if i == len(choices)-1 {
			f.TPO = o.optimization(nil)
		}
		out = append(out, f)
	}
	if o.Plan.IncludeUsage {
		out = append(out, c.usage(o.Meter.usage()))
	}
	return out
}

// streamFormat writes the stream of one API: chat completion chunks, or
// the events of a response.
type streamFormat interface {
	// begin writes what is sent at once.
	begin(sw *sseWriter) error
	// progress writes that a stage of the optimization finished.
	progress(sw *sseWriter, p Progress) error
	// end writes the answer (err nil) or the error, then the end of the
	// stream. It is called also when the client left (sw.err is then set),
	// to record what the optimization came to.
	end(ctx context.Context, sw *sseWriter, res outcome, err error)
}

// chatStream is the stream of a chat completion.
type chatStream struct {
	s *Server
	c chunkMaker
}

func (f chatStream) begin(sw *sseWriter) error { return sw.data(f.c.role(0)) }

func (f chatStream) progress(sw *sseWriter, p Progress) error { return sw.data(f.c.progress(p)) }

func (f chatStream) end(ctx context.Context, sw *sseWriter, res outcome, err error) {
	if sw.err != nil {
		f.s.log.Info("client left during a streamed optimization", "run", res.RunID, "err", sw.err)
		return
	}
	if err != nil {
		f.s.log.Warn("streamed optimization failed", "run", res.RunID, "err", err)
		_ = sw.data(f.s.optimizeError(ctx, res, err).body())
		_ = sw.done()
		return
	}
	for _, ch := range answerChunks(res) {
		if sw.data(ch) != nil {
			f.s.log.Info("client left while the answer was sent", "run", res.RunID, "err", sw.err)
			return
		}
	}
	_ = sw.done()
}

// stream answers a streamed request in format f, computed by run
// (optimize): what f sends at once,
// a progress event per finished stage and SSE comments as keep-alives
// while optimizing, then the answer. A failed write (the client left, or
// read nothing for the write timeout) cancels the optimization, which
// records why. release frees the optimization slot; it is called when the
// optimization ends, before the answer is written.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, o outcome, release func(), f streamFormat,
	run func(context.Context, outcome, func(tpo.Event)) (outcome, error)) {
	// Only this handler cancels the optimization, so that the reason is
	// known before the optimizer sees the cancellation; the request's
	// deadline still applies.
	octx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	if d, ok := ctx.Deadline(); ok {
		var stop context.CancelFunc
		octx, stop = context.WithDeadline(octx, d)
		defer stop()
	}
	sw := startSSE(w)
	gone := func(err error) { cancel(s.clientGone(err)) }
	if err := f.begin(sw); err != nil {
		gone(err)
	}

	// The optimizer's event handler must not block: progress goes through
	// a buffer and is dropped if the client cannot keep up.
	progress := make(chan Progress, 64)
	tr := &progressTracker{runID: o.RunID}
	onEvent := func(e tpo.Event) {
		if p, ok := tr.progress(e); ok {
			select {
			case progress <- p:
			default:
			}
		}
	}
	type result struct {
		o   outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, err := run(octx, o, onEvent)
		done <- result{o, err}
	}()

	tick := time.NewTicker(s.opts.KeepAlive)
	defer tick.Stop()
	reqDone := ctx.Done()
	var res result
wait:
	for {
		select {
		case p := <-progress:
			if err := f.progress(sw, p); err != nil {
				gone(err)
			}
		case <-tick.C:
			if err := sw.comment("keep-alive"); err != nil {
				gone(err)
			}
		case <-reqDone:
			// The client went away or the server is shutting down; a
			// deadline passes in octx too.
			reqDone = nil
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				cancel(context.Cause(ctx))
			}
		case res = <-done:
			break wait
		}
	}
	release()
	// The progress sent before the end, then the end.
	for drained := false; !drained; {
		select {
		case p := <-progress:
			_ = f.progress(sw, p)
		default:
			drained = true
		}
	}
	f.end(ctx, sw, res.o, res.err)
}

// clientGone is why the optimization of a streamed request was cancelled
// after a write to its client failed with err.
func (s *Server) clientGone(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("the client read nothing for %v (the write timeout)", s.opts.WriteTimeout)
	}
	return fmt.Errorf("the client went away (%v)", err)
}

// event sends v as one JSON event of type typ.
func (s *sseWriter) event(typ string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding an event: %w", err)
	}
	buf := make([]byte, 0, len(b)+len(typ)+16)
	buf = append(buf, "event: "...)
	buf = append(buf, typ...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, b...)
	buf = append(buf, "\n\n"...)
	return s.raw(buf)
}
