package queue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/riverqueue/river"

	"github.com/tpoproject/tpo"
)

// stepArgs are the arguments of the job of one step of one item.
type stepArgs struct {
	Run  string `json:"run"`
	Item string `json:"item"`
	Seq  int    `json:"seq"` // the item's position in the input
	Step int    `json:"step"`
	// Retry marks the jobs of an item that had failed and is tried again.
	Retry bool `json:"retry,omitempty"`
}

// Kind implements river.JobArgs.
func (stepArgs) Kind() string { return "tpo_step" }

// stepWorker works the jobs of a run's steps.
type stepWorker struct {
	river.WorkerDefaults[stepArgs]
	s       *session
	running atomic.Int64 // jobs in Work now
}

// Work advances the job's item by one step when that step is the item's
// next one; otherwise it inserts the job of the item's next step, unless
// the item is finished.
func (w *stepWorker) Work(ctx context.Context, job *river.Job[stepArgs]) error {
	w.running.Add(1)
	defer w.running.Add(-1)
	ctx, span, meta := w.startStep(ctx, job)
	err := w.work(ctx, &stepJob{stepArgs: job.Args, meta: meta, span: span})
	if err != nil && ctx.Err() != nil {
		span.Set(tpo.A("tpo.outcome", outcomeInterrupted))
	}
	span.End(err)
	return err
}

// stepJob is a job being worked: its arguments, the metadata it passes on
// to the job of the next step, and its span.
type stepJob struct {
	stepArgs
	meta jobMeta
	span tpo.Span
}

func (w *stepWorker) work(ctx context.Context, j *stepJob) error {
	st, err := w.s.r.Store.GetItem(ctx, j.Run, j.Item)
	switch {
	case errors.Is(err, tpo.ErrNotFound):
		return river.JobCancel(fmt.Errorf("item %q of run %q is not in the store", j.Item, j.Run))
	case err != nil:
		return w.storeError(ctx, err)
	}
	if st.Done && (!j.Retry || st.Result == nil || st.Result.Error == "") {
		j.span.Set(tpo.A("tpo.outcome", outcomeDone))
		return nil
	}
	if len(st.Steps) != j.Step {
		j.span.Set(tpo.A("tpo.outcome", outcomeStale), tpo.A("tpo.next_step", len(st.Steps)))
		j.Step = len(st.Steps)
		return w.insert(ctx, j)
	}
	return w.advance(ctx, j, st)
}

// advance runs the item's trajectory until one more step is saved, then
// inserts the job of the next step, or finishes the item when its
// trajectory ended.
func (w *stepWorker) advance(ctx context.Context, j *stepJob, st tpo.ItemState) error {
	var (
		saved   bool
		saveErr error
	)
	t, err := w.s.r.Optimizer.Start(st.Item, tpo.Options{
		Resume: st.Steps,
		OnStep: func(ctx context.Context, s tpo.Step) error {
			saveErr = w.s.r.Store.SaveStep(ctx, j.Run, j.Item, s)
			saved = saveErr == nil
			return saveErr
		},
	})
	for err == nil && !saved && t.Next() != "" {
		err = t.Do(ctx, t.Next())
	}
	switch {
	case saveErr != nil:
		return w.storeError(ctx, fmt.Errorf("item %q: %w", j.Item, saveErr))
	case err != nil && ctx.Err() != nil:
		return w.interrupted(ctx, j.stepArgs)
	case t.Next() == "":
		return w.finish(ctx, j, st, t.Result())
	}
	// The step is saved: its successor is inserted even if ctx ended.
	j.span.Set(tpo.A("tpo.outcome", outcomeSaved))
	j.Step++
	return w.insert(context.WithoutCancel(ctx), j)
}

// finish records the item's result.
func (w *stepWorker) finish(ctx context.Context, j *stepJob, st tpo.ItemState, res tpo.Result) error {
	res.ID = st.Item.ID
	finished(j.span, res)
	if err := w.s.r.Store.FinishItem(context.WithoutCancel(ctx), w.s.run.ID, res); err != nil {
		return w.storeError(ctx, fmt.Errorf("item %q: %w", st.Item.ID, err))
	}
	st.Done, st.Result, st.Steps = true, &res, res.Steps
	w.s.finished(st, false)
	return nil
}

// insert inserts the job j, which passes on its metadata.
func (w *stepWorker) insert(ctx context.Context, j *stepJob) error {
	if err := w.s.insert(ctx, j.stepArgs, j.meta); err != nil {
		return w.storeError(ctx, err)
	}
	return nil
}

// interrupted ends a job whose context ended before its step was saved:
// the process stops (River puts the job back in the queue without counting
// a try), or the step outlived the job timeout (River tries it again).
func (w *stepWorker) interrupted(ctx context.Context, a stepArgs) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		w.s.log.Warn("a step ran longer than its job timeout and was stopped; it is tried again: give a longer lease if steps take this long",
			"item", a.Item, "step", a.Step, "timeout", w.s.r.jobTimeout(), "lease", w.s.r.lease())
	}
	return ctx.Err()
}

// storeError ends a job that could not read or write the store or the
// queue: it stops the run, as a store error stops tpo.Runner, unless the
// job was interrupted.
func (w *stepWorker) storeError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	w.s.fail(err)
	return err
}
