package tpo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Input is one entry read from a dataset.
type Input struct {
	Item Item
	// Err, when set, says the entry could not be read (a malformed line, a
	// missing field). The runner records it as a failed item and goes on.
	Err error
}

// Source yields a run's inputs in order. Next returns io.EOF after the last
// one; any other error stops the run.
type Source interface {
	Next() (Input, error)
}

// Runner optimizes every item of a source, keeping the run's state in a
// store so that an interrupted run resumes where it stopped: items that
// finished successfully are not recomputed, unfinished and failed items
// continue from their last saved step.
type Runner struct {
	Optimizer *Optimizer
	Store     Store
	// Concurrency is the number of items optimized at once (default 1).
	Concurrency int
	Logger      *slog.Logger
	// OnEvent, if set, receives every optimizer event. It is called from
	// several goroutines at once.
	OnEvent func(Event)
	// OnItem, if set, is called once for every item as it completes, from
	// several goroutines at once. skipped is true for items finished by an
	// earlier run.
	OnItem func(st ItemState, skipped bool)
	// Opened, if set, is called with the run once it is open in the
	// store, before any input is read: an error from it ends Run at once,
	// with nothing done, and is returned as it is (tpo run claims the run
	// there, and refuses it when another process works on it).
	Opened func(ctx context.Context, run Run) error
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// RunCounts counts what a call of Runner.Run did.
type RunCounts struct {
	Items   int // inputs read
	Done    int // optimized now, successfully
	Failed  int // failed now
	Skipped int // finished successfully by an earlier run
	// Elsewhere counts the items of Done and Failed that other processes
	// sharing the run finished meanwhile (see package queue); Runner
	// works alone and leaves it 0.
	Elsewhere int
}

// Run optimizes every input of src as part of run, which it opens in the
// store (resuming it when the store already has a run with the same key).
// It returns when every input is done, when src fails, or when ctx is
// cancelled; items in flight are then left unfinished, to be resumed.
func (rn *Runner) Run(ctx context.Context, run Run, src Source) (Run, RunCounts, error) {
	log := rn.Logger
	if log == nil {
		log = slog.Default()
	}
	now := rn.Now
	if now == nil {
		now = time.Now
	}
	run, created, err := rn.Store.OpenRun(ctx, run)
	if err != nil {
		return run, RunCounts{}, fmt.Errorf("opening run: %w", err)
	}
	if created {
		log.Info("run created", "run", run.ID)
	} else {
		log.Info("resuming run", "run", run.ID)
	}
	if rn.Opened != nil {
		if err := rn.Opened(ctx, run); err != nil {
			return run, RunCounts{}, err
		}
	}

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := &tally{cancel: cancel}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range max(rn.Concurrency, 1) {
		wg.Go(func() {
			for j := range jobs {
				rn.work(ctx, run.ID, j, t, now)
			}
		})
	}
	items := feed(ctx, src, jobs, t)
	close(jobs)
	wg.Wait()

	sum, err := t.sum, t.fatal
	sum.Items = items
	if err == nil {
		err = parent.Err()
	}
	if err != nil {
		return run, sum, err
	}
	if err := rn.Store.FinishRun(context.WithoutCancel(ctx), run.ID, now()); err != nil {
		return run, sum, fmt.Errorf("finishing run: %w", err)
	}
	return run, sum, nil
}

// job is one input of a run, numbered in input order.
type job struct {
	seq int
	in  Input
}

// tally is what the workers of a run share: the counts, and the first
// error that stops the run (which cancels the others).
type tally struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	sum    RunCounts
	fatal  error
}

func (t *tally) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fatal == nil {
		t.fatal = err
	}
	t.cancel()
}

func (t *tally) count(st ItemState, skipped bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case skipped:
		t.sum.Skipped++
	case st.Result != nil && st.Result.Error != "":
		t.sum.Failed++
	default:
		t.sum.Done++
	}
}

// work optimizes one input of the run and counts it.
func (rn *Runner) work(ctx context.Context, runID string, j job, t *tally, now func() time.Time) {
	st, skipped, err := rn.item(ctx, runID, j.seq, j.in, now)
	if err != nil {
		if ctx.Err() == nil {
			t.fail(err)
		}
		return
	}
	t.count(st, skipped)
	if rn.OnItem != nil {
		rn.OnItem(st, skipped)
	}
}

// feed sends the inputs of src to jobs in input order, until EOF, a read
// error (which fails the run) or the end of ctx. It returns how many it
// sent.
func feed(ctx context.Context, src Source, jobs chan<- job, t *tally) int {
	seq := 0
	for ctx.Err() == nil {
		in, err := src.Next()
		if errors.Is(err, io.EOF) {
			return seq
		}
		if err != nil {
			t.fail(fmt.Errorf("reading input: %w", err))
			return seq
		}
		select {
		case jobs <- job{seq: seq, in: in}:
			seq++
		case <-ctx.Done():
		}
	}
	return seq
}

// item optimizes one input. It returns an error only for store failures or
// cancellation; a failed optimization is recorded and returned in st.
func (rn *Runner) item(ctx context.Context, runID string, seq int, in Input, now func() time.Time) (st ItemState, skipped bool, err error) {
	st, err = rn.Store.StartItem(ctx, runID, seq, in.Item)
	if err != nil {
		return st, false, fmt.Errorf("item %q: %w", in.Item.ID, err)
	}
	if st.Done && st.Result != nil && st.Result.Error == "" {
		return st, true, nil
	}
	var res Result
	if in.Err != nil {
		res = Result{ID: in.Item.ID, Prompt: in.Item.Prompt(), Messages: in.Item.Messages, Error: in.Err.Error()}
	} else {
		var oerr error
		res, oerr = rn.Optimizer.Optimize(ctx, in.Item, Options{
			Resume:  st.Steps,
			OnEvent: rn.OnEvent,
			OnStep: func(ctx context.Context, s Step) error {
				return rn.Store.SaveStep(context.WithoutCancel(ctx), runID, in.Item.ID, s)
			},
		})
		if oerr != nil && ctx.Err() != nil {
			// Interrupted: leave the item unfinished so that it resumes.
			return st, false, ctx.Err()
		}
	}
	res.ID = in.Item.ID
	if err := rn.Store.FinishItem(context.WithoutCancel(ctx), runID, res); err != nil {
		return st, false, fmt.Errorf("item %q: %w", in.Item.ID, err)
	}
	st.Done, st.Result, st.Steps = true, &res, res.Steps
	return st, false, nil
}
