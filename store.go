package tpo

import (
	"context"
	"encoding/json"
	"errors"
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
