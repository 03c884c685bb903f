package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tpoproject/tpo"
)

const runSummarySelect = `SELECT r.id, r.key, r.kind, r.source, r.config, r.created, r.finished, r.item_count,
	r.owner_host, r.owner_pid, r.owner_started, r.interrupted,
	count(i.item_id),
	coalesce(sum(i.done AND i.error = ''), 0),
	coalesce(sum(i.done AND i.error != ''), 0),
	count(CASE WHEN i.done AND i.error = '' THEN i.score END),
	avg(CASE WHEN i.done AND i.error = '' THEN i.score END),
	avg(CASE WHEN i.done AND i.error = '' THEN i.score - i.initial_best END),
	coalesce(sum(i.done AND i.error = '' AND i.score > i.initial_best), 0),
	coalesce(sum(i.requests), 0), coalesce(sum(i.prompt_tokens), 0), coalesce(sum(i.completion_tokens), 0),
	min(i.started), max(i.updated)
FROM runs r LEFT JOIN items i ON i.run_id = r.id`

func scanRunSummary(scan func(...any) error) (tpo.RunSummary, error) {
	var (
		s                   tpo.RunSummary
		meanScore, meanGain sql.NullFloat64
		started, updated    sql.NullInt64
	)
	run, err := scanRun(scan, &s.Items, &s.Done, &s.Failed, &s.Scored, &meanScore, &meanGain, &s.Improved,
		&s.Usage.Requests, &s.Usage.PromptTokens, &s.Usage.CompletionTokens, &started, &updated)
	if err != nil {
		return tpo.RunSummary{}, err
	}
	s.Run = run
	s.Pending = s.Items - s.Done - s.Failed
	s.MeanScore = nullFloat(meanScore)
	s.MeanGain = nullFloat(meanGain)
	s.Started = nullTime(started)
	s.Updated = nullTime(updated)
	return s, nil
}

// ListRuns returns every run, newest first.
func (db *DB) ListRuns(ctx context.Context) ([]tpo.RunSummary, error) {
	rows, err := db.db.QueryContext(ctx, runSummarySelect+` GROUP BY r.id ORDER BY r.created DESC, r.id`)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var runs []tpo.RunSummary
	for rows.Next() {
		s, err := scanRunSummary(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		runs = append(runs, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return runs, nil
}

// GetRun returns one run with its aggregates.
func (db *DB) GetRun(ctx context.Context, runID string) (tpo.RunSummary, error) {
	s, err := scanRunSummary(db.db.QueryRowContext(ctx, runSummarySelect+` WHERE r.id = ? GROUP BY r.id`, runID).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return tpo.RunSummary{}, fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
	}
	if err != nil {
		return tpo.RunSummary{}, fmt.Errorf("get run %q: %w", runID, err)
	}
	return s, nil
}

var orderColumns = map[string]string{
	"seq":      "seq",
	"id":       "item_id",
	"score":    "score",
	"gain":     "(score - initial_best)",
	"tokens":   "(prompt_tokens + completion_tokens)",
	"duration": "(coalesce(finished, updated) - started)",
}

// orderBy returns the ORDER BY clause for o.
func orderBy(o tpo.ItemOrder) (string, error) {
	key, desc, err := o.Key()
	if err != nil {
		return "", err
	}
	dir := "ASC"
	if desc {
		dir = "DESC"
	}
	return orderColumns[key] + " " + dir + " NULLS LAST, seq", nil
}

// likePattern returns a LIKE pattern matching strings that contain s.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

// ListItems returns a page of a run's items, and how many items pass the
// filter in all.
func (db *DB) ListItems(ctx context.Context, runID string, f tpo.ItemFilter) ([]tpo.ItemSummary, int, error) {
	where := []string{"run_id = ?"}
	args := []any{runID}
	switch f.Status {
	case "", tpo.StatusAll:
	case tpo.StatusDone:
		where = append(where, "done AND error = ''")
	case tpo.StatusFailed:
		where = append(where, "done AND error != ''")
	case tpo.StatusPending:
		where = append(where, "NOT done")
	default:
		return nil, 0, fmt.Errorf("list items: unknown status %q (want all, done, failed or pending)", f.Status)
	}
	if f.Query != "" {
		where = append(where, `(item_id LIKE ? ESCAPE '\' OR prompt LIKE ? ESCAPE '\')`)
		p := likePattern(f.Query)
		args = append(args, p, p)
	}
	order, err := orderBy(f.Order)
	if err != nil {
		return nil, 0, fmt.Errorf("list items: %w", err)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = -1 // no limit
	}
	cond := strings.Join(where, " AND ")

	var (
		items []tpo.ItemSummary
		total int
	)
	err = db.read(ctx, func(tx *sql.Tx) error {
		if err := runExists(ctx, tx, runID); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM items WHERE `+cond, args...).Scan(&total); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, fmt.Sprintf(`SELECT run_id, item_id, seq, substr(prompt, 1, %d), done, error, steps,
			score, initial_best, requests, prompt_tokens, completion_tokens, started, updated, finished
			FROM items WHERE %s ORDER BY %s LIMIT ? OFFSET ?`, tpo.PromptPreview, cond, order),
			append(args, limit, max(f.Offset, 0))...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				it                 tpo.ItemSummary
				done               bool
				score, initialBest sql.NullFloat64
				started, updated   int64
				finished           sql.NullInt64
			)
			if err := rows.Scan(&it.RunID, &it.ID, &it.Seq, &it.Prompt, &done, &it.Error, &it.Steps,
				&score, &initialBest, &it.Usage.Requests, &it.Usage.PromptTokens, &it.Usage.CompletionTokens,
				&started, &updated, &finished); err != nil {
				return err
			}
			switch {
			case !done:
				it.Status = tpo.StatusPending
			case it.Error != "":
				it.Status = tpo.StatusFailed
			default:
				it.Status = tpo.StatusDone
			}
			it.Score, it.InitialBest = nullFloat(score), nullFloat(initialBest)
			if score.Valid && initialBest.Valid {
				g := score.Float64 - initialBest.Float64
				it.Gain = &g
			}
			it.Started, it.Updated, it.Finished = fromNano(started), fromNano(updated), nullTime(finished)
			end := it.Updated
			if it.Finished != nil {
				end = *it.Finished
			}
			it.Duration = end.Sub(it.Started)
			items = append(items, it)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list items of run %q: %w", runID, err)
	}
	return items, total, nil
}

// GetItem returns everything stored of one item.
func (db *DB) GetItem(ctx context.Context, runID, itemID string) (tpo.ItemState, error) {
	var st tpo.ItemState
	err := db.read(ctx, func(tx *sql.Tx) error {
		var err error
		st, err = getItem(ctx, tx, runID, itemID)
		return err
	})
	if err != nil {
		return tpo.ItemState{}, fmt.Errorf("get item: %w", err)
	}
	return st, nil
}

// Results calls fn with every item of a run, in seq order, reading one item
// at a time from a single snapshot. It stops at, and returns, fn's first
// error. fn may use the store, but writes it makes are not seen by Results.
func (db *DB) Results(ctx context.Context, runID string, fn func(tpo.ItemState) error) error {
	return db.read(ctx, func(tx *sql.Tx) error {
		if err := runExists(ctx, tx, runID); err != nil {
			return err
		}
		return eachItem(ctx, tx, fn, `i.run_id = ?`, runID)
	})
}

// getItem reads one item, or returns an error wrapping tpo.ErrNotFound.
func getItem(ctx context.Context, q queryer, runID, itemID string) (tpo.ItemState, error) {
	var (
		st    tpo.ItemState
		found bool
	)
	err := eachItem(ctx, q, func(s tpo.ItemState) error {
		st, found = s, true
		return nil
	}, `i.run_id = ? AND i.item_id = ?`, runID, itemID)
	if err != nil {
		return tpo.ItemState{}, err
	}
	if !found {
		if err := runExists(ctx, q, runID); err != nil {
			return tpo.ItemState{}, err
		}
		return tpo.ItemState{}, fmt.Errorf("item %q of run %q: %w", itemID, runID, tpo.ErrNotFound)
	}
	return st, nil
}

// eachItem calls fn with the state of each item matching cond, in seq
// order, assembling items from one streamed join of items and steps.
func eachItem(ctx context.Context, q queryer, fn func(tpo.ItemState) error, cond string, args ...any) error {
	rows, err := q.QueryContext(ctx, `SELECT i.seq, i.item_id, i.messages, i.done, i.result, s.data
		FROM items i LEFT JOIN steps s ON s.run_id = i.run_id AND s.item_id = i.item_id
		WHERE `+cond+` ORDER BY i.seq, s.step`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()

	var (
		cur    *tpo.ItemState
		result sql.NullString
	)
	flush := func() error {
		if cur == nil {
			return nil
		}
		if cur.Done && result.Valid {
			var res tpo.Result
			if err := json.Unmarshal([]byte(result.String), &res); err != nil {
				return fmt.Errorf("item %q: result: %w", cur.Item.ID, err)
			}
			res.Steps = cur.Steps
			cur.Result = &res
		}
		st := *cur
		cur = nil
		return fn(st)
	}
	for rows.Next() {
		var (
			seq      int
			id       string
			messages string
			done     bool
			res      sql.NullString
			data     sql.NullString
		)
		if err := rows.Scan(&seq, &id, &messages, &done, &res, &data); err != nil {
			return err
		}
		if cur == nil || cur.Seq != seq {
			if err := flush(); err != nil {
				return err
			}
			cur = &tpo.ItemState{Seq: seq, Item: tpo.Item{ID: id}, Done: done}
			result = res
			if err := json.Unmarshal([]byte(messages), &cur.Item.Messages); err != nil {
				return fmt.Errorf("item %q: messages: %w", id, err)
			}
		}
		if data.Valid {
			var s tpo.Step
			if err := json.Unmarshal([]byte(data.String), &s); err != nil {
				return fmt.Errorf("item %q: step: %w", id, err)
			}
			cur.Steps = append(cur.Steps, s)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return flush()
}
