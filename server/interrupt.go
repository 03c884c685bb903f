package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tpoproject/tpo"
)

// InterruptAbandoned marks as interrupted, at `at`, the runs that
// processes of self's host left unfinished when they ended (killed,
// crashed): alive tells whether an owner still runs. Runs of live
// processes, of other hosts (which cannot be checked from here) and
// without an owner are left alone. It returns the ids of the runs marked.
// tpo serve calls it when it starts, so that requests a killed server was
// optimizing do not look in progress forever.
func InterruptAbandoned(ctx context.Context, store tpo.Interrupter, self tpo.Owner, alive func(tpo.Owner) bool, at time.Time) ([]string, error) {
	runs, err := store.UnfinishedRuns(ctx, self.Host)
	if err != nil {
		return nil, err
	}
	var marked []string
	for _, r := range runs {
		o := *r.Owner
		if o.PID == self.PID && o.Started.Equal(self.Started) || alive(o) {
			continue
		}
		reason := fmt.Sprintf("interrupted: the process that wrote the run (%s, started %s) ended before it finished", o, o.Started.Local().Format(time.DateTime))
		ok, err := store.InterruptRun(ctx, r.ID, at, reason)
		if err != nil {
			return marked, err
		}
		if ok {
			marked = append(marked, r.ID)
		}
	}
	return marked, nil
}

// ReplicaStore is a store that several tpo serve processes, on any
// machines, share (PostgreSQL).
type ReplicaStore interface {
	tpo.Interrupter
	tpo.Liveness
}

// JobTaker takes over the jobs of replicas that stopped answering, and
// logs each; a *Server (TakeOverStale) is one.
type JobTaker interface {
	TakeOverStale(ctx context.Context, silentFor time.Duration) (failed, resumed []string, err error)
}

// WatchReplicas keeps self's runs and jobs alive in a shared store and
// ends those of the replicas that died, until ctx ends: every interval it
// beats for self, interrupts the runs, on any host, whose owner has not
// beaten for staleAfter (a killed replica, a lost machine), and, when jobs
// is not nil, has it take over their jobs: background responses failed,
// batches continued in this process. Failures are logged and tried again
// at the next interval.
func WatchReplicas(ctx context.Context, store ReplicaStore, self tpo.Owner, interval, staleAfter time.Duration, jobs JobTaker, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := store.Beat(ctx, self); err != nil && ctx.Err() == nil {
			log.Warn("heartbeat failed", "err", err)
		}
		if ids, err := interruptStale(ctx, store, staleAfter); err != nil && ctx.Err() == nil {
			log.Warn("interrupting the runs of ended replicas failed", "err", err)
		} else if len(ids) > 0 {
			log.Warn("runs of replicas that stopped answering marked as interrupted", "runs", ids, "silent_for", staleAfter)
		}
		if jobs != nil {
			if _, _, err := jobs.TakeOverStale(ctx, staleAfter); err != nil && ctx.Err() == nil {
				log.Warn("taking over the jobs of ended replicas failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// interruptStale interrupts the runs whose owner stopped beating.
func interruptStale(ctx context.Context, store ReplicaStore, staleAfter time.Duration) ([]string, error) {
	runs, err := store.StaleRuns(ctx, staleAfter)
	if err != nil {
		return nil, err
	}
	var marked []string
	for _, r := range runs {
		reason := fmt.Sprintf("interrupted: the process that wrote the run (%s) stopped answering for %v", r.Owner, staleAfter)
		ok, err := store.InterruptRun(ctx, r.ID, time.Now(), reason)
		if err != nil {
			return marked, err
		}
		if ok {
			marked = append(marked, r.ID)
		}
	}
	return marked, nil
}
