package ui

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tpoproject/tpo"
)

// An event stream sends the new HTML of a live region of a page as
// server-sent events: "update" events carry the region's content, rendered
// and escaped here like every page, and an "end" event says that the
// optimization is over. For a run not in flight the stream answers 204 No
// Content, which tells the browser not to reconnect.

// sse writes server-sent events.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startSSE(w http.ResponseWriter) *sse {
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // ask proxies not to buffer
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w)}
	s.flush()
	return s
}

func (s *sse) flush() error { return s.rc.Flush() }

// send writes one event whose data is html, one data line per line.
// Carriage returns would end a line of the stream, so they are written as
// character references (the data is HTML text).
func (s *sse) send(event string, html []byte) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "event: %s\n", event)
	text := strings.ReplaceAll(string(html), "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "&#13;")
	for line := range strings.SplitSeq(text, "\n") {
		b.WriteString("data: ")
		b.WriteString(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	if _, err := s.w.Write(b.Bytes()); err != nil {
		return err
	}
	return s.flush()
}

func (s *sse) comment() error {
	if _, err := s.w.Write([]byte(": keep-alive\n\n")); err != nil {
		return err
	}
	return s.flush()
}

// subscribe subscribes to the events of run runID. It answers 204 and
// returns ok false when live events are off or the run is not in flight.
func (h *Handler) subscribe(w http.ResponseWriter, runID string) (events <-chan tpo.Event, cancel func(), first tpo.Event, ok bool) {
	if h.live == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil, nil, nil, false
	}
	ch, cancel := h.live.Subscribe(runID)
	select {
	case e, open := <-ch:
		if !open { // not in flight
			cancel()
			w.WriteHeader(http.StatusNoContent)
			return nil, nil, nil, false
		}
		first = e
	default:
	}
	return ch, cancel, first, true
}

// fragment renders a fragment into a buffer.
func (h *Handler) fragment(block string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := h.pages[""].ExecuteTemplate(&b, block, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// stream runs the loop of an event stream: it calls on with nil first, then
// with every event, then with nil again when the run has ended, and sends
// what on returns. It
// ends when the run ends, the client goes away, or after MaxStream.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, ch <-chan tpo.Event, first tpo.Event, on func(e tpo.Event) (html []byte, send bool, err error)) {
	s := startSSE(w)
	keep := time.NewTicker(h.keep)
	defer keep.Stop()
	limit := time.NewTimer(h.maxSSE)
	defer limit.Stop()
	handle := func(e tpo.Event) bool {
		html, send, err := on(e)
		if err != nil {
			if r.Context().Err() == nil {
				h.log.Warn("ui: live update failed", "path", r.URL.Path, "err", err)
			}
			return false
		}
		if send {
			return s.send("update", html) == nil
		}
		return true
	}
	// The page may have been rendered before the latest step was saved:
	// start with the current state (on(nil) renders it).
	if !handle(nil) || first != nil && !handle(first) {
		return
	}
	for {
		select {
		case e, open := <-ch:
			if !open {
				if handle(nil) {
					s.send("end", nil)
				}
				return
			}
			if !handle(e) {
				return
			}
		case <-keep.C:
			if s.comment() != nil {
				return
			}
		case <-limit.C:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// handleItemEvents streams the body of an item page while the item is
// optimized, with the step in progress drawn from the events.
func (h *Handler) handleItemEvents(w http.ResponseWriter, r *http.Request) {
	runID, itemID := r.PathValue("run"), r.PathValue("item")
	ch, cancel, first, ok := h.subscribe(w, runID)
	if !ok {
		return
	}
	defer cancel()
	var pending *stepView
	h.stream(w, r, ch, first, func(e tpo.Event) ([]byte, bool, error) {
		if e != nil {
			if e.Item() != itemID {
				return nil, false, nil
			}
			pending = applyEvent(pending, e)
		}
		row, err := h.getRun(r, runID)
		if err != nil {
			return nil, false, err
		}
		st, err := h.store.GetItem(r.Context(), runID, itemID)
		if err != nil {
			return nil, false, err
		}
		// A pending step already saved is shown from the store, and an
		// item that finished (a failed one too: no Done event) has none.
		if st.Done || pending != nil && len(st.Steps) > 0 && st.Steps[len(st.Steps)-1].Step >= pending.Step {
			pending = nil
		}
		html, err := h.fragment("item-body", h.body(row, st, pending))
		return html, true, err
	})
}

// applyEvent folds an event into the view of the step in progress; it
// returns nil once the step is saved.
func applyEvent(p *stepView, e tpo.Event) *stepView {
	step := func(n int) *stepView {
		if p == nil || p.Step != n {
			return &stepView{Step: n}
		}
		return p
	}
	switch e := e.(type) {
	case tpo.StepStarted:
		return &stepView{Step: e.Step}
	case tpo.CandidatesScored:
		p = step(e.Step)
		for _, c := range e.Candidates {
			p.Candidates = append(p.Candidates, candView{Text: c.Text, Score: c.Score})
		}
	case tpo.Critique:
		p = step(e.Step)
		p.Chosen = &refView{Ref: e.Chosen}
		if e.Rejected != nil {
			p.Rejected = &refView{Ref: *e.Rejected}
		}
		p.Loss = e.Text
	case tpo.Instructions:
		p = step(e.Step)
		p.Gradient = e.Text
	case tpo.UpdateParsed:
		p = step(e.Step)
		p.Parsed, p.UnparsedCount, p.HaveParse = e.Parsed, e.Unparsed, true
	case tpo.StepFinished, tpo.Done:
		return nil
	}
	return p
}

// handleRunEvents streams the progress of a run page while the run is in
// flight, updated as steps are saved.
func (h *Handler) handleRunEvents(w http.ResponseWriter, r *http.Request) {
	runID := r.PathValue("run")
	ch, cancel, first, ok := h.subscribe(w, runID)
	if !ok {
		return
	}
	defer cancel()
	h.stream(w, r, ch, first, func(e tpo.Event) ([]byte, bool, error) {
		switch e.(type) {
		case nil, tpo.StepFinished, tpo.Done:
		default:
			return nil, false, nil
		}
		row, err := h.getRun(r, runID)
		if err != nil {
			return nil, false, err
		}
		html, err := h.fragment("run-progress", h.progress(row))
		return html, true, err
	})
}
