package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tpoproject/tpo"
)

var _ tpo.RunClaimer = (*DB)(nil)

// ClaimRun implements tpo.RunClaimer with one INSERT ... ON CONFLICT DO
// UPDATE: a concurrent claim of the same run waits for the row and then
// finds the new claim, so that one of them wins.
func (db *DB) ClaimRun(ctx context.Context, runID string, c tpo.RunClaim, prev string) (tpo.RunClaim, bool, error) {
	if !c.Held() {
		return tpo.RunClaim{}, false, fmt.Errorf("claim run %q: the claim has no token", runID)
	}
	if checkKey("run id", runID) != nil {
		return tpo.RunClaim{}, false, fmt.Errorf("claim run: run %q: %w", runID, tpo.ErrNotFound)
	}
	tag, err := db.pool.Exec(ctx, `INSERT INTO run_claims (run_id, owner_host, owner_pid, owner_started, token, since)
		SELECT id, $2, $3, $4, $5, $6 FROM runs WHERE id = $1
		ON CONFLICT (run_id) DO UPDATE SET owner_host = excluded.owner_host, owner_pid = excluded.owner_pid,
			owner_started = excluded.owner_started, token = excluded.token, since = excluded.since
		WHERE run_claims.token = $7`,
		runID, cleanText(c.Owner.Host), c.Owner.PID, c.Owner.Started, cleanText(c.Token), c.Since, cleanText(prev))
	switch {
	case isForeignKeyViolation(err): // the run was deleted meanwhile
		return tpo.RunClaim{}, false, fmt.Errorf("claim run: run %q: %w", runID, tpo.ErrNotFound)
	case err != nil:
		return tpo.RunClaim{}, false, fmt.Errorf("claim run %q: %w", runID, err)
	case tag.RowsAffected() > 0:
		return c, true, nil
	}
	held, err := db.claimOf(ctx, runID)
	if err != nil {
		return tpo.RunClaim{}, false, fmt.Errorf("claim run: %w", err)
	}
	return held, held.Token == c.Token, nil
}

// claimOf reads the claim of a run: the zero RunClaim when it has none. An
// unknown run is an error wrapping tpo.ErrNotFound.
func (db *DB) claimOf(ctx context.Context, runID string) (tpo.RunClaim, error) {
	var (
		c              tpo.RunClaim
		host, token    *string
		pid            *int
		started, since *time.Time
	)
	err := db.pool.QueryRow(ctx, `SELECT c.owner_host, c.owner_pid, c.owner_started, c.token, c.since
		FROM runs r LEFT JOIN run_claims c ON c.run_id = r.id WHERE r.id = $1`, runID).Scan(&host, &pid, &started, &token, &since)
	if errors.Is(err, pgx.ErrNoRows) {
		return tpo.RunClaim{}, fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
	}
	if err != nil || token == nil {
		return tpo.RunClaim{}, err
	}
	c.Owner = tpo.Owner{Host: *host, PID: *pid, Started: started.UTC()}
	c.Token, c.Since = *token, since.UTC()
	return c, nil
}

// ReleaseRun implements tpo.RunClaimer.
func (db *DB) ReleaseRun(ctx context.Context, runID, token string) (bool, error) {
	if checkKey("run id", runID) != nil || checkKey("token", token) != nil {
		return false, nil
	}
	tag, err := db.pool.Exec(ctx, `DELETE FROM run_claims WHERE run_id = $1 AND token = $2`, runID, token)
	if err != nil {
		return false, fmt.Errorf("release run %q: %w", runID, err)
	}
	return tag.RowsAffected() > 0, nil
}
