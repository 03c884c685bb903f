// Package sqlite keeps runs in a SQLite database file: it implements
// tpo.Store, so that an interrupted run can be resumed, and the queries that
// reports, the HTTP server and the web UI read runs with.
//
// The database is opened in WAL mode, so readers never wait for the writer.
// Writes from one DB are serialized in process, and each is an IMMEDIATE
// transaction that waits (busy_timeout) for writers in other processes, so
// concurrent writers do not fail with SQLITE_BUSY.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// BusyTimeout is how long a write waits for another process's write
// transaction to end before it fails.
const BusyTimeout = 30 * time.Second

// maxOpenConns bounds the pool: one writer at a time and a few readers.
const maxOpenConns = 8

// DB is a run store in one SQLite file. It is safe for concurrent use.
type DB struct {
	db   *sql.DB
	path string

	wmu sync.Mutex // serializes write transactions

	now   func() time.Time // the clock; tests replace it
	newID func() string    // makes run IDs; tests replace it
}

// Open opens the store at path, creating the file and its schema, or
// upgrading an older schema, as needed.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open store %q: want a plain file path", path)
	}
	dsn := path + "?" + strings.Join([]string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", BusyTimeout.Milliseconds()),
		"_pragma=foreign_keys(1)",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(FULL)", // each commit is durable when it returns
		"_txlock=immediate",         // writes take the write lock first, and wait for it
	}, "&")
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	sdb.SetMaxOpenConns(maxOpenConns)
	sdb.SetMaxIdleConns(maxOpenConns)
	db := &DB{db: sdb, path: path, now: time.Now, newID: randomID}
	if err := db.migrate(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return db, nil
}

// Close closes the database.
func (db *DB) Close() error {
	// Let SQLite refresh its query planner statistics; failure is harmless.
	db.db.Exec("PRAGMA optimize")
	return db.db.Close()
}

// Path returns the file the store was opened with.
func (db *DB) Path() string { return db.path }

// randomID returns 12 random hex digits.
func randomID() string {
	var b [6]byte
	rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// write runs fn in a write transaction and commits it.
func (db *DB) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	tx, err := db.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// read runs fn in a read transaction, so that it sees one snapshot.
func (db *DB) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}) // plain BEGIN
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

// migrations are the schema changes, in order; migrations[i] takes the
// schema from user_version i to i+1. Never edit one that was released:
// append a new one.
var migrations = []string{
	// 1: runs, items and steps.
	`
CREATE TABLE runs (
	id         TEXT PRIMARY KEY,
	key        TEXT UNIQUE,           -- NULL for runs that are never resumed
	kind       TEXT NOT NULL,
	source     TEXT NOT NULL,
	config     TEXT,                  -- JSON
	created    INTEGER NOT NULL,      -- Unix nanoseconds
	finished   INTEGER,
	item_count INTEGER NOT NULL
) STRICT;

CREATE INDEX runs_created ON runs (created);

CREATE TABLE items (
	run_id            TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	item_id           TEXT NOT NULL,
	seq               INTEGER NOT NULL,
	messages          TEXT NOT NULL,  -- JSON []tpo.Message
	prompt            TEXT NOT NULL,  -- the last user turn, for search
	started           INTEGER NOT NULL,
	updated           INTEGER NOT NULL,
	steps             INTEGER NOT NULL DEFAULT 0,
	done              INTEGER NOT NULL DEFAULT 0,
	finished          INTEGER,
	result            TEXT,           -- JSON tpo.Result without its steps
	error             TEXT NOT NULL DEFAULT '',
	score             REAL,           -- best score so far, or the result's
	initial_best      REAL,           -- best score of step 0
	requests          INTEGER NOT NULL DEFAULT 0,
	prompt_tokens     INTEGER NOT NULL DEFAULT 0,
	completion_tokens INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (run_id, item_id),
	UNIQUE (run_id, seq)
) STRICT;

CREATE TABLE steps (
	run_id            TEXT NOT NULL,
	item_id           TEXT NOT NULL,
	step              INTEGER NOT NULL,
	data              TEXT NOT NULL,  -- JSON tpo.Step
	best              REAL,           -- best candidate score of the step
	requests          INTEGER NOT NULL,
	prompt_tokens     INTEGER NOT NULL,
	completion_tokens INTEGER NOT NULL,
	saved_at          INTEGER NOT NULL,
	PRIMARY KEY (run_id, item_id, step),
	FOREIGN KEY (run_id, item_id) REFERENCES items (run_id, item_id) ON DELETE CASCADE
) STRICT;
`,
	// 2: the process that writes a run, and when a run was found left
	// unfinished by a process that had ended.
	`
ALTER TABLE runs ADD COLUMN owner_host TEXT;
ALTER TABLE runs ADD COLUMN owner_pid INTEGER;
ALTER TABLE runs ADD COLUMN owner_started INTEGER; -- Unix nanoseconds
ALTER TABLE runs ADD COLUMN interrupted INTEGER;   -- Unix nanoseconds
CREATE INDEX runs_unfinished_by_host ON runs (owner_host, created) WHERE finished IS NULL AND interrupted IS NULL;
`,
	// 3: jobs: the responses and batches of tpo serve.
	`
CREATE TABLE jobs (
	kind          TEXT NOT NULL,
	id            TEXT NOT NULL,
	status        TEXT NOT NULL,
	created       INTEGER NOT NULL,   -- Unix nanoseconds
	updated       INTEGER NOT NULL,
	finished      INTEGER,
	owner_host    TEXT,
	owner_pid     INTEGER,
	owner_started INTEGER,
	data          TEXT NOT NULL,      -- JSON, as the server wrote it
	PRIMARY KEY (kind, id)
) STRICT;

CREATE INDEX jobs_created ON jobs (kind, created, id);
CREATE INDEX jobs_unfinished_by_host ON jobs (kind, owner_host, created) WHERE finished IS NULL;
`,
	// 4: run claims: the process that works on a run (tpo run), so that a
	// second one refuses.
	`
CREATE TABLE run_claims (
	run_id        TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
	owner_host    TEXT NOT NULL,
	owner_pid     INTEGER NOT NULL,
	owner_started INTEGER NOT NULL,   -- Unix nanoseconds
	token         TEXT NOT NULL,
	since         INTEGER NOT NULL    -- Unix nanoseconds
) STRICT;
`,
	// 5: when a client asked to cancel a job through a process that does
	// not run it.
	`
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER; -- Unix nanoseconds
`,
}

// migrate brings the schema up to date.
func (db *DB) migrate(ctx context.Context) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if v > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this program's (%d)", v, len(migrations))
		}
		for ; v < len(migrations); v++ {
			if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
			}
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
				return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
			}
		}
		return nil
	})
}

// Check runs SQLite's integrity and foreign key checks and returns an error
// describing every problem found, or nil.
func (db *DB) Check(ctx context.Context) error {
	var problems []string
	rows, err := db.db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return fmt.Errorf("integrity check: %w", err)
		}
		if s != "ok" {
			problems = append(problems, s)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}

	rows, err = db.db.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return fmt.Errorf("foreign key check: %w", err)
	}
	for rows.Next() {
		var (
			table, parent string
			rowid         sql.NullInt64
			fkid          int
		)
		if err := rows.Scan(&table, &rowid, &parent, &fkid); err != nil {
			rows.Close()
			return fmt.Errorf("foreign key check: %w", err)
		}
		problems = append(problems, fmt.Sprintf("%s row %d refers to a missing %s row", table, rowid.Int64, parent))
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("foreign key check: %w", err)
	}

	var v int
	if err := db.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v != len(migrations) {
		problems = append(problems, fmt.Sprintf("schema version %d, want %d", v, len(migrations)))
	}

	if len(problems) > 0 {
		const max = 20
		n := len(problems)
		if n > max {
			problems = append(problems[:max], fmt.Sprintf("and %d more", n-max))
		}
		return fmt.Errorf("store %s: %d problems: %s", db.path, n, strings.Join(problems, "; "))
	}
	return nil
}

// unixNano converts t for storage.
func unixNano(t time.Time) int64 { return t.UnixNano() }

// fromNano converts a stored time back.
func fromNano(n int64) time.Time { return time.Unix(0, n).UTC() }

// nullTime converts a nullable stored time back.
func nullTime(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNano(n.Int64)
	return &t
}

// nullFloat converts a nullable stored number back.
func nullFloat(f sql.NullFloat64) *float64 {
	if !f.Valid {
		return nil
	}
	v := f.Float64
	return &v
}
