package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/proc"
)

// releaseTimeout bounds the release of a claim at the end of a run, which
// happens also when the run was interrupted.
const releaseTimeout = 10 * time.Second

// runClaim is the claim a `tpo run` working alone makes on its run, so
// that a second process started on the same run refuses instead of
// computing every item again. A claim whose process ended is taken over:
// on this host when its process no longer runs, on any host with --force.
type runClaim struct {
	store tpo.RunClaimer
	force bool
	alive func(tpo.Owner) bool // whether a process of this host runs
	now   func() time.Time
	say   func(msg string) // a line for the person watching
	log   *slog.Logger

	mine  tpo.RunClaim
	runID string // the run claimed, once it is
}

// claimedError refuses a run that another process works on.
type claimedError struct {
	runID    string
	held     tpo.RunClaim
	sameHost bool
	now      time.Time
}

func (e claimedError) Error() string {
	o := e.held.Owner
	msg := fmt.Sprintf("run %s is being worked on by pid %d on host %s since %s", e.runID, o.PID, o.Host, since(e.held.Since, e.now))
	if e.sameHost {
		return msg + "; wait for it to finish, or stop it and run this command again"
	}
	return msg + "; wait for it to finish, or pass --force if that process is gone"
}

// since says when a claim was made: "2026-11-29 16:02:11 UTC (3m12s
// ago)".
func since(t, now time.Time) string {
	s := t.UTC().Format("2006-01-02 15:04:05 MST")
	if ago := now.Sub(t).Round(time.Second); ago >= 0 {
		s += fmt.Sprintf(" (%v ago)", ago)
	}
	return s
}

// take claims run for this process (it is tpo.Runner's Opened): it
// returns a claimedError when another process works on the run.
func (c *runClaim) take(ctx context.Context, run tpo.Run) error {
	self, err := proc.Self()
	if err != nil {
		return fmt.Errorf("claiming run %s: %w", run.ID, err)
	}
	c.mine = tpo.RunClaim{Owner: self, Token: rand.Text(), Since: c.now()}
	prev := ""
	for range 5 {
		held, ok, err := c.store.ClaimRun(ctx, run.ID, c.mine, prev)
		if err != nil {
			return fmt.Errorf("claiming run %s: %w", run.ID, err)
		}
		if ok {
			c.runID = run.ID
			return nil
		}
		if !held.Held() {
			prev = "" // released meanwhile
			continue
		}
		if err := c.mayTakeOver(run.ID, held); err != nil {
			return err
		}
		prev = held.Token
	}
	return fmt.Errorf("claiming run %s: other processes kept claiming it at the same time", run.ID)
}

// mayTakeOver says why the claim held may be taken over (its process no
// longer runs, or --force), or returns a claimedError.
func (c *runClaim) mayTakeOver(runID string, held tpo.RunClaim) error {
	o, now := held.Owner, c.now()
	sameHost := o.Host == c.mine.Owner.Host
	switch {
	case sameHost && !c.alive(o):
		c.say(fmt.Sprintf("taking over run %s from pid %d on host %s, which worked on it since %s and no longer runs",
			runID, o.PID, o.Host, since(held.Since, now)))
	case c.force:
		c.say(fmt.Sprintf("warning: --force: taking over run %s from pid %d on host %s, which has worked on it since %s; if that process still runs, both compute the same items",
			runID, o.PID, o.Host, since(held.Since, now)))
	default:
		return claimedError{runID: runID, held: held, sameHost: sameHost, now: now}
	}
	return nil
}

// release gives the run back at the end, also of an interrupted run: a
// claim that another process took over (--force) is left to it.
func (c *runClaim) release(ctx context.Context) {
	if c.runID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	released, err := c.store.ReleaseRun(ctx, c.runID, c.mine.Token)
	switch {
	case err != nil:
		c.log.Warn("releasing the run failed: the next tpo run on it takes it over once this process has ended", "run", c.runID, "err", err)
	case !released:
		c.say(fmt.Sprintf("warning: another process took run %s over (tpo run --force) while this one worked on it", c.runID))
	}
}

// claimingRunner is a tpo.Runner that claims its run for the time it
// works on it.
type claimingRunner struct {
	rn    *tpo.Runner
	claim *runClaim
}

func (r claimingRunner) Run(ctx context.Context, run tpo.Run, src tpo.Source) (tpo.Run, tpo.RunCounts, error) {
	r.rn.Opened = r.claim.take
	defer r.claim.release(ctx)
	return r.rn.Run(ctx, run, src)
}

// isClaimed reports whether err is the refusal of a run that another
// process works on.
func isClaimed(err error) bool {
	var ce claimedError
	return errors.As(err, &ce)
}
