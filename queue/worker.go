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
	a := job.Args
	st, err := w.s.r.Store.GetItem(ctx, a.Run, a.Item)
	switch {
	case errors.Is(err, tpo.ErrNotFound):
		return river.JobCancel(fmt.Errorf("item %q of run %q is not in the store", a.Item, a.Run))
	case err != nil:
		return w.storeError(ctx, err)
	}
	if st.Done && (!a.Retry || st.Result == nil || st.Result.Error == "") {
		return nil
	}
	if len(st.Steps) != a.Step {
		a.Step = len(st.Steps)
		return w.insert(ctx, a)
	}
	return w.advance(ctx, a, st)
}

// advance runs the item's trajectory until one more step is saved, then
// inserts the job of the next step, or finishes the item when its
// trajectory ended.
func (w *stepWorker) advance(ctx context.Context, a stepArgs, st tpo.ItemState) error {
	var (
		saved   bool
		saveErr error
	)
	t, err := w.s.r.Optimizer.Start(st.Item, tpo.Options{
		Resume: st.Steps,
		OnStep: func(ctx context.Context, s tpo.Step) error {
			saveErr = w.s.r.Store.SaveStep(ctx, a.Run, a.Item, s)
			saved = saveErr == nil
			return saveErr
		},
	})
	for err == nil && !saved && t.Next() != "" {
		err = t.Do(ctx, t.Next())
	}
	switch {
	case saveErr != nil:
		return w.storeError(ctx, fmt.Errorf("item %q: %w", a.Item, saveErr))
	case err != nil && ctx.Err() != nil:
		return w.interrupted(ctx, a)
	case t.Next() == "":
		return w.finish(ctx, st, t.Result())
	}
	// The step is saved: its successor is inserted even if ctx ended.
	a.Step++
	return w.insert(context.WithoutCancel(ctx), a)
}

// finish records the item's result.
func (w *stepWorker) finish(ctx context.Context, st tpo.ItemState, res tpo.Result) error {
	res.ID = st.Item.ID
	if err := w.s.r.Store.FinishItem(context.WithoutCancel(ctx), w.s.run.ID, res); err != nil {
		return w.storeError(ctx, fmt.Errorf("item %q: %w", st.Item.ID, err))
	}
	st.Done, st.Result, st.Steps = true, &res, res.Steps
	w.s.finished(st, false)
	return nil
}

// insert inserts the job a.
func (w *stepWorker) insert(ctx context.Context, a stepArgs) error {
	if err := w.s.insert(ctx, a); err != nil {
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
