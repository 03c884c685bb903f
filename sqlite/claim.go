package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tpoproject/tpo"
)

var _ tpo.RunClaimer = (*DB)(nil)

// ClaimRun implements tpo.RunClaimer: the claim is read and written in one
// IMMEDIATE transaction, which holds the database's write lock, so that
// claims of other processes wait for it and then find the new claim.
func (db *DB) ClaimRun(ctx context.Context, runID string, c tpo.RunClaim, prev string) (tpo.RunClaim, bool, error) {
	if !c.Held() {
		return tpo.RunClaim{}, false, fmt.Errorf("claim run %q: the claim has no token", runID)
	}
	var held tpo.RunClaim
	err := db.write(ctx, func(tx *sql.Tx) error {
		if err := runExists(ctx, tx, runID); err != nil {
			return err
		}
		var err error
		if held, err = claimOf(ctx, tx, runID); err != nil || held.Held() && held.Token != prev {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO run_claims (run_id, owner_host, owner_pid, owner_started, token, since)
			VALUES (?, ?, ?, ?, ?, ?)`, runID, c.Owner.Host, c.Owner.PID, unixNano(c.Owner.Started), c.Token, unixNano(c.Since))
		held = c
		return err
	})
	if err != nil {
		return tpo.RunClaim{}, false, fmt.Errorf("claim run: %w", err)
	}
	return held, held.Token == c.Token, nil
}

// claimOf reads the claim of a run: the zero RunClaim when it has none.
func claimOf(ctx context.Context, q queryer, runID string) (tpo.RunClaim, error) {
	var (
		c              tpo.RunClaim
		started, since int64
	)
	err := q.QueryRowContext(ctx, `SELECT owner_host, owner_pid, owner_started, token, since FROM run_claims WHERE run_id = ?`,
		runID).Scan(&c.Owner.Host, &c.Owner.PID, &started, &c.Token, &since)
	if errors.Is(err, sql.ErrNoRows) {
		return tpo.RunClaim{}, nil
	}
	if err != nil {
		return tpo.RunClaim{}, err
	}
	c.Owner.Started, c.Since = fromNano(started), fromNano(since)
	return c, nil
}

// ReleaseRun implements tpo.RunClaimer.
func (db *DB) ReleaseRun(ctx context.Context, runID, token string) (bool, error) {
	released := false
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM run_claims WHERE run_id = ? AND token = ?`, runID, token)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		released = n > 0
		return err
	})
	if err != nil {
		return false, fmt.Errorf("release run %q: %w", runID, err)
	}
	return released, nil
}
