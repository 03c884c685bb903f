package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tpoproject/tpo"
)

var (
	_ tpo.JobStore    = (*DB)(nil)
	_ tpo.JobLiveness = (*DB)(nil)
)

const jobColumns = `kind, id, status, created, updated, finished, owner_host, owner_pid, owner_started, data, cancel_requested`

// PutJob implements tpo.JobStore.
func (db *DB) PutJob(ctx context.Context, job tpo.Job) error {
	if job.Kind == "" || job.ID == "" {
		return fmt.Errorf("put job %q of kind %q: empty kind or id", job.ID, job.Kind)
	}
	if err := errors.Join(checkKey("job kind", job.Kind), checkKey("job id", job.ID)); err != nil {
		return fmt.Errorf("put job: %w", err)
	}
	if !json.Valid(job.Data) {
		return fmt.Errorf("put %s %q: data is not valid JSON", job.Kind, job.ID)
	}
	var host, pid, started any
	if o := job.Owner; o != nil {
		host, pid, started = cleanText(o.Host), o.PID, o.Started
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO jobs (`+jobColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (kind, id) DO UPDATE SET status = excluded.status, created = excluded.created, updated = excluded.updated,
			finished = excluded.finished, owner_host = excluded.owner_host, owner_pid = excluded.owner_pid,
			owner_started = excluded.owner_started, data = excluded.data,
			cancel_requested = coalesce(jobs.cancel_requested, excluded.cancel_requested)`,
		job.Kind, job.ID, cleanText(job.Status), job.Created, job.Updated, job.Finished, host, pid, started, string(job.Data), job.CancelRequested)
	if err != nil {
		return fmt.Errorf("put %s %q: %w", job.Kind, job.ID, err)
	}
	return nil
}

// GetJob implements tpo.JobStore.
func (db *DB) GetJob(ctx context.Context, kind, id string) (tpo.Job, error) {
	if checkKey("job id", id) != nil || checkKey("job kind", kind) != nil {
		return tpo.Job{}, fmt.Errorf("%s %q: %w", kind, id, tpo.ErrNotFound)
	}
	j, err := scanJob(db.pool.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE kind = $1 AND id = $2`, kind, id).Scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return tpo.Job{}, fmt.Errorf("%s %q: %w", kind, id, tpo.ErrNotFound)
	}
	if err != nil {
		return tpo.Job{}, fmt.Errorf("get %s %q: %w", kind, id, err)
	}
	return j, nil
}

// ListJobs implements tpo.JobStore, in one snapshot.
func (db *DB) ListJobs(ctx context.Context, kind, after string, limit int) ([]tpo.Job, error) {
	var jobs []tpo.Job
	err := db.snapshot(ctx, func(tx pgx.Tx) error {
		query, args := `SELECT `+jobColumns+` FROM jobs WHERE kind = $1`, []any{kind}
		if after != "" {
			var created time.Time
			err := pgx.ErrNoRows
			if checkKey("job id", after) == nil {
				err = tx.QueryRow(ctx, `SELECT created FROM jobs WHERE kind = $1 AND id = $2`, kind, after).Scan(&created)
			}
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("%s %q: %w", kind, after, tpo.ErrNotFound)
			}
			if err != nil {
				return err
			}
			query += ` AND (created, id COLLATE "C") < ($2, $3)`
			args = append(args, created, after)
		}
		query += ` ORDER BY created DESC, id COLLATE "C" DESC`
		if limit > 0 {
			query += fmt.Sprintf(" LIMIT %d", limit)
		}
		rows, err := tx.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		jobs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (tpo.Job, error) { return scanJob(r.Scan) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list %s jobs: %w", kind, err)
	}
	return jobs, nil
}

// UnfinishedJobs implements tpo.JobStore.
func (db *DB) UnfinishedJobs(ctx context.Context, kind, host string) ([]tpo.Job, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+jobColumns+` FROM jobs
		WHERE kind = $1 AND owner_host = $2 AND finished IS NULL ORDER BY created, id COLLATE "C"`, kind, cleanText(host))
	if err == nil {
		var jobs []tpo.Job
		jobs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (tpo.Job, error) { return scanJob(r.Scan) })
		if err == nil {
			return jobs, nil
		}
	}
	return nil, fmt.Errorf("unfinished %s jobs of %s: %w", kind, host, err)
}

// ClaimJob implements tpo.JobStore: one UPDATE, which a concurrent claim
// of the same job waits for and then finds the new owner.
func (db *DB) ClaimJob(ctx context.Context, kind, id string, from tpo.Owner, to *tpo.Owner) (bool, error) {
	if checkKey("job id", id) != nil || checkKey("job kind", kind) != nil {
		return false, fmt.Errorf("claim %s %q: %w", kind, id, tpo.ErrNotFound)
	}
	var host, pid, started any
	if to != nil {
		host, pid, started = cleanText(to.Host), to.PID, to.Started
	}
	tag, err := db.pool.Exec(ctx, `UPDATE jobs SET owner_host = $3, owner_pid = $4, owner_started = $5
		WHERE kind = $1 AND id = $2 AND finished IS NULL AND owner_host = $6 AND owner_pid = $7 AND owner_started = $8`,
		kind, id, host, pid, started, cleanText(from.Host), from.PID, from.Started)
	if err == nil && tag.RowsAffected() > 0 {
		return true, nil
	}
	if err == nil {
		var exists bool
		err = db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM jobs WHERE kind = $1 AND id = $2)`, kind, id).Scan(&exists)
		if err == nil && !exists {
			err = tpo.ErrNotFound
		}
	}
	if err != nil {
		return false, fmt.Errorf("claim %s %q from %s: %w", kind, id, from, err)
	}
	return false, nil
}

// RequestCancel implements tpo.JobStore: one UPDATE that returns the
// job, then, when it changed nothing, the job as it is.
func (db *DB) RequestCancel(ctx context.Context, kind, id string, at time.Time) (tpo.Job, error) {
	if checkKey("job id", id) != nil || checkKey("job kind", kind) != nil {
		return tpo.Job{}, fmt.Errorf("request the cancel of %s %q: %w", kind, id, tpo.ErrNotFound)
	}
	j, err := scanJob(db.pool.QueryRow(ctx, `UPDATE jobs SET cancel_requested = $3
		WHERE kind = $1 AND id = $2 AND finished IS NULL AND cancel_requested IS NULL RETURNING `+jobColumns, kind, id, at).Scan)
	if errors.Is(err, pgx.ErrNoRows) {
		j, err = scanJob(db.pool.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE kind = $1 AND id = $2`, kind, id).Scan)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		err = tpo.ErrNotFound
	}
	if err != nil {
		return tpo.Job{}, fmt.Errorf("request the cancel of %s %q: %w", kind, id, err)
	}
	return j, nil
}

// StaleJobs implements tpo.JobLiveness, with the rule of StaleRuns.
func (db *DB) StaleJobs(ctx context.Context, kind string, olderThan time.Duration) ([]tpo.Job, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+jobColumns+` FROM jobs j
		WHERE j.kind = $1 AND j.owner_host IS NOT NULL AND j.finished IS NULL
		AND coalesce((SELECT p.seen FROM processes p WHERE p.host = j.owner_host AND p.pid = j.owner_pid
			AND p.started = j.owner_started), j.owner_started) < now() - make_interval(secs => $2)
		ORDER BY j.created, j.id COLLATE "C"`, kind, olderThan.Seconds())
	if err == nil {
		var jobs []tpo.Job
		jobs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (tpo.Job, error) { return scanJob(r.Scan) })
		if err == nil {
			return jobs, nil
		}
	}
	return nil, fmt.Errorf("%s jobs of processes not seen for %v: %w", kind, olderThan, err)
}

// scanJob reads the jobColumns of a row.
func scanJob(scan func(...any) error) (tpo.Job, error) {
	var (
		j                 tpo.Job
		finished, started *time.Time
		host              *string
		pid               *int
		data              []byte
		cancel            *time.Time
	)
	if err := scan(&j.Kind, &j.ID, &j.Status, &j.Created, &j.Updated, &finished, &host, &pid, &started, &data, &cancel); err != nil {
		return tpo.Job{}, err
	}
	j.Created, j.Updated, j.Finished, j.CancelRequested = j.Created.UTC(), j.Updated.UTC(), utc(finished), utc(cancel)
	if host != nil {
		j.Owner = &tpo.Owner{Host: *host}
		if pid != nil {
			j.Owner.PID = *pid
		}
		if started != nil {
			j.Owner.Started = started.UTC()
		}
	}
	j.Data = json.RawMessage(data)
	return j, nil
}
