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
// task outlives the server. While tasks run, a watcher calls watch
// every interval (when watch is set).
type workers struct {
	ctx  context.Context
	stop context.CancelCauseFunc
	wg   sync.WaitGroup
	max  int // response tasks at most

	watch    func(ctx context.Context)
	interval time.Duration
	idle     chan struct{} // told when the last task ends

	mu       sync.Mutex
	closed   bool
	watching bool
	running  map[string]*task
}

type task struct {
	kind      taskKind
	cancel    context.CancelCauseFunc
	cancelled bool
	done      chan struct{}
}

// newWorkers returns workers that run at most max response tasks at
// once, and call watch (when not nil) every interval while tasks run.
func newWorkers(max int, watch func(ctx context.Context), interval time.Duration) *workers {
	ctx, stop := context.WithCancelCause(context.Background())
	return &workers{ctx: ctx, stop: stop, max: max, watch: watch, interval: interval,
		idle: make(chan struct{}, 1), running: map[string]*task{}}
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
	if w.watch != nil && !w.watching {
		w.watching = true
		w.wg.Add(1)
		go w.watchWhileBusy()
	}
	return true
}

// watchWhileBusy calls w.watch every interval until no task runs, or the
// workers stop.
func (w *workers) watchWhileBusy() {
	defer w.wg.Done()
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-w.idle:
		case <-w.ctx.Done():
		}
		w.mu.Lock()
		if len(w.running) == 0 || w.ctx.Err() != nil {
			w.watching = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		w.watch(w.ctx)
	}
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
	if len(w.running) == 0 && w.watching {
		select {
		case w.idle <- struct{}{}:
		default:
		}
	}
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
	t.cancelled = true
	return t.done, true
}

// cancelOnce cancels task id with cause unless it was cancelled before,
// and reports whether it did.
func (w *workers) cancelOnce(id string, cause error) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.running[id]
	if t == nil || t.cancelled {
		return false
	}
	t.cancel(cause)
	t.cancelled = true
	return true
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
