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

var _ tpo.JobStore = (*DB)(nil)

const jobColumns = `kind, id, status, created, updated, finished, owner_host, owner_pid, owner_started, data, cancel_requested`

// PutJob implements tpo.JobStore.
func (db *DB) PutJob(ctx context.Context, job tpo.Job) error {
	if job.Kind == "" || job.ID == "" {
		return fmt.Errorf("put job %q of kind %q: empty kind or id", job.ID, job.Kind)
	}
	if !json.Valid(job.Data) {
		return fmt.Errorf("put %s %q: data is not valid JSON", job.Kind, job.ID)
	}
	var host, pid, started, finished, cancel any
	if o := job.Owner; o != nil {
		host, pid, started = o.Host, o.PID, unixNano(o.Started)
	}
	if job.Finished != nil {
		finished = unixNano(*job.Finished)
	}
	if job.CancelRequested != nil {
		cancel = unixNano(*job.CancelRequested)
	}
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO jobs (`+jobColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (kind, id) DO UPDATE SET status = excluded.status, created = excluded.created, updated = excluded.updated,
				finished = excluded.finished, owner_host = excluded.owner_host, owner_pid = excluded.owner_pid,
				owner_started = excluded.owner_started, data = excluded.data,
				cancel_requested = coalesce(jobs.cancel_requested, excluded.cancel_requested)`,
			job.Kind, job.ID, job.Status, unixNano(job.Created), unixNano(job.Updated), finished, host, pid, started, string(job.Data), cancel)
		return err
	})
	if err != nil {
		return fmt.Errorf("put %s %q: %w", job.Kind, job.ID, err)
	}
	return nil
}

// GetJob implements tpo.JobStore.
func (db *DB) GetJob(ctx context.Context, kind, id string) (tpo.Job, error) {
	j, err := scanJob(db.db.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE kind = ? AND id = ?`, kind, id).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return tpo.Job{}, fmt.Errorf("%s %q: %w", kind, id, tpo.ErrNotFound)
	}
	if err != nil {
		return tpo.Job{}, fmt.Errorf("get %s %q: %w", kind, id, err)
	}
	return j, nil
}

// ListJobs implements tpo.JobStore.
func (db *DB) ListJobs(ctx context.Context, kind, after string, limit int) ([]tpo.Job, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	var jobs []tpo.Job
	err := db.read(ctx, func(tx *sql.Tx) error {
		query, args := `SELECT `+jobColumns+` FROM jobs WHERE kind = ?`, []any{kind}
		if after != "" {
			var created int64
			err := tx.QueryRowContext(ctx, `SELECT created FROM jobs WHERE kind = ? AND id = ?`, kind, after).Scan(&created)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%s %q: %w", kind, after, tpo.ErrNotFound)
			}
			if err != nil {
				return err
			}
			query += ` AND (created < ? OR created = ? AND id < ?)`
			args = append(args, created, created, after)
		}
		var err error
		jobs, err = queryJobs(ctx, tx, query+` ORDER BY created DESC, id DESC LIMIT ?`, append(args, limit)...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list %s jobs: %w", kind, err)
	}
	return jobs, nil
}

// UnfinishedJobs implements tpo.JobStore.
func (db *DB) UnfinishedJobs(ctx context.Context, kind, host string) ([]tpo.Job, error) {
	jobs, err := queryJobs(ctx, db.db, `SELECT `+jobColumns+` FROM jobs
		WHERE kind = ? AND owner_host = ? AND finished IS NULL ORDER BY created, id`, kind, host)
	if err != nil {
		return nil, fmt.Errorf("unfinished %s jobs of %s: %w", kind, host, err)
	}
	return jobs, nil
}

// ClaimJob implements tpo.JobStore, in one transaction.
func (db *DB) ClaimJob(ctx context.Context, kind, id string, from tpo.Owner, to *tpo.Owner) (bool, error) {
	var host, pid, started any
	if to != nil {
		host, pid, started = to.Host, to.PID, unixNano(to.Started)
	}
	claimed := false
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE jobs SET owner_host = ?, owner_pid = ?, owner_started = ?
			WHERE kind = ? AND id = ? AND finished IS NULL AND owner_host = ? AND owner_pid = ? AND owner_started = ?`,
			host, pid, started, kind, id, from.Host, from.PID, unixNano(from.Started))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n > 0 {
			claimed = n > 0
			return err
		}
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM jobs WHERE kind = ? AND id = ?`, kind, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return tpo.ErrNotFound
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("claim %s %q from %s: %w", kind, id, from, err)
	}
	return claimed, nil
}

// RequestCancel implements tpo.JobStore, in one transaction.
func (db *DB) RequestCancel(ctx context.Context, kind, id string, at time.Time) (tpo.Job, error) {
	var j tpo.Job
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE jobs SET cancel_requested = ?
			WHERE kind = ? AND id = ? AND finished IS NULL AND cancel_requested IS NULL`, unixNano(at), kind, id)
		if err != nil {
			return err
		}
		j, err = scanJob(tx.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE kind = ? AND id = ?`, kind, id).Scan)
		if errors.Is(err, sql.ErrNoRows) {
			return tpo.ErrNotFound
		}
		return err
	})
	if err != nil {
		return tpo.Job{}, fmt.Errorf("request the cancel of %s %q: %w", kind, id, err)
	}
	return j, nil
}

func queryJobs(ctx context.Context, q queryer, query string, args ...any) ([]tpo.Job, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var jobs []tpo.Job
	for rows.Next() {
		j, err := scanJob(rows.Scan)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, rows.Err()
}

// scanJob reads the jobColumns of a row.
func scanJob(scan func(...any) error) (tpo.Job, error) {
	var (
		j                 tpo.Job
		created, updated  int64
		finished, started sql.NullInt64
		host              sql.NullString
		pid               sql.NullInt64
		data              string
		cancel            sql.NullInt64
	)
	if err := scan(&j.Kind, &j.ID, &j.Status, &created, &updated, &finished, &host, &pid, &started, &data, &cancel); err != nil {
		return tpo.Job{}, err
	}
	j.Created, j.Updated, j.Finished = fromNano(created), fromNano(updated), nullTime(finished)
	j.CancelRequested = nullTime(cancel)
	if host.Valid {
		j.Owner = &tpo.Owner{Host: host.String, PID: int(pid.Int64), Started: fromNano(started.Int64)}
	}
	j.Data = json.RawMessage(data)
	return j, nil
}
