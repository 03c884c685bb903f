package queue

import (
	"context"
	"encoding/json"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tpoproject/tpo"
)

// Traces. An item is one trace, though its steps are jobs that may run in
// several processes on several machines. The process whose insert of the
// item's job takes effect starts the trace with a short tpo.item span (no
// process sees the whole item to end a span around it) and stores the
// span's W3C trace context in the job's metadata; each job passes it on to
// the job of the next step. Every job, wherever it runs, starts a
// tpo.item.step span, a child of tpo.item, under which the stages and
// model calls of its step nest. An item taken up again by a later start of
// the command (it had failed, or been given up) starts a new trace.

// jobMeta is what tpo keeps in the metadata of a step's job.
type jobMeta struct {
	// Trace is the W3C trace context (traceparent, tracestate) of the
	// item's tpo.item span; nil when the item is not traced.
	Trace map[string]string `json:"tpo_trace,omitempty"`
}

// encode returns the metadata as River stores it, nil when empty.
func (m jobMeta) encode() []byte {
	if len(m.Trace) == 0 {
		return nil
	}
	b, _ := json.Marshal(m) // a map of strings always encodes
	return b
}

// readMeta reads a job's metadata; what it cannot read is left out.
func readMeta(row *rivertype.JobRow) jobMeta {
	var m jobMeta
	if row != nil {
		_ = json.Unmarshal(row.Metadata, &m)
	}
	return m
}

func (s *session) tracer() tpo.Tracer { return s.r.Optimizer.Tracer }

// startItem starts the tpo.item span of an item whose job a is about to be
// inserted, and returns the metadata of its jobs. The span is to be ended
// if the insert takes effect, and dropped (never ended) if the item's job
// was live already, inserted by another process with a trace of its own.
func (s *session) startItem(ctx context.Context, a stepArgs) (tpo.Span, jobMeta) {
	t := s.tracer()
	if t == nil {
		return nil, jobMeta{}
	}
	cfg := s.r.Optimizer.Config
	ctx, span := t.Start(ctx, "tpo.item", tpo.A("tpo.item", a.Item), tpo.A("tpo.run", a.Run), tpo.A("tpo.seq", a.Seq),
		tpo.A("tpo.mode", string(cfg.Mode)), tpo.A("tpo.width", cfg.Width), tpo.A("tpo.depth", cfg.Steps()),
		tpo.A("tpo.step", a.Step), tpo.A("tpo.retry", a.Retry))
	m := jobMeta{Trace: map[string]string{}}
	t.Inject(ctx, func(k, v string) { m.Trace[k] = v })
	return span, m
}

// traced holds the tpo.item spans of a batch of inserts, by item.
type traced map[string]tpo.Span

// add keeps the span of item id, unless it is nil or the batch has one.
func (tr traced) add(id string, span tpo.Span) {
	if _, ok := tr[id]; !ok && span != nil {
		tr[id] = span
	}
}

// end ends the spans of the items whose inserts took effect and drops
// the others, emptying tr.
func (tr traced) end(res []*rivertype.JobInsertResult) {
	for _, r := range res {
		if r == nil || r.Job == nil || r.UniqueSkippedAsDuplicate {
			continue
		}
		var a stepArgs
		if json.Unmarshal(r.Job.EncodedArgs, &a) != nil {
			continue
		}
		if span, ok := tr[a.Item]; ok {
			span.End(nil)
		}
	}
	clear(tr)
}

// startStep starts the tpo.item.step span of a job, a child of the item
// span whose context the job's metadata holds (a root span when it holds
// none), and returns the metadata to pass on to the next step's job.
func (w *stepWorker) startStep(ctx context.Context, job *river.Job[stepArgs]) (context.Context, tpo.Span, jobMeta) {
	m := readMeta(job.JobRow)
	t := w.s.tracer()
	if t == nil {
		return ctx, tpo.NoSpan, m
	}
	ctx = t.Extract(ctx, func(k string) string { return m.Trace[k] })
	a := job.Args
	ctx, span := t.Start(ctx, "tpo.item.step", tpo.A("tpo.item", a.Item), tpo.A("tpo.run", a.Run), tpo.A("tpo.seq", a.Seq),
		tpo.A("tpo.step", a.Step), tpo.A("tpo.retry", a.Retry), tpo.A("tpo.attempt", job.Attempt), tpo.A("tpo.job", job.ID),
		tpo.A("tpo.worker", w.s.client.ID()))
	return ctx, span, m
}

// What a job did, its span's tpo.outcome.
const (
	outcomeDone        = "done"        // the item was finished already: nothing to do
	outcomeStale       = "stale"       // the step was not the item's next: its next step's job inserted
	outcomeSaved       = "saved"       // the step saved, the next one's job inserted
	outcomeFinished    = "finished"    // the item ended in this step, its result recorded
	outcomeFailed      = "failed"      // the item failed in this step, its error recorded
	outcomeInterrupted = "interrupted" // the job's context ended before its step was saved
)

// finished describes the result of an item that ended, on its last step's
// span (the tpo.item span ended long before).
func finished(span tpo.Span, res tpo.Result) {
	outcome := outcomeFinished
	if res.Error != "" {
		outcome = outcomeFailed
		span.Set(tpo.A("tpo.error", res.Error))
	}
	span.Set(tpo.A("tpo.outcome", outcome), tpo.A("tpo.steps", len(res.Steps)), tpo.A("tpo.score", res.Score),
		tpo.A("tpo.stop_reason", string(res.StopReason)),
		tpo.A("tpo.prompt_tokens", res.Usage.PromptTokens), tpo.A("tpo.completion_tokens", res.Usage.CompletionTokens))
}
