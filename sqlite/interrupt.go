package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tpoproject/tpo"
)

var _ tpo.Interrupter = (*DB)(nil)

// UnfinishedRuns implements tpo.Interrupter.
func (db *DB) UnfinishedRuns(ctx context.Context, host string) ([]tpo.Run, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+runColumns+` FROM runs
		WHERE owner_host = ? AND finished IS NULL AND interrupted IS NULL ORDER BY created, id`, host)
	if err != nil {
		return nil, fmt.Errorf("unfinished runs of %s: %w", host, err)
	}
	defer rows.Close()
	var runs []tpo.Run
	for rows.Next() {
		r, err := scanRun(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("unfinished runs of %s: %w", host, err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("unfinished runs of %s: %w", host, err)
	}
	return runs, nil
}

// InterruptRun implements tpo.Interrupter, in one write transaction.
func (db *DB) InterruptRun(ctx context.Context, runID string, at time.Time, reason string) (bool, error) {
	marked := false
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE runs SET interrupted = ?
			WHERE id = ? AND finished IS NULL AND interrupted IS NULL`, unixNano(at), runID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = runExists(ctx, tx, runID)
			}
			return err
		}
		marked = true
		return failPending(ctx, tx, runID, db.now(), reason)
	})
	if err != nil {
		return false, fmt.Errorf("interrupt run: %w", err)
	}
	return marked, nil
}

// failPending finishes the items of a run that are not finished with the
// error reason, keeping their steps, score and usage.
func failPending(ctx context.Context, tx *sql.Tx, runID string, now time.Time, reason string) error {
	rows, err := tx.QueryContext(ctx, `SELECT item_id FROM items WHERE run_id = ? AND NOT done`, runID)
	if err != nil {
		return err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for _, id := range ids {
		data, err := json.Marshal(tpo.Result{ID: id, Error: reason})
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE items SET done = 1, finished = ?, updated = ?, result = ?, error = ?
			WHERE run_id = ? AND item_id = ?`, unixNano(now), unixNano(now), string(data), reason, runID, id); err != nil {
			return err
		}
	}
	return nil
}
