package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// migration is one change of the schema, from version-1 to version.
type migration struct {
	version     int
	description string
	sql         string
}

// migrations are the schema changes, in order of version, from 1. Never
// edit one that was released: append a new one.
var migrations = []migration{
	{1, "runs, items and steps", `
CREATE TABLE runs (
	id         text PRIMARY KEY,
	key        text UNIQUE,          -- NULL for runs that are never resumed
	kind       text NOT NULL,
	source     text NOT NULL,
	config     jsonb,
	created    timestamptz NOT NULL,
	finished   timestamptz,
	item_count integer NOT NULL
);

CREATE INDEX runs_created ON runs (created DESC, id COLLATE "C");

CREATE TABLE items (
	run_id            text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	item_id           text NOT NULL,
	seq               integer NOT NULL CHECK (seq >= 0),
	messages          json NOT NULL,  -- []tpo.Message
	prompt            text NOT NULL,  -- the last user turn, for search
	started           timestamptz NOT NULL,
	updated           timestamptz NOT NULL,
	steps             integer NOT NULL DEFAULT 0,
	done              boolean NOT NULL DEFAULT false,
	finished          timestamptz,
	result            json,           -- tpo.Result without its steps
	error             text NOT NULL DEFAULT '',
	score             double precision, -- best score so far, or the result's
	initial_best      double precision, -- best score of step 0
	requests          bigint NOT NULL DEFAULT 0,
	prompt_tokens     bigint NOT NULL DEFAULT 0,
	completion_tokens bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (run_id, item_id),
	UNIQUE (run_id, seq)
);

CREATE TABLE steps (
	run_id            text NOT NULL,
	item_id           text NOT NULL,
	step              integer NOT NULL CHECK (step >= 0),
	data              json NOT NULL,  -- tpo.Step
	best              double precision, -- best candidate score of the step
	requests          bigint NOT NULL,
	prompt_tokens     bigint NOT NULL,
	completion_tokens bigint NOT NULL,
	saved_at          timestamptz NOT NULL,
	PRIMARY KEY (run_id, item_id, step),
	FOREIGN KEY (run_id, item_id) REFERENCES items (run_id, item_id) ON DELETE CASCADE
);
`},
	{2, "run owners, interrupted runs, process heartbeats", `
ALTER TABLE runs ADD COLUMN owner_host text;
ALTER TABLE runs ADD COLUMN owner_pid integer;
ALTER TABLE runs ADD COLUMN owner_started timestamptz;
ALTER TABLE runs ADD COLUMN interrupted timestamptz;
CREATE INDEX runs_unfinished_by_host ON runs (owner_host, created) WHERE finished IS NULL AND interrupted IS NULL;

-- A process that owns runs says it is alive (see Beat); its runs are
-- interrupted by another process once it has not said so for a while.
CREATE TABLE processes (
	host    text NOT NULL,
	pid     integer NOT NULL,
	started timestamptz NOT NULL,
	seen    timestamptz NOT NULL,
	PRIMARY KEY (host, pid, started)
);
`},
	{3, "jobs: the responses and batches of tpo serve", `
CREATE TABLE jobs (
	kind          text NOT NULL,
	id            text NOT NULL,
	status        text NOT NULL,
	created       timestamptz NOT NULL,
	updated       timestamptz NOT NULL,
	finished      timestamptz,
	owner_host    text,
	owner_pid     integer,
	owner_started timestamptz,
	data          json NOT NULL,  -- as the server wrote it
	PRIMARY KEY (kind, id)
);

CREATE INDEX jobs_created ON jobs (kind, created DESC, id COLLATE "C" DESC);
CREATE INDEX jobs_unfinished_by_host ON jobs (kind, owner_host, created) WHERE finished IS NULL;
`},
	{4, "run claims: the process that works on a run", `
CREATE TABLE run_claims (
	run_id        text PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
	owner_host    text NOT NULL,
	owner_pid     integer NOT NULL,
	owner_started timestamptz NOT NULL,
	token         text NOT NULL,
	since         timestamptz NOT NULL
);
`},
	{5, "files: the Files API's files, shared by tpo serve replicas", `
-- A file is done once committed (an upload) or written (a batch's
-- output); until then no one else sees it, but an upload's bytes count
-- against the limit as they arrive. An upload under way whose last chunk
-- is old (its process died) is removed by the next upload.
CREATE TABLE files (
	id         text PRIMARY KEY,
	name       text NOT NULL,
	purpose    text NOT NULL DEFAULT '',
	bytes      bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
	chunk_size integer NOT NULL CHECK (chunk_size > 0),
	created    timestamptz NOT NULL,  -- as the API shows it (the server's clock)
	done       boolean NOT NULL DEFAULT false,
	updated    timestamptz NOT NULL DEFAULT now()  -- the database's clock
);

CREATE INDEX files_created ON files (created DESC, id COLLATE "C" DESC) WHERE done;
CREATE INDEX files_uploading ON files (updated) WHERE NOT done;

-- The content, chunk_size bytes a chunk (the last one shorter), so that
-- it is stored and read a chunk at a time.
CREATE TABLE file_chunks (
	file_id text NOT NULL REFERENCES files (id) ON DELETE CASCADE,
	n       integer NOT NULL CHECK (n >= 0),
	data    bytea NOT NULL,
	PRIMARY KEY (file_id, n)
);
`},
	{6, "when a client asked to cancel a job through a process that does not run it", `
ALTER TABLE jobs ADD COLUMN cancel_requested timestamptz;
`},
}

// SchemaVersion is the version of the schema this package writes.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// migrate checks the database's encoding and brings its schema up to date.
// An up-to-date schema is found without a lock or a write.
func (db *DB) migrate(ctx context.Context) error {
	var (
		encoding, searchPath string
		schema               *string
		exists               bool
	)
	err := db.pool.QueryRow(ctx, `SELECT current_setting('server_encoding'), current_setting('search_path'),
		current_schema(), to_regclass('schema_migrations') IS NOT NULL`).Scan(&encoding, &searchPath, &schema, &exists)
	if err != nil {
		return fmt.Errorf("read the database's settings: %w", err)
	}
	if encoding != "UTF8" {
		return fmt.Errorf("the database's encoding is %s; tpo needs UTF8 (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)", encoding)
	}
	if schema == nil {
		return fmt.Errorf("no schema of search_path %q exists: create it first (CREATE SCHEMA ...)", searchPath)
	}
	if exists {
		v, err := schemaVersion(ctx, db.pool)
		if err != nil {
			return err
		}
		if v == SchemaVersion() {
			return nil
		}
		if v > SchemaVersion() {
			return newerError(v)
		}
	}
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return applyMigrations(ctx, tx) })
}

// newerError says that the database was written by a newer program.
func newerError(v int) error {
	return fmt.Errorf("the database's schema is at version %d, newer than this program's (%d): use a newer tpo", v, SchemaVersion())
}

// querier is what a pool, a connection and a transaction offer.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// schemaVersion returns the highest version applied.
func schemaVersion(ctx context.Context, q querier) (int, error) {
	var v int
	if err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read the schema version: %w", err)
	}
	return v, nil
}

// applyMigrations applies the migrations not applied yet, holding an
// advisory lock (one per schema) until tx ends, so that processes starting
// at once migrate one after the other.
func applyMigrations(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('tpo schema of ' || coalesce(current_schema(), ''), 0))`); err != nil {
		return fmt.Errorf("lock the schema: %w", err)
	}
	_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version     integer PRIMARY KEY,
		description text NOT NULL,
		applied     timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	v, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if v > SchemaVersion() {
		return newerError(v)
	}
	for _, m := range migrations {
		if m.version <= v {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("migrate the schema to version %d (%s): %w", m.version, m.description, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, description) VALUES ($1, $2)`, m.version, m.description); err != nil {
			return fmt.Errorf("record schema version %d: %w", m.version, err)
		}
	}
	return nil
}

// Check looks for what should never be: a schema at another version than
// this program's, items whose step count differs from their steps, finished
// items without a finish time or a result, files whose size differs from
// their content's. It returns an error describing
// every problem found, or nil. (PostgreSQL itself keeps foreign keys and
// its files sound.)
func (db *DB) Check(ctx context.Context) error {
	var problems []string
	v, err := schemaVersion(ctx, db.pool)
	if err != nil {
		return err
	}
	if v != SchemaVersion() {
		problems = append(problems, fmt.Sprintf("schema version %d, want %d", v, SchemaVersion()))
	}
	rows, err := db.pool.Query(ctx, `
		SELECT format('item %s of run %s counts %s steps but has %s', i.item_id, i.run_id, i.steps, count(s.step))
		FROM items i LEFT JOIN steps s ON s.run_id = i.run_id AND s.item_id = i.item_id
		GROUP BY i.run_id, i.item_id HAVING i.steps <> count(s.step)
		UNION ALL
		SELECT format('item %s of run %s is done without a finish time or a result', item_id, run_id)
		FROM items WHERE done AND (finished IS NULL OR result IS NULL)
		UNION ALL
		SELECT format('item %s of run %s is not done but has a finish time', item_id, run_id)
		FROM items WHERE NOT done AND finished IS NOT NULL
		UNION ALL
		SELECT format('file %s counts %s bytes but its chunks hold %s', f.id, f.bytes, coalesce(sum(length(c.data)), 0))
		FROM files f LEFT JOIN file_chunks c ON c.file_id = f.id
		WHERE f.done GROUP BY f.id HAVING f.bytes <> coalesce(sum(length(c.data)), 0)`)
	if err != nil {
		return fmt.Errorf("check store %s: %w", db.url, err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("check store %s: %w", db.url, err)
	}
	problems = append(problems, found...)
	if len(problems) == 0 {
		return nil
	}
	const most = 20
	n := len(problems)
	if n > most {
		problems = append(problems[:most], fmt.Sprintf("and %d more", n-most))
	}
	return fmt.Errorf("store %s: %d problems: %s", db.url, n, strings.Join(problems, "; "))
}
