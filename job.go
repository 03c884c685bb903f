package tpo

import (
	"context"
	"encoding/json"
	"time"
)

// Job is work that tpo serve keeps beyond the request that asked for it: a
// response of the Responses API (stored for a later request, or computed
// in the background) or a batch. A store keeps it, so that a later
// request, another process sharing the store, or the server after a
// restart can report it.
type Job struct {
	// Kind says what the job is ("response", "batch"); IDs are unique
	// within a kind.
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Status is the job's status in its API's words ("queued",
	// "in_progress", "completed", ...).
	Status  string    `json:"status"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// Finished is when the job reached a final status; nil while it is
	// not done.
	Finished *time.Time `json:"finished,omitempty"`
	// Owner is the process that works on the job while it is not done;
	// nil when none does.
	Owner *Owner `json:"owner,omitempty"`
	// CancelRequested is when a client asked to cancel the job through a
	// process that does not run it (JobStore.RequestCancel); nil when
	// none did. The job's Owner looks for it and cancels the job; a
	// process that takes the job over from an owner that ended ends it
	// cancelled.
	CancelRequested *time.Time `json:"cancel_requested,omitempty"`
	// Data is what the server keeps of the job, as JSON (the API object,
	// what it needs to continue the job). A store keeps it byte for byte.
	Data json.RawMessage `json:"data"`
}

// JobStore keeps jobs. Implementations must be safe for concurrent use.
type JobStore interface {
	// PutJob records job, replacing the job of the same kind and ID, but
	// for a cancel requested: once a job has one, putting it again keeps
	// it (job.CancelRequested is recorded only when the job had none), so
	// that its owner's writes never lose a request made meanwhile.
	PutJob(ctx context.Context, job Job) error
	// GetJob returns a job. An unknown job is an error wrapping
	// ErrNotFound.
	GetJob(ctx context.Context, kind, id string) (Job, error)
	// ListJobs returns up to limit jobs of kind (all when limit <= 0),
	// newest first (by Created, then by ID, byte by byte, descending); when
	// after is not empty, those that come after the job with that ID. An
	// unknown after is an error wrapping ErrNotFound.
	ListJobs(ctx context.Context, kind, after string, limit int) ([]Job, error)
	// UnfinishedJobs returns the jobs of kind that are not finished and
	// whose Owner.Host is host, oldest first. Jobs without an owner are
	// never returned.
	UnfinishedJobs(ctx context.Context, kind, host string) ([]Job, error)
	// ClaimJob sets the owner of the job of kind and id to `to` (nil:
	// none) if the job is not finished and its owner is still from (the
	// same Host, PID and Started), and reports whether it did. It is a
	// compare and swap: of several processes taking over the job of an
	// owner that ended, exactly one does. The job's other fields are left
	// as they are. An unknown job is an error wrapping ErrNotFound.
	ClaimJob(ctx context.Context, kind, id string, from Owner, to *Owner) (bool, error)
	// RequestCancel records that a client asked, at `at`, to cancel the
	// job of kind and id, and returns the job as it is then. A finished
	// job, or one with a cancel requested already (the first request's
	// time is kept), is left as it is. The job's other fields are left as
	// they are. An unknown job is an error wrapping ErrNotFound.
	RequestCancel(ctx context.Context, kind, id string, at time.Time) (Job, error)
}

// JobLiveness is implemented by job stores that processes on several
// machines share (PostgreSQL), beside Liveness: the jobs of an owner that
// stopped beating can be found from any host, and taken over with
// ClaimJob. Implementations must be safe for concurrent use.
type JobLiveness interface {
	// StaleJobs returns the jobs of kind that are not finished and whose
	// owner has not beaten (Liveness.Beat) within olderThan, oldest
	// first, by the store's clock; an owner that never beat counts from
	// when it started. Jobs without an owner are never returned.
	StaleJobs(ctx context.Context, kind string, olderThan time.Duration) ([]Job, error)
}
