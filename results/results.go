// Package results reads and writes the results format of `tpo run`: one
// JSON object per line, one line per input item, in input order.
package results

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/tpoproject/tpo"
)

// Line is one item of a results file.
type Line struct {
	ID       string        `json:"id"`
	Prompt   string        `json:"prompt"`
	Messages []tpo.Message `json:"messages,omitempty"`
	// Response is the best response of the whole cache; empty if the item
	// failed before any response was scored.
	Response string `json:"response"`
	// Score is Response's reward; null when there is no response.
	Score *float64 `json:"score"`
	// InitialBest is the best score of the step-0 samples (best of N).
	InitialBest *float64   `json:"initial_best"`
	Best        *tpo.Ref   `json:"best,omitempty"`
	Steps       []tpo.Step `json:"steps"`
	Usage       tpo.Usage  `json:"usage"`
	ScoreCalls  int        `json:"score_calls"`
	// ScoreUsage is what the reward calls cost (requests, retries; a judge's tokens).
	ScoreUsage tpo.Usage `json:"score_usage"`
	// StopReason says why a successful optimization stopped: depth,
	// patience, target, budget or deadline.
	StopReason tpo.StopReason `json:"stop_reason,omitempty"`
	// Error is null on success.
	Error *string `json:"error"`
}

// FromResult converts an optimizer result to a results line.
func FromResult(r tpo.Result) Line {
	l := Line{
		ID: r.ID, Prompt: r.Prompt, Response: r.Response, Steps: r.Steps,
		Usage: r.Usage, ScoreCalls: r.ScoreCalls, ScoreUsage: r.ScoreUsage, StopReason: r.StopReason,
	}
	if len(r.Messages) > 1 {
		l.Messages = r.Messages
	}
	if l.Steps == nil {
		l.Steps = []tpo.Step{}
	}
	if len(r.Steps) > 0 && len(r.Steps[0].Candidates) > 0 {
		score, initial, best := r.Score, r.InitialBest, r.Best
		l.Score, l.InitialBest, l.Best = &score, &initial, &best
	}
	if r.Error != "" {
		e := r.Error
		l.Error = &e
	}
	return l
}

// Writer writes results lines.
type Writer struct {
	w   *bufio.Writer
	enc *json.Encoder
}

// NewWriter returns a writer to w. Call Flush when done.
func NewWriter(w io.Writer) *Writer {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &Writer{w: bw, enc: enc}
}

// Write writes one line.
func (w *Writer) Write(l Line) error {
	if err := w.enc.Encode(l); err != nil {
		return fmt.Errorf("writing result %q: %w", l.ID, err)
	}
	return nil
}

// Flush writes buffered data.
func (w *Writer) Flush() error { return w.w.Flush() }
