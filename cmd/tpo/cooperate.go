package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/proc"
	"github.com/tpoproject/tpo/postgres"
	"github.com/tpoproject/tpo/queue"
)

// itemRunner optimizes the items of a dataset into the store:
// *tpo.Runner alone, or *queue.Runner with the other processes running the
// same command on the same PostgreSQL store.
type itemRunner interface {
	Run(ctx context.Context, run tpo.Run, src tpo.Source) (tpo.Run, tpo.RunCounts, error)
}

// newItemRunner returns what makes the runner of a dataset run reporting
// to a progress: on a PostgreSQL store, for a data file (stdin cannot be
// shared), a queue.Runner, which shares the run's items with every process
// running it; else a tpo.Runner, which works alone: it claims the run, and
// refuses it when another process works on it (unless force).
func newItemRunner(store runStore, opt *tpo.Optimizer, data string, concurrency int, lease time.Duration, force bool, log *slog.Logger) func(*progress) itemRunner {
	pg, shared := store.(*postgres.DB)
	if !shared || data == "-" {
		return func(p *progress) itemRunner {
			rn := &tpo.Runner{Optimizer: opt, Store: store, Concurrency: concurrency, Logger: log, OnItem: p.item}
			return claimingRunner{rn: rn, claim: &runClaim{store: store, force: force, alive: proc.Alive, now: time.Now, say: p.say, log: log}}
		}
	}
	return func(p *progress) itemRunner {
		return &queue.Runner{Optimizer: opt, Store: pg, Pool: pg.Pool(), Concurrency: concurrency, Lease: lease, Logger: log,
			OnItem: p.item, OnProgress: p.finished, OnNote: p.say}
	}
}

// checkLease refuses a --lease that is too short, or given where processes
// do not share a run.
func checkLease(fs *flag.FlagSet, lease time.Duration, store, data string) error {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "lease" })
	switch {
	case lease < time.Second:
		return usagef("--lease must be at least 1s, got %v", lease)
	case given && (!isStoreURL(store) || data == "" || data == "-"):
		return usagef("--lease is for processes sharing a run's items: it needs --store postgres://... and --data FILE")
	}
	return nil
}
