package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tpoproject/tpo"
)

var (
	_ tpo.Interrupter = (*DB)(nil)
	_ tpo.Liveness    = (*DB)(nil)
)

// UnfinishedRuns implements tpo.Interrupter.
func (db *DB) UnfinishedRuns(ctx context.Context, host string) ([]tpo.Run, error) {
	runs, err := db.queryRuns(ctx, `SELECT `+runColumns+` FROM runs
		WHERE owner_host = $1 AND finished IS NULL AND interrupted IS NULL ORDER BY created, id COLLATE "C"`, host)
	if err != nil {
		return nil, fmt.Errorf("unfinished runs of %s: %w", host, err)
	}
	return runs, nil
}

// StaleRuns implements tpo.Liveness: the unfinished runs whose owner has
// not beaten within olderThan, by the database's clock (so that the clocks
// of the machines do not matter), on any host. An owner that never beat
// counts as stale from when it started.
func (db *DB) StaleRuns(ctx context.Context, olderThan time.Duration) ([]tpo.Run, error) {
	runs, err := db.queryRuns(ctx, `SELECT `+runColumns+` FROM runs r
		WHERE r.owner_host IS NOT NULL AND r.finished IS NULL AND r.interrupted IS NULL
		AND coalesce((SELECT p.seen FROM processes p WHERE p.host = r.owner_host AND p.pid = r.owner_pid
			AND p.started = r.owner_started), r.owner_started) < now() - make_interval(secs => $1)
		ORDER BY r.created, r.id COLLATE "C"`, olderThan.Seconds())
	if err != nil {
		return nil, fmt.Errorf("runs of processes not seen for %v: %w", olderThan, err)
	}
	return runs, nil
}

// Beat implements tpo.Liveness: owner is alive now, by the database's
// clock. Heartbeats of owners gone for a day are dropped on the way.
func (db *DB) Beat(ctx context.Context, owner tpo.Owner) error {
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO processes (host, pid, started, seen) VALUES ($1, $2, $3, now())
		ON CONFLICT (host, pid, started) DO UPDATE SET seen = now()`, cleanText(owner.Host), owner.PID, owner.Started)
	b.Queue(`DELETE FROM processes WHERE seen < now() - interval '1 day'`)
	if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("heartbeat of %s: %w", owner, err)
	}
	return nil
}

func (db *DB) queryRuns(ctx context.Context, query string, args ...any) ([]tpo.Run, error) {
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var runs []tpo.Run
	for rows.Next() {
		r, err := scanRun(rows.Scan)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	return runs, rows.Err()
}

// InterruptRun implements tpo.Interrupter, in one transaction.
func (db *DB) InterruptRun(ctx context.Context, runID string, at time.Time, reason string) (bool, error) {
	marked := false
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE runs SET interrupted = $2
			WHERE id = $1 AND finished IS NULL AND interrupted IS NULL`, runID, at)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return db.runExists(ctx, tx, runID)
		}
		marked = true
		return failPending(ctx, tx, runID, reason)
	})
	if err != nil {
		return false, fmt.Errorf("interrupt run: %w", err)
	}
	return marked, nil
}

// failPending finishes the items of a run that are not finished with the
// error reason, keeping their steps, score and usage.
func failPending(ctx context.Context, tx pgx.Tx, runID, reason string) error {
	rows, err := tx.Query(ctx, `SELECT item_id FROM items WHERE run_id = $1 AND NOT done FOR UPDATE`, runID)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, id := range ids {
		data, err := json.Marshal(tpo.Result{ID: id, Error: reason})
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE items SET done = true, finished = now(), updated = now(), result = $3, error = $4
			WHERE run_id = $1 AND item_id = $2`, runID, id, string(data), cleanText(reason)); err != nil {
			return err
		}
	}
	return nil
}
