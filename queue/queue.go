// Package queue shares the items of a dataset run among processes: the same
// `tpo run --store postgres://... --data FILE` command started on several
// machines, or several times on one. It keeps its jobs in the run store's
// PostgreSQL database with River (riverqueue/river), which claims them,
// leases them, retries them and rescues those of a process that died.
//
// # Jobs
//
// Each step of an item is one job. Job (item, k) loads the item's saved
// steps, runs its trajectory until step k is saved, and inserts job
// (item, k+1), or finishes the item when its trajectory ends there. A job is
// a few model calls long, so that a lease can be minutes where an item takes
// hours, and a process that dies loses only its steps in flight.
//
// A job whose step is not the item's next one (the store holds more steps:
// a stale copy, or a retry of a job whose process died after saving)
// computes nothing: it inserts the job of the item's next step. Jobs are
// unique by their arguments among the jobs not yet finished, so that every
// process can insert the jobs of every unfinished item as it starts, and an
// item has one live job at a time: it is worked on by one process at a time.
//
// # Queues, leases and rescue
//
// The jobs of a run go to a queue of its own (QueueName), worked only by
// processes of that run, which have its settings and models. A process works
// at most Concurrency jobs at once, the next steps of items under way first.
// A job runs at most 90% of the lease (River's JobTimeout): a step that
// takes longer is cancelled and tried again. A job still running after the
// lease (River's RescueStuckJobsAfter) belongs to a process that died:
// River's rescuer, run by one of the processes (River's leader), makes it
// available again at its next round (every 30 seconds), and another process
// continues the item from its last saved step. Give every process of a run
// the same lease.
//
// # Traces
//
// When the Optimizer has a Tracer, an item is one trace across processes:
// the process that enqueues it starts a short tpo.item span and keeps its
// W3C trace context in the metadata of the item's jobs, and every job has
// a tpo.item.step span under it, with the step's stages below.
//
// # Ending
//
// Run returns when no job of the run is left (every item finished, or some
// given up after maxAttempts tries), having counted what it and the others
// did. When ctx ends, it stops at once: its jobs in flight are cancelled and
// put back in the queue without counting a try, so that the other processes,
// or the same command run again, continue them at once.
package queue

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/tpoproject/tpo"
)

// Defaults of Runner fields left zero.
const (
	DefaultLease = 10 * time.Minute
	DefaultPoll  = time.Second
)

// maxAttempts is how many times a step's job is tried (a store error, a
// step longer than the job timeout, a rescue after its process died) before
// River gives it up; the item is then left unfinished, to be retried by the
// next start of the command.
const maxAttempts = 10

// fetchCooldown is the least time between two fetches of jobs by a process.
const fetchCooldown = 20 * time.Millisecond

// Store is what a Runner needs of the run store: the writes of the
// optimizer, an item's saved state, and the counts of a run.
type Store interface {
	tpo.Store
	GetItem(ctx context.Context, runID, itemID string) (tpo.ItemState, error)
	GetRun(ctx context.Context, runID string) (tpo.RunSummary, error)
	ListItems(ctx context.Context, runID string, f tpo.ItemFilter) ([]tpo.ItemSummary, int, error)
}

// Runner optimizes the items of a dataset run together with the other
// processes that run it on the same store, as tpo.Runner does alone.
type Runner struct {
	Optimizer *tpo.Optimizer
	Store     Store
	// Pool is the connection pool of the store's database, where River
	// keeps its tables (created or upgraded as needed).
	Pool *pgxpool.Pool
	// Concurrency is the number of steps this process works on at once
	// (default 1).
	Concurrency int
	// Lease is how long a step's job may run before River takes its
	// process for dead and gives the item to another (default DefaultLease).
	Lease  time.Duration
	Logger *slog.Logger
	// OnItem, if set, is called once for every item of the input as it
	// completes here, for every item finished by an earlier run (skipped),
	// and, when the run is complete, for the items the other processes
	// finished (with only the seq, id, error and score of their state). It
	// may be called from several goroutines at once.
	OnItem func(st tpo.ItemState, skipped bool)
	// OnProgress, if set, is called every Poll with the number of the run's
	// items finished, by any process.
	OnProgress func(finished int)
	// OnNote, if set, receives what a person watching should know, such as
	// why the process waits with nothing to do.
	OnNote func(msg string)
	// Poll is how often the runner looks whether the run is complete
	// (default DefaultPoll).
	Poll time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// QueueName returns the name of the River queue of a run's jobs.
func QueueName(runID string) string {
	name := "tpo_" + runID
	if queueNameRE.MatchString(name) && len(name) <= 64 {
		return name
	}
	h := fnv.New64a()
	h.Write([]byte(runID))
	return fmt.Sprintf("tpo_%x", h.Sum64())
}

// queueNameRE is River's rule for queue names.
var queueNameRE = regexp.MustCompile(`^[a-z0-9]+(?:[_|\-]?[a-z0-9]+)*$`)

// Run optimizes every input of src as part of run, which it opens in the
// store (resuming it when the store already has a run with the same key),
// sharing the items with the other processes that run it. It returns when
// every item of the run among src's inputs is finished, by any process; when
// src or the store fails; or when ctx is cancelled, its steps in flight then
// being left to the others or to a later run.
func (r *Runner) Run(ctx context.Context, run tpo.Run, src tpo.Source) (tpo.Run, tpo.RunCounts, error) {
	log := r.logger()
	run, created, err := r.Store.OpenRun(ctx, run)
	if err != nil {
		return run, tpo.RunCounts{}, fmt.Errorf("opening run: %w", err)
	}
	if created {
		log.Info("run created", "run", run.ID)
	} else {
		log.Info("resuming run", "run", run.ID)
	}
	if err := migrate(ctx, r.Pool, log); err != nil {
		return run, tpo.RunCounts{}, err
	}
	s := &session{r: r, run: run, queue: QueueName(run.ID), tally: newTally(r.OnItem), fatal: make(chan error, 1), log: log}
	if err := s.start(ctx); err != nil {
		return run, tpo.RunCounts{}, err
	}
	err = s.work(ctx, src)
	stopErr := s.stop(ctx)
	if err == nil {
		err = stopErr
	}
	if err != nil {
		return run, s.tally.counts(), err
	}
	sum, err := s.finish(ctx)
	if err != nil {
		return run, sum, err
	}
	if err := r.Store.FinishRun(context.WithoutCancel(ctx), run.ID, r.now()); err != nil {
		return run, sum, fmt.Errorf("finishing run: %w", err)
	}
	return run, sum, nil
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) lease() time.Duration {
	if r.Lease > 0 {
		return r.Lease
	}
	return DefaultLease
}

// jobTimeout is how long one step's job may run: 90% of the lease, so that
// a live process gives a step up before River takes it for dead.
func (r *Runner) jobTimeout() time.Duration {
	return r.lease() - r.lease()/10
}

func (r *Runner) note(msg string) {
	if r.OnNote != nil {
		r.OnNote(msg)
	}
}

// session is one call of Run: the River client working the run's queue.
type session struct {
	r      *Runner
	run    tpo.Run
	queue  string
	client *river.Client[pgx.Tx]
	worker *stepWorker
	tally  *tally
	fatal  chan error // the first store error of a job
	log    *slog.Logger
}

// start makes the River client and starts it working the run's queue.
func (s *session) start(ctx context.Context) error {
	s.worker = &stepWorker{s: s}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, s.worker); err != nil {
		return fmt.Errorf("job queue: %w", err)
	}
	c, err := river.NewClient(riverpgxv5.New(s.r.Pool), &river.Config{
		Queues:               map[string]river.QueueConfig{s.queue: {MaxWorkers: max(s.r.Concurrency, 1)}},
		Workers:              workers,
		JobTimeout:           s.r.jobTimeout(),
		RescueStuckJobsAfter: s.r.lease(),
		MaxAttempts:          maxAttempts,
		RetryPolicy:          retryPolicy{},
		// A step's next job is fetched at most this long after it is
		// queued (River's default, 100 ms, shows when steps are short).
		FetchCooldown: fetchCooldown,
		Logger:        s.log,
	})
	if err != nil {
		return fmt.Errorf("job queue: %w", err)
	}
	s.client = c
	// The client stops when Run says so, not when ctx ends: then its jobs
	// are cancelled and put back in the queue.
	if err := c.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("job queue: start: %w", err)
	}
	return nil
}

// stop stops the client, cancelling the jobs still running, which River
// puts back in the queue.
func (s *session) stop(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := s.client.StopAndCancel(sctx); err != nil {
		return fmt.Errorf("job queue: stop: %w", err)
	}
	return nil
}

// work enqueues the inputs, then waits until no job of the run is left.
func (s *session) work(ctx context.Context, src tpo.Source) error {
	if err := s.enqueue(ctx, src); err != nil {
		return err
	}
	return s.wait(ctx)
}

// fail reports a job's store error, which stops the run.
func (s *session) fail(err error) {
	select {
	case s.fatal <- err:
	default:
	}
}

// liveStates are the states of a job not yet finished.
var liveStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

// retryPolicy retries a failed job after 1, 2, 4, ... seconds, at most a
// minute: a job fails for a store error, a step longer than the job
// timeout, or a rescue, none of which a long wait helps.
type retryPolicy struct{}

func (retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	d := time.Minute
	if n := job.Attempt - 1; n < 6 {
		d = time.Duration(1<<max(n, 0)) * time.Second
	}
	return time.Now().Add(d)
}

// tally counts what happened to the inputs: the items finished here, or
// before (skipped), and at the end those finished elsewhere. It reports
// each once to OnItem, while the item is among the inputs (the worker may
// finish items beyond them, queued by a process with a larger --limit).
type tally struct {
	onItem func(st tpo.ItemState, skipped bool)
	mu     sync.Mutex
	items  int // inputs read so far
	seen   map[string]*counted
}

// counted is an item the tally knows finished.
type counted struct {
	st                        tpo.ItemState
	skipped, elsewhere, shown bool
}

func newTally(onItem func(tpo.ItemState, bool)) *tally {
	return &tally{onItem: onItem, seen: map[string]*counted{}}
}

// input counts one more input read.
func (t *tally) input() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.items++
}

// inputs returns the number of inputs read so far.
func (t *tally) inputs() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.items
}

// add records a finished item unless known, and reports it if it is
// among the inputs read.
func (t *tally) add(st tpo.ItemState, skipped, elsewhere bool) {
	t.mu.Lock()
	c := t.seen[st.Item.ID]
	if c == nil {
		c = &counted{st: st, skipped: skipped, elsewhere: elsewhere}
		t.seen[st.Item.ID] = c
	}
	show := !c.shown && st.Seq < t.items
	c.shown = c.shown || show
	t.mu.Unlock()
	if show && t.onItem != nil {
		t.onItem(c.st, c.skipped)
	}
}

// flush reports the items among the inputs not reported yet (finished
// while the inputs were being read).
func (t *tally) flush() {
	t.mu.Lock()
	var todo []*counted
	for _, c := range t.seen {
		if !c.shown && c.st.Seq < t.items {
			c.shown = true
			todo = append(todo, c)
		}
	}
	t.mu.Unlock()
	for _, c := range todo {
		if t.onItem != nil {
			t.onItem(c.st, c.skipped)
		}
	}
}

// counts counts the items among the inputs.
func (t *tally) counts() tpo.RunCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	sum := tpo.RunCounts{Items: t.items}
	for _, c := range t.seen {
		if c.st.Seq >= t.items {
			continue
		}
		switch {
		case c.skipped:
			sum.Skipped++
		case c.st.Result != nil && c.st.Result.Error != "":
			sum.Failed++
		default:
			sum.Done++
		}
		if c.elsewhere {
			sum.Elsewhere++
		}
	}
	return sum
}

// errStopped says that the River client stopped on its own.
var errStopped = errors.New("job queue: the River client stopped")
