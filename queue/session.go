package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tpoproject/tpo"
)

// insertBatch is how many jobs one insert sends.
const insertBatch = 500

// enqueue records every input in the store and inserts the job of the next
// step of each unfinished one; those whose job is live already are left as
// they are. Items finished successfully before are counted as skipped, and
// inputs that could not be read are recorded as failed, as tpo.Runner does.
func (s *session) enqueue(ctx context.Context, src tpo.Source) error {
	var batch []river.InsertManyParams
	spans := traced{}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := s.client.InsertMany(ctx, batch)
		batch = batch[:0]
		spans.end(res)
		if err != nil {
			return fmt.Errorf("job queue: insert: %w", err)
		}
		return nil
	}
	for seq := 0; ; seq++ {
		in, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading input: %w", err)
		}
		s.tally.input()
		a, ok, err := s.record(ctx, seq, in)
		if err != nil {
			return err
		}
		if ok {
			span, meta := s.startItem(ctx, a)
			spans.add(a.Item, span)
			batch = append(batch, river.InsertManyParams{Args: a, InsertOpts: s.insertOpts(a, meta)})
		}
		if len(batch) >= insertBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// record starts an input's item in the store and returns the job of its
// next step, unless it has none to do.
func (s *session) record(ctx context.Context, seq int, in tpo.Input) (stepArgs, bool, error) {
	st, err := s.r.Store.StartItem(ctx, s.run.ID, seq, in.Item)
	if err != nil {
		return stepArgs{}, false, fmt.Errorf("item %q: %w", in.Item.ID, err)
	}
	failed := st.Done && st.Result != nil && st.Result.Error != ""
	switch {
	case st.Done && !failed:
		s.finished(st, true)
		return stepArgs{}, false, nil
	case in.Err != nil:
		res := tpo.Result{ID: in.Item.ID, Prompt: in.Item.Prompt(), Messages: in.Item.Messages, Error: in.Err.Error()}
		if err := s.r.Store.FinishItem(context.WithoutCancel(ctx), s.run.ID, res); err != nil {
			return stepArgs{}, false, fmt.Errorf("item %q: %w", in.Item.ID, err)
		}
		st.Done, st.Result = true, &res
		s.finished(st, false)
		return stepArgs{}, false, nil
	}
	// A failed item is tried again from its last saved step.
	return stepArgs{Run: s.run.ID, Item: st.Item.ID, Seq: seq, Step: len(st.Steps), Retry: failed}, true, nil
}

// finished counts an item finished here, or before (skipped).
func (s *session) finished(st tpo.ItemState, skipped bool) {
	s.tally.add(st, skipped, false)
}

// uniqueStates are the states among which a job's arguments are unique:
// those of a job not finished. A finished job does not stop the same one
// from being inserted again: it finds the item further on and does nothing.
var uniqueStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

// insertOpts are the options of a step's job: the run's queue, unique by
// its arguments among live jobs, and a higher priority for later steps, so
// that items under way finish before new ones start (as tpo.Runner keeps
// Concurrency items at a time) rather than every item advancing together;
// and its metadata, which is not part of what makes it unique.
func (s *session) insertOpts(a stepArgs, meta jobMeta) *river.InsertOpts {
	return &river.InsertOpts{
		Queue:      s.queue,
		Priority:   max(1, 4-a.Step),
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: uniqueStates},
		Metadata:   meta.encode(),
	}
}

// insert inserts the job a with meta, unless the same job is live.
func (s *session) insert(ctx context.Context, a stepArgs, meta jobMeta) error {
	if _, err := s.client.Insert(ctx, a, s.insertOpts(a, meta)); err != nil {
		return fmt.Errorf("job queue: insert the job of item %q, step %d: %w", a.Item, a.Step, err)
	}
	return nil
}

// wait returns when no job of the run's inputs is left, on a job's store
// error, or when ctx ends.
func (s *session) wait(ctx context.Context) error {
	tick := time.NewTicker(s.r.poll())
	defer tick.Stop()
	waiting := false
	for {
		live, elsewhere, err := s.live(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			return err
		case live == 0:
			return nil
		}
		s.progress(ctx)
		// Say once why a process with nothing to do waits.
		idle := elsewhere == live && s.worker.running.Load() == 0
		if idle && !waiting {
			s.r.note(fmt.Sprintf("waiting for %s that other processes hold (if a process died, its items continue here once their lease, %v, has run out)",
				plural(live, "item", "items"), s.r.lease()))
		}
		waiting = idle
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-s.fatal:
			return err
		case <-s.client.Stopped():
			return errStopped
		case <-tick.C:
		}
	}
}

func (r *Runner) poll() time.Duration {
	if r.Poll > 0 {
		return r.Poll
	}
	return DefaultPoll
}

// maxListed bounds the jobs live reads: it only needs to know whether
// there are any, and how many while they are few.
const maxListed = 1000

// live counts the items of this process's inputs that have live jobs (as
// far as the first maxListed jobs tell), and those of them whose jobs all
// run in other processes. (A process that dies may leave two jobs of an
// item running: one it finished without River hearing of it, and the next.)
func (s *session) live(ctx context.Context) (live, elsewhere int, err error) {
	p := river.NewJobListParams().Queues(s.queue).States(liveStates...).First(maxListed).
		Where("(args->>'seq')::int < @items", river.NamedArgs{"items": s.tally.inputs()})
	res, err := s.client.JobList(ctx, p)
	if err != nil {
		return 0, 0, fmt.Errorf("job queue: list the run's jobs: %w", err)
	}
	away := map[string]bool{} // item → whether all its live jobs run elsewhere
	for _, j := range res.Jobs {
		var a stepArgs
		if err := json.Unmarshal(j.EncodedArgs, &a); err != nil {
			return 0, 0, fmt.Errorf("job queue: job %d: %w", j.ID, err)
		}
		prev, seen := away[a.Item]
		away[a.Item] = (!seen || prev) && j.State == rivertype.JobStateRunning &&
			len(j.AttemptedBy) > 0 && j.AttemptedBy[len(j.AttemptedBy)-1] != s.client.ID()
	}
	for _, a := range away {
		if a {
			elsewhere++
		}
	}
	return len(away), elsewhere, nil
}

// progress reports how many of the run's items are finished.
func (s *session) progress(ctx context.Context) {
	if s.r.OnProgress == nil {
		return
	}
	sum, err := s.r.Store.GetRun(ctx, s.run.ID)
	if err != nil {
		s.log.Debug("reading the run's progress", "run", s.run.ID, "err", err)
		return
	}
	s.r.OnProgress(sum.Done + sum.Failed)
}

// finish counts the items of the inputs that the other processes finished,
// and returns an error for those that no process could finish.
func (s *session) finish(ctx context.Context) (tpo.RunCounts, error) {
	items, _, err := s.r.Store.ListItems(ctx, s.run.ID, tpo.ItemFilter{})
	if err != nil {
		return s.tally.counts(), fmt.Errorf("counting the run's items: %w", err)
	}
	s.tally.flush()
	inputs := s.tally.inputs()
	var unfinished []string
	for _, it := range items {
		if it.Seq >= inputs {
			continue // beyond this process's inputs (a smaller --limit)
		}
		if it.Status == tpo.StatusPending {
			unfinished = append(unfinished, it.ID)
			continue
		}
		st := tpo.ItemState{Seq: it.Seq, Item: tpo.Item{ID: it.ID}, Done: true, Result: &tpo.Result{ID: it.ID, Error: it.Error}}
		if it.Score != nil {
			st.Result.Score = *it.Score
		}
		s.tally.add(st, false, true)
	}
	sum := s.tally.counts()
	if len(unfinished) > 0 {
		return sum, s.unfinished(ctx, unfinished)
	}
	return sum, nil
}

// unfinished says which items were given up, and why.
func (s *session) unfinished(ctx context.Context, ids []string) error {
	why := ""
	p := river.NewJobListParams().Queues(s.queue).States(rivertype.JobStateDiscarded, rivertype.JobStateCancelled).
		OrderBy(river.JobListOrderByFinalizedAt, river.SortOrderDesc).First(1)
	if res, err := s.client.JobList(ctx, p); err == nil && len(res.Jobs) > 0 {
		j := res.Jobs[0]
		if n := len(j.Errors); n > 0 {
			why = fmt.Sprintf("; the last error, after %s: %s", plural(j.Attempt, "try", "tries"), j.Errors[n-1].Error)
		}
	}
	list := strings.Join(ids[:min(len(ids), 3)], ", ")
	if len(ids) > 3 {
		list += ", ..."
	}
	return fmt.Errorf("%s of the run could not be finished (%s)%s; run the same command again to retry them",
		plural(len(ids), "item", "items"), list, why)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
