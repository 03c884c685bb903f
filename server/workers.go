package server

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultMaxBackground is the default of Options.MaxBackground.
const DefaultMaxBackground = 256

var (
	// errShutdown is why background work was cancelled when the server
	// shut down.
	errShutdown = errors.New("the server shut down")
	// errCancelled is why the client's cancel request cancelled a job.
	errCancelled = errors.New("cancelled by the client")
)

// taskKind says how a background task ends at shutdown: a response gets
// the shutdown timeout to finish, a batch stops at once (a restarted
// server continues it).
type taskKind int

const (
	taskResponse taskKind = iota
	taskBatch
)

// workers runs the server's background work (background responses,
// batches): one goroutine per task, each with a context that ends when
// the task is cancelled or the server shuts down (Shutdown), so that no
// task outlives the server.
type workers struct {
	ctx  context.Context
	stop context.CancelCauseFunc
	wg   sync.WaitGroup
	max  int // response tasks at most

	mu      sync.Mutex
	closed  bool
	running map[string]*task
}

type task struct {
	kind     taskKind
	cancel   context.CancelCauseFunc
	done     chan struct{}
	progress *Progress
}

func newWorkers(max int) *workers {
	ctx, stop := context.WithCancelCause(context.Background())
	return &workers{ctx: ctx, stop: stop, max: max, running: map[string]*task{}}
}

// start runs fn as task id in a goroutine of its own; it reports false
// when the server is shutting down, when task id runs already, or when
// max response tasks run.
func (w *workers) start(id string, kind taskKind, fn func(ctx context.Context)) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.running[id] != nil || kind == taskResponse && w.count(taskResponse) >= w.max {
		return false
	}
	ctx, cancel := context.WithCancelCause(w.ctx)
	t := &task{kind: kind, cancel: cancel, done: make(chan struct{})}
	w.running[id] = t
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(t.done)
		defer cancel(nil)
		defer w.remove(id)
		fn(ctx)
	}()
	return true
}

func (w *workers) count(kind taskKind) int {
	n := 0
	for _, t := range w.running {
		if t.kind == kind {
			n++
		}
	}
	return n
}

func (w *workers) remove(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.running, id)
}

// cancel cancels task id with cause, and returns a channel closed when
// it has ended; ok is false when no such task runs.
func (w *workers) cancel(id string, cause error) (done <-chan struct{}, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.running[id]
	if t == nil {
		return nil, false
	}
	t.cancel(cause)
	return t.done, true
}

// setProgress records the latest progress of task id.
func (w *workers) setProgress(id string, p Progress) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t := w.running[id]; t != nil {
		t.progress = &p
	}
}

// progress returns the latest progress of task id, if it runs here.
func (w *workers) progress(id string) (Progress, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t := w.running[id]; t != nil && t.progress != nil {
		return *t.progress, true
	}
	return Progress{}, false
}

// shutdown starts no more tasks, stops the batches at once, waits for the
// responses to finish until ctx ends, then cancels them, and returns once
// every task has ended (and recorded how).
func (w *workers) shutdown(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	for _, t := range w.running {
		if t.kind == taskBatch {
			t.cancel(errShutdown)
		}
	}
	w.mu.Unlock()
	done := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	w.stop(errShutdown)
	<-done
	return ctx.Err()
}

// waitDone waits up to d for done.
func waitDone(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
