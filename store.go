package tpo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is wrapped by store errors for a run or item that does not exist.
var ErrNotFound = errors.New("not found")

// Run describes one optimization run: a set of items optimized with one
// configuration. A dataset run from `tpo run` and each request answered by
// `tpo serve` are runs.
type Run struct {
	ID string `json:"id"`
	// Key identifies the run's configuration and input, so that running the
	// same command again finds the same run and resumes it. Empty for runs
	// that are never resumed (a served request).
	Key string `json:"key,omitempty"`
	// Kind is "run" for `tpo run` and "serve" for `tpo serve`.
	Kind string `json:"kind"`
	// Source names the input (a file path, "stdin", "argument", "api").
	Source string `json:"source"`
	// Config is the settings the run was made with, as JSON.
	Config    json.RawMessage `json:"config"`
	Created   time.Time       `json:"created"`
	Finished  *time.Time      `json:"finished,omitempty"`
	ItemCount int             `json:"item_count"`
	// Owner is the process that created the run and writes it, when it
	// said so (tpo serve does): a store records it with a new run. Nil
	// otherwise.
	Owner *Owner `json:"owner,omitempty"`
	// Interrupted is when the run was found left unfinished by an Owner
	// that had ended (see Interrupter); nil otherwise. An interrupted run
	// is not finished: Finished stays nil.
	Interrupted *time.Time `json:"interrupted,omitempty"`
}

// Owner identifies the process that writes a run, so that a run left
// unfinished by a process that ended (killed, crashed) can be told from
// one still being written, also by a process on another machine sharing
// the store.
type Owner struct {
	// Host is the name of the machine the process runs on.
	Host string `json:"host"`
	// PID is the process's id on Host.
	PID int `json:"pid"`
	// Started is when the process started: with PID, it tells the process
	// from a later one that got the same id.
	Started time.Time `json:"started"`
}

// String describes the owner for messages: "pid 123 on gpu-box".
func (o Owner) String() string { return fmt.Sprintf("pid %d on %s", o.PID, o.Host) }

// SameProcess reports whether o and p name the same process: the same
// Host, PID and Started (compared as instants, whatever their location).
func (o Owner) SameProcess(p Owner) bool {
	return o.Host == p.Host && o.PID == p.PID && o.Started.Equal(p.Started)
}

// ItemState is what a store knows of one item of a run.
type ItemState struct {
	Seq   int    `json:"seq"` // position in the input, from 0
	Item  Item   `json:"item"`
	Steps []Step `json:"steps"` // the steps finished so far
	// Done is true once the item finished, successfully or not; Result is
	// then its final result.
	Done   bool    `json:"done"`
	Result *Result `json:"result,omitempty"`
}

// Store persists runs as they progress, so that an interrupted run can be
// resumed and every answer inspected later. Implementations must be safe for
// concurrent use.
type Store interface {
	// OpenRun returns the run whose Key equals run.Key when run.Key is not
	// empty and such a run exists; otherwise it creates run (assigning an ID
	// when run.ID is empty) and returns it. created reports which.
	OpenRun(ctx context.Context, run Run) (r Run, created bool, err error)
	// StartItem records an item of a run at position seq, unless already
	// recorded, and returns its state (with any steps saved before).
	StartItem(ctx context.Context, runID string, seq int, item Item) (ItemState, error)
	// SaveStep records a finished step of an item. Saving a step number that
	// is already saved replaces it.
	SaveStep(ctx context.Context, runID, itemID string, step Step) error
	// FinishItem records an item's final result (res.ID names the item).
	FinishItem(ctx context.Context, runID string, res Result) error
	// FinishRun marks the run finished.
	FinishRun(ctx context.Context, runID string, at time.Time) error
}

// Interrupter is implemented by stores that can mark the runs a process
// left unfinished when it ended without finishing them (killed, crashed),
// so that they do not look in progress forever. tpo serve uses it when it
// starts: it lists the runs of owners on its own host, and interrupts
// those whose owner no longer runs. Implementations must be safe for
// concurrent use.
type Interrupter interface {
	// UnfinishedRuns returns the runs whose Owner.Host is host that are
	// neither finished nor interrupted, oldest first. Runs without an
	// owner are never returned.
	UnfinishedRuns(ctx context.Context, host string) ([]Run, error)
	// InterruptRun marks run runID interrupted at `at`, and finishes each
	// of its items that is not finished with a Result whose Error is
	// reason (the steps saved are kept), so that they count as failed. A
	// run finished or interrupted meanwhile is left as it is: InterruptRun
	// then reports false. Both changes are made at once, or neither. An
	// unknown run is an error wrapping ErrNotFound.
	InterruptRun(ctx context.Context, runID string, at time.Time, reason string) (bool, error)
}

// Liveness is implemented by stores that processes on several machines
// share (PostgreSQL): a process that owns runs beats regularly, and
// another one interrupts the runs of an owner that stopped beating, on any
// host. Implementations must be safe for concurrent use.
type Liveness interface {
	// Beat records that owner is alive now.
	Beat(ctx context.Context, owner Owner) error
	// StaleRuns returns the runs, neither finished nor interrupted, whose
	// owner has not beaten within olderThan (an owner that never beat
	// counts from when it started). Runs without an owner are never
	// returned.
	StaleRuns(ctx context.Context, olderThan time.Duration) ([]Run, error)
}
