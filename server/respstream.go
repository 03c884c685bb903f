package server

import (
	"context"
	"net/http"

	"github.com/tpoproject/tpo/openai"
)

// progressEvent is the type of the events that carry the optimization's
// progress (a "tpo" object) in a streamed response: OpenAI's keepalive,
// which it sends in long responses and which standard clients (and the
// official SDKs' stream helpers) ignore; another type would make those
// helpers fail.
const progressEvent = "keepalive"

// streamResponse answers a streamed response request.
func (s *Server) streamResponse(ctx context.Context, w http.ResponseWriter, o outcome, rp *respPlan) {
	release := func() {}
	if !rp.Off {
		var aerr *apiError
		if release, aerr = s.begin(ctx, &o); aerr != nil {
			writeError(w, aerr)
			return
		}
	}
	s.stream(ctx, w, o, release, &responseStream{s: s, rp: rp, o: o}, s.run(rp))
}

// responseStream is the stream of a response: response.created and
// .in_progress at once, keepalive events with the progress while
// optimizing, then the
// output item by item and response.completed, or response.failed.
type responseStream struct {
	s   *Server
	rp  *respPlan
	o   outcome
	seq int
}

// send writes one event, numbered.
func (f *responseStream) send(sw *sseWriter, e openai.ResponseEvent) error {
	e.SequenceNumber = f.seq
	f.seq++
	return sw.event(e.Type, e)
}

func (f *responseStream) begin(sw *sseWriter) error {
	obj := f.s.responseObject(f.o, f.rp, "in_progress")
	if err := f.send(sw, openai.ResponseEvent{Type: "response.created", Response: &obj}); err != nil {
		return err
	}
	return f.send(sw, openai.ResponseEvent{Type: "response.in_progress", Response: &obj})
}

func (f *responseStream) progress(sw *sseWriter, p Progress) error {
	return f.send(sw, openai.ResponseEvent{Type: progressEvent, TPO: p})
}

func (f *responseStream) end(ctx context.Context, sw *sseWriter, res outcome, err error) {
	obj := f.s.finishResponse(ctx, res, f.rp, err)
	if sw.err != nil {
		f.s.log.Info("client left during a streamed response", "id", res.ID, "run", res.RunID, "err", sw.err)
		return
	}
	if err != nil {
		f.s.log.Warn("streamed response failed", "id", res.ID, "run", res.RunID, "err", err)
		_ = f.send(sw, openai.ResponseEvent{Type: "response.failed", Response: &obj})
		return
	}
	for i, item := range obj.Output {
		if f.sendItem(sw, i, item) != nil {
			f.s.log.Info("client left while the answer was sent", "id", res.ID, "err", sw.err)
			return
		}
	}
	_ = f.send(sw, openai.ResponseEvent{Type: "response.completed", Response: &obj})
}

// sendItem writes the events of one output item: added, its text in
// deltas (a message) or its arguments (a function call), done.
func (f *responseStream) sendItem(sw *sseWriter, index int, item openai.OutputItem) error {
	idx := &index
	added := item
	added.Status, added.Content = "in_progress", nil
	if item.Type == "function_call" {
		added.Arguments = ""
	}
	events := []openai.ResponseEvent{{Type: "response.output_item.added", OutputIndex: idx, Item: &added}}
	if item.Type == "function_call" {
		args := item.Arguments
		events = append(events,
			openai.ResponseEvent{Type: "response.function_call_arguments.delta", OutputIndex: idx, ItemID: item.ID, Delta: &args},
			openai.ResponseEvent{Type: "response.function_call_arguments.done", OutputIndex: idx, ItemID: item.ID, Arguments: &args})
	} else {
		events = append(events, textEvents(index, item)...)
	}
	done := item
	events = append(events, openai.ResponseEvent{Type: "response.output_item.done", OutputIndex: idx, Item: &done})
	for _, e := range events {
		if err := f.send(sw, e); err != nil {
			return err
		}
	}
	return nil
}

// textEvents are the events of a message's text parts: each part added,
// its text in deltas, the whole text, the part done.
func textEvents(index int, item openai.OutputItem) []openai.ResponseEvent {
	var out []openai.ResponseEvent
	for c, part := range item.Content {
		ci := c
		empty := openai.OutputText("")
		out = append(out, openai.ResponseEvent{Type: "response.content_part.added", OutputIndex: &index, ContentIndex: &ci, ItemID: item.ID, Part: &empty})
		for _, d := range splitDeltas(part.Text, deltaSize) {
			out = append(out, openai.ResponseEvent{Type: "response.output_text.delta", OutputIndex: &index, ContentIndex: &ci,
				ItemID: item.ID, Delta: &d, Logprobs: openai.NoLogprobs})
		}
		text, whole := part.Text, part
		out = append(out,
			openai.ResponseEvent{Type: "response.output_text.done", OutputIndex: &index, ContentIndex: &ci, ItemID: item.ID, Text: &text, Logprobs: openai.NoLogprobs},
			openai.ResponseEvent{Type: "response.content_part.done", OutputIndex: &index, ContentIndex: &ci, ItemID: item.ID, Part: &whole})
	}
	return out
}
