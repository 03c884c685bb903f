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

	type job struct {
		seq int
		in  Input
	}
	workers := max(rn.Concurrency, 1)
	jobs := make(chan job)
	var (
		mu    sync.Mutex
		sum   RunCounts
		fatal error
	)
	setFatal := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if fatal == nil {
			fatal = err
		}
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				st, skipped, err := rn.item(ctx, run.ID, j.seq, j.in, now)
				if err != nil {
					if ctx.Err() == nil {
						setFatal(err)
						cancel()
					}
					continue
				}
				mu.Lock()
				switch {
				case skipped:
					sum.Skipped++
				case st.Result != nil && st.Result.Error != "":
					sum.Failed++
				default:
					sum.Done++
				}
				mu.Unlock()
				if rn.OnItem != nil {
					rn.OnItem(st, skipped)
				}
			}
		}()
	}

	// Feed the workers in input order; the loop ends at EOF, on a read
	// error or when ctx is cancelled.
	seq := 0
	for {
		in, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			setFatal(fmt.Errorf("reading input: %w", err))
			cancel()
			break
		}
		select {
		case jobs <- job{seq: seq, in: in}:
			seq++
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()

	mu.Lock()
	sum.Items = seq
	err = fatal
	mu.Unlock()
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
