package tpo

import (
	"context"
	"time"
)

// RunClaim says which process works on a run, and since when, so that a
// second process started on the same run can refuse instead of computing
// every item again.
type RunClaim struct {
	// Owner is the process that holds the claim.
	Owner Owner `json:"owner"`
	// Token tells one claim from another, also of the same process; a
	// claim has one, never empty.
	Token string `json:"token"`
	// Since is when the claim was made, by its process's clock.
	Since time.Time `json:"since"`
}

// Held reports whether c is a claim: the zero RunClaim is none.
func (c RunClaim) Held() bool { return c.Token != "" }

// RunClaimer is implemented by stores that let one process at a time claim
// a run (tpo run claims the run it works on). Implementations must be safe
// for concurrent use, also by processes sharing the store.
type RunClaimer interface {
	// ClaimRun makes c the claim of run runID if the run has no claim, or
	// if the token of its claim is prev (a claim to take over; "" when
	// there is none to). It is a compare and swap: of several processes
	// claiming a run at once, or taking over the same claim, exactly one
	// does. It
	// returns the run's claim afterwards, as far as it can tell (c when
	// ok; the zero RunClaim if the claim that stood in the way was
	// released meanwhile), and whether it has c's token: claiming again,
	// with prev "", a run one holds succeeds and leaves the claim as it
	// is. An unknown
	// run is an error wrapping ErrNotFound; deleting a run deletes its
	// claim.
	ClaimRun(ctx context.Context, runID string, c RunClaim, prev string) (held RunClaim, ok bool, err error)
	// ReleaseRun removes the claim of run runID if its token is token,
	// and reports whether it did: false when the run has another claim,
	// none, or does not exist.
	ReleaseRun(ctx context.Context, runID, token string) (bool, error)
}
