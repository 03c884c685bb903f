package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/postgres"
	"github.com/tpoproject/tpo/sqlite"
	"github.com/tpoproject/tpo/ui"
)

// storeHelp is the help of every --store flag.
const storeHelp = "run store: a SQLite `file`, or a PostgreSQL database postgres://USER:PASSWORD@HOST:PORT/DATABASE"

// runStore is what tpo's commands need of a run store: the writes of the
// optimizer and tpo serve, and the reads of the web UI, reports and
// exports, the responses and batches of tpo serve, and the claims of tpo
// run on the runs it works on alone. *sqlite.DB and *postgres.DB
// implement it.
type runStore interface {
	tpo.Store
	tpo.JobStore
	tpo.RunClaimer
	ui.Store
	Close() error
}

// isStoreURL reports whether a --store value names a PostgreSQL database.
func isStoreURL(spec string) bool {
	return strings.HasPrefix(spec, "postgres://") || strings.HasPrefix(spec, "postgresql://")
}

// openStore opens the run store a --store value names: a PostgreSQL
// database for a postgres:// or postgresql:// URL, else a SQLite file,
// created when missing. Its errors never show a password.
func openStore(ctx context.Context, spec string) (runStore, error) {
	if isStoreURL(spec) {
		db, err := postgres.Open(ctx, spec)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		return db, nil
	}
	if scheme, _, ok := strings.Cut(spec, "://"); ok {
		return nil, usagef("--store %s: unknown scheme %q; want a SQLite file or a postgres:// URL", storeName(spec), scheme)
	}
	db, err := sqlite.Open(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return db, nil
}

// isStoreFile reports whether a --store value names a file (a SQLite
// store), which opening creates when missing.
func isStoreFile(spec string) bool { return !strings.Contains(spec, "://") }

// storeName is a --store value as messages show it: a URL's password is
// replaced by xxxxx.
func storeName(spec string) string {
	if !isStoreFile(spec) {
		return postgres.Redact(spec)
	}
	return spec
}
