package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tpoproject/tpo"
)

var _ tpo.Store = (*DB)(nil)

// queryer is what both *sql.DB and *sql.Tx offer for reading.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const runColumns = `id, key, kind, source, config, created, finished, item_count, owner_host, owner_pid, owner_started, interrupted`

// scanRun reads the runColumns of a row.
func scanRun(scan func(...any) error, extra ...any) (tpo.Run, error) {
	var (
		r             tpo.Run
		key           sql.NullString
		config        sql.NullString
		created       int64
		finished      sql.NullInt64
		ownerHost     sql.NullString
		ownerPID      sql.NullInt64
		ownerStarted  sql.NullInt64
		interruptedAt sql.NullInt64
	)
	dest := append([]any{&r.ID, &key, &r.Kind, &r.Source, &config, &created, &finished, &r.ItemCount,
		&ownerHost, &ownerPID, &ownerStarted, &interruptedAt}, extra...)
	if err := scan(dest...); err != nil {
		return tpo.Run{}, err
	}
	r.Key = key.String
	if config.Valid {
		r.Config = json.RawMessage(config.String)
	}
	r.Created = fromNano(created)
	r.Finished = nullTime(finished)
	if ownerHost.Valid {
		r.Owner = &tpo.Owner{Host: ownerHost.String, PID: int(ownerPID.Int64), Started: fromNano(ownerStarted.Int64)}
	}
	r.Interrupted = nullTime(interruptedAt)
	return r, nil
}

// runExists returns an error wrapping tpo.ErrNotFound unless run id exists.
func runExists(ctx context.Context, q queryer, id string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM runs WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("run %q: %w", id, tpo.ErrNotFound)
	}
	return err
}

// OpenRun implements tpo.Store. A new run without Created gets the current
// time. Creating a run whose ID exists is an error.
func (db *DB) OpenRun(ctx context.Context, run tpo.Run) (tpo.Run, bool, error) {
	if len(run.Config) > 0 && !json.Valid(run.Config) {
		return tpo.Run{}, false, errors.New("open run: config is not valid JSON")
	}
	var created bool
	err := db.write(ctx, func(tx *sql.Tx) error {
		if run.Key != "" {
			r, err := scanRun(tx.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE key = ?`, run.Key).Scan)
			if err == nil {
				run = r
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		if run.ID == "" {
			run.ID = db.newID()
		}
		if run.Created.IsZero() {
			run.Created = db.now()
		}
		var key, config, finished, ownerHost, ownerPID, ownerStarted, interrupted any
		if run.Key != "" {
			key = run.Key
		}
		if o := run.Owner; o != nil {
			ownerHost, ownerPID, ownerStarted = o.Host, o.PID, unixNano(o.Started)
		}
		if run.Interrupted != nil {
			interrupted = unixNano(*run.Interrupted)
		}
		if len(run.Config) > 0 {
			config = string(run.Config)
		}
		if run.Finished != nil {
			finished = unixNano(*run.Finished)
		}
		var exists int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM runs WHERE id = ?`, run.ID).Scan(&exists)
		if err == nil {
			return fmt.Errorf("run %q already exists", run.ID)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO runs (`+runColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			run.ID, key, run.Kind, run.Source, config, unixNano(run.Created), finished, run.ItemCount,
			ownerHost, ownerPID, ownerStarted, interrupted)
		if err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return tpo.Run{}, false, fmt.Errorf("open run: %w", err)
	}
	return run, created, nil
}

// StartItem implements tpo.Store. Starting an item again returns its state;
// it is an error if the item was recorded at another position, or if another
// item holds seq.
func (db *DB) StartItem(ctx context.Context, runID string, seq int, item tpo.Item) (tpo.ItemState, error) {
	if item.ID == "" {
		return tpo.ItemState{}, errors.New("start item: empty id")
	}
	if seq < 0 {
		return tpo.ItemState{}, fmt.Errorf("start item %q: negative seq %d", item.ID, seq)
	}
	messages, err := json.Marshal(item.Messages)
	if err != nil {
		return tpo.ItemState{}, fmt.Errorf("start item %q: %w", item.ID, err)
	}
	var st tpo.ItemState
	err = db.write(ctx, func(tx *sql.Tx) error {
		if err := runExists(ctx, tx, runID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx,
			`SELECT item_id, seq FROM items WHERE run_id = ? AND (item_id = ? OR seq = ?)`, runID, item.ID, seq)
		if err != nil {
			return err
		}
		found := false
		for rows.Next() {
			var id string
			var s int
			if err := rows.Scan(&id, &s); err != nil {
				rows.Close()
				return err
			}
			switch {
			case id == item.ID && s == seq:
				found = true
			case id == item.ID:
				rows.Close()
				return fmt.Errorf("item %q is recorded at position %d, not %d", id, s, seq)
			default:
				rows.Close()
				return fmt.Errorf("position %d holds item %q", seq, id)
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		if !found {
			now := unixNano(db.now())
			_, err := tx.ExecContext(ctx, `INSERT INTO items (run_id, item_id, seq, messages, prompt, started, updated)
				VALUES (?, ?, ?, ?, ?, ?, ?)`, runID, item.ID, seq, string(messages), item.Prompt(), now, now)
			if err != nil {
				return err
			}
		}
		st, err = getItem(ctx, tx, runID, item.ID)
		return err
	})
	if err != nil {
		return tpo.ItemState{}, fmt.Errorf("start item %q: %w", item.ID, err)
	}
	return st, nil
}

// itemDone returns whether the item is finished, or an error wrapping
// tpo.ErrNotFound if it does not exist.
func itemDone(ctx context.Context, q queryer, runID, itemID string) (bool, error) {
	var done bool
	err := q.QueryRowContext(ctx, `SELECT done FROM items WHERE run_id = ? AND item_id = ?`, runID, itemID).Scan(&done)
	if errors.Is(err, sql.ErrNoRows) {
		if err := runExists(ctx, q, runID); err != nil {
			return false, err
		}
		return false, fmt.Errorf("item %q of run %q: %w", itemID, runID, tpo.ErrNotFound)
	}
	return done, err
}

// stepBest returns the best candidate score of a step, if it has candidates.
func stepBest(s tpo.Step) any {
	if len(s.Candidates) == 0 {
		return nil
	}
	best := math.Inf(-1)
	for _, c := range s.Candidates {
		best = max(best, c.Score)
	}
	return finite(best)
}

// finite returns v, or nil (stored as NULL) when it is NaN or infinite.
func finite(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return v
}

// saveStep upserts one step.
func saveStep(ctx context.Context, tx *sql.Tx, runID, itemID string, step tpo.Step, at time.Time) error {
	if step.Step < 0 {
		return fmt.Errorf("negative step number %d", step.Step)
	}
	data, err := json.Marshal(step)
	if err != nil {
		return fmt.Errorf("step %d: %w", step.Step, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO steps
		(run_id, item_id, step, data, best, requests, prompt_tokens, completion_tokens, saved_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (run_id, item_id, step) DO UPDATE SET
			data = excluded.data, best = excluded.best, requests = excluded.requests,
			prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
			saved_at = excluded.saved_at`,
		runID, itemID, step.Step, string(data), stepBest(step),
		step.Usage.Requests, step.Usage.PromptTokens, step.Usage.CompletionTokens, unixNano(at))
	return err
}

// SaveStep implements tpo.Store. While the item is not finished, its listed
// score, initial best and token counts follow the saved steps.
func (db *DB) SaveStep(ctx context.Context, runID, itemID string, step tpo.Step) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		done, err := itemDone(ctx, tx, runID, itemID)
		if err != nil {
			return err
		}
		now := db.now()
		if err := saveStep(ctx, tx, runID, itemID, step, now); err != nil {
			return err
		}
		if done {
			_, err = tx.ExecContext(ctx, `UPDATE items SET updated = ?,
				steps = (SELECT count(*) FROM steps s WHERE s.run_id = items.run_id AND s.item_id = items.item_id)
				WHERE run_id = ? AND item_id = ?`, unixNano(now), runID, itemID)
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE items SET updated = ?,
			(steps, score, requests, prompt_tokens, completion_tokens) = (
				SELECT count(*), max(best), sum(requests), sum(prompt_tokens), sum(completion_tokens)
				FROM steps s WHERE s.run_id = items.run_id AND s.item_id = items.item_id),
			initial_best = (SELECT best FROM steps s WHERE s.run_id = items.run_id AND s.item_id = items.item_id AND s.step = 0)
			WHERE run_id = ? AND item_id = ?`, unixNano(now), runID, itemID)
		return err
	})
	if err != nil {
		return fmt.Errorf("save step %d of item %q: %w", step.Step, itemID, err)
	}
	return nil
}

// FinishItem implements tpo.Store. The result's steps are saved as by
// SaveStep; a finished item can be finished again, which replaces its result.
func (db *DB) FinishItem(ctx context.Context, runID string, res tpo.Result) error {
	if res.ID == "" {
		return errors.New("finish item: empty id")
	}
	steps := res.Steps
	res.Steps = nil // kept in the steps table
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("finish item %q: %w", res.ID, err)
	}
	hasCandidates := false
	for _, s := range steps {
		hasCandidates = hasCandidates || len(s.Candidates) > 0
	}
	var score, initialBest any
	if hasCandidates {
		score = finite(res.Score)
	}
	if len(steps) > 0 && steps[0].Step == 0 && len(steps[0].Candidates) > 0 {
		initialBest = finite(res.InitialBest)
	}
	err = db.write(ctx, func(tx *sql.Tx) error {
		if _, err := itemDone(ctx, tx, runID, res.ID); err != nil {
			return err
		}
		now := db.now()
		for _, s := range steps {
			if err := saveStep(ctx, tx, runID, res.ID, s, now); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `UPDATE items SET done = 1, finished = ?, updated = ?, result = ?, error = ?,
			score = ?, initial_best = ?, requests = ?, prompt_tokens = ?, completion_tokens = ?,
			steps = (SELECT count(*) FROM steps s WHERE s.run_id = items.run_id AND s.item_id = items.item_id)
			WHERE run_id = ? AND item_id = ?`,
			unixNano(now), unixNano(now), string(data), res.Error, score, initialBest,
			res.Usage.Requests, res.Usage.PromptTokens, res.Usage.CompletionTokens, runID, res.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("finish item %q: %w", res.ID, err)
	}
	return nil
}

// FinishRun implements tpo.Store.
func (db *DB) FinishRun(ctx context.Context, runID string, at time.Time) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE runs SET finished = ? WHERE id = ?`, unixNano(at), runID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("finish run: %w", err)
	}
	return nil
}

// DeleteRun deletes a run with its items and steps.
func (db *DB) DeleteRun(ctx context.Context, runID string) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM runs WHERE id = ?`, runID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete run: %w", err)
	}
	return nil
}
