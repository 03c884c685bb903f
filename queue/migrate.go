package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// lockSQL and unlockSQL take and release the session advisory lock under
// which one process at a time migrates River's tables in the current schema.
const (
	lockSQL   = `SELECT pg_advisory_lock(hashtextextended('tpo river schema of ' || coalesce(current_schema(), ''), 0))`
	unlockSQL = `SELECT pg_advisory_unlock(hashtextextended('tpo river schema of ' || coalesce(current_schema(), ''), 0))`
)

// migrate creates or upgrades River's tables (river_job, river_leader,
// river_queue, ... in the schema of the pool's search_path). An up-to-date
// schema is found without a lock; otherwise processes starting at once
// migrate one after the other, holding an advisory lock: River's migrator
// does not lock, and some of its migrations cannot run in a transaction.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: log})
	if err != nil {
		return fmt.Errorf("job queue: %w", err)
	}
	if v, err := m.Validate(ctx, nil); err == nil && v.OK {
		return nil
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("job queue: migrate River's tables: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, lockSQL); err != nil {
		return fmt.Errorf("job queue: lock River's tables for migration: %w", err)
	}
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if _, uerr := conn.Exec(context.WithoutCancel(ctx), unlockSQL); uerr != nil {
		// A lock that cannot be released goes with its connection.
		conn.Conn().Close(context.WithoutCancel(ctx))
		err = errors.Join(err, uerr)
	}
	if err != nil {
		return fmt.Errorf("job queue: migrate River's tables: %w", err)
	}
	return nil
}
