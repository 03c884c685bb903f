package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tpoproject/tpo"
)

const runSummarySelect = `SELECT r.id, r.key, r.kind, r.source, r.config, r.created, r.finished, r.item_count,
	r.owner_host, r.owner_pid, r.owner_started, r.interrupted,
	count(i.item_id),
	count(*) FILTER (WHERE i.done AND i.error = ''),
	count(*) FILTER (WHERE i.done AND i.error <> ''),
	count(i.score) FILTER (WHERE i.done AND i.error = ''),
	avg(i.score) FILTER (WHERE i.done AND i.error = ''),
	avg(i.score - i.initial_best) FILTER (WHERE i.done AND i.error = ''),
	count(*) FILTER (WHERE i.done AND i.error = '' AND i.score > i.initial_best),
	coalesce(sum(i.requests), 0)::bigint, coalesce(sum(i.prompt_tokens), 0)::bigint,
	coalesce(sum(i.completion_tokens), 0)::bigint,
	min(i.started), max(i.updated)
FROM runs r LEFT JOIN items i ON i.run_id = r.id`

func scanRunSummary(scan func(...any) error) (tpo.RunSummary, error) {
	var (
		s                tpo.RunSummary
		started, updated *time.Time
	)
	run, err := scanRun(scan, &s.Items, &s.Done, &s.Failed, &s.Scored, &s.MeanScore, &s.MeanGain, &s.Improved,
		&s.Usage.Requests, &s.Usage.PromptTokens, &s.Usage.CompletionTokens, &started, &updated)
	if err != nil {
		return tpo.RunSummary{}, err
	}
	s.Run = run
	s.Pending = s.Items - s.Done - s.Failed
	s.Started, s.Updated = utc(started), utc(updated)
	return s, nil
}

// ListRuns returns every run, newest first (then by ID).
func (db *DB) ListRuns(ctx context.Context) ([]tpo.RunSummary, error) {
	rows, err := db.pool.Query(ctx, runSummarySelect+` GROUP BY r.id ORDER BY r.created DESC, r.id COLLATE "C"`)
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
	if !storable(runID) {
		return tpo.RunSummary{}, fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
	}
	s, err := scanRunSummary(db.pool.QueryRow(ctx, runSummarySelect+` WHERE r.id = $1 GROUP BY r.id`, runID).Scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return tpo.RunSummary{}, fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
	}
	if err != nil {
		return tpo.RunSummary{}, fmt.Errorf("get run %q: %w", runID, err)
	}
	return s, nil
}

var orderColumns = map[string]string{
	"seq":      "seq",
	"id":       `item_id COLLATE "C"`,
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

// likePattern returns an ILIKE pattern matching strings that contain s.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(cleanText(s)) + "%"
}

// itemFilter returns the WHERE condition and arguments of f.
func itemFilter(runID string, f tpo.ItemFilter) (string, []any, error) {
	where := []string{"run_id = $1"}
	args := []any{runID}
	switch f.Status {
	case "", tpo.StatusAll:
	case tpo.StatusDone:
		where = append(where, "done AND error = ''")
	case tpo.StatusFailed:
		where = append(where, "done AND error <> ''")
	case tpo.StatusPending:
		where = append(where, "NOT done")
	default:
		return "", nil, fmt.Errorf("unknown status %q (want all, done, failed or pending)", f.Status)
	}
	if f.Query != "" {
		where = append(where, `(item_id ILIKE $2 ESCAPE '\' OR prompt ILIKE $2 ESCAPE '\')`)
		args = append(args, likePattern(f.Query))
	}
	return strings.Join(where, " AND "), args, nil
}

// ListItems returns a page of a run's items, and how many items pass the
// filter in all, from one snapshot.
func (db *DB) ListItems(ctx context.Context, runID string, f tpo.ItemFilter) ([]tpo.ItemSummary, int, error) {
	cond, args, err := itemFilter(runID, f)
	if err != nil {
		return nil, 0, fmt.Errorf("list items: %w", err)
	}
	order, err := orderBy(f.Order)
	if err != nil {
		return nil, 0, fmt.Errorf("list items: %w", err)
	}
	var limit any // NULL: no limit
	if f.Limit > 0 {
		limit = f.Limit
	}
	page := fmt.Sprintf(`SELECT run_id, item_id, seq, left(prompt, %d), done, error, steps,
		score, initial_best, requests, prompt_tokens, completion_tokens, started, updated, finished
		FROM items WHERE %s ORDER BY %s LIMIT $%d OFFSET $%d`, tpo.PromptPreview, cond, order, len(args)+1, len(args)+2)
	var (
		items []tpo.ItemSummary
		total int
	)
	err = db.snapshot(ctx, func(tx pgx.Tx) error {
		if err := db.runExists(ctx, tx, runID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM items WHERE `+cond, args...).Scan(&total); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, page, append(args, limit, max(f.Offset, 0))...)
		if err != nil {
			return err
		}
		items, err = pgx.CollectRows(rows, scanItemSummary)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list items of run %q: %w", runID, err)
	}
	return items, total, nil
}

func scanItemSummary(row pgx.CollectableRow) (tpo.ItemSummary, error) {
	var (
		it       tpo.ItemSummary
		done     bool
		finished *time.Time
	)
	if err := row.Scan(&it.RunID, &it.ID, &it.Seq, &it.Prompt, &done, &it.Error, &it.Steps,
		&it.Score, &it.InitialBest, &it.Usage.Requests, &it.Usage.PromptTokens, &it.Usage.CompletionTokens,
		&it.Started, &it.Updated, &finished); err != nil {
		return it, err
	}
	switch {
	case !done:
		it.Status = tpo.StatusPending
	case it.Error != "":
		it.Status = tpo.StatusFailed
	default:
		it.Status = tpo.StatusDone
	}
	if it.Score != nil && it.InitialBest != nil {
		g := *it.Score - *it.InitialBest
		it.Gain = &g
	}
	it.Started, it.Updated, it.Finished = it.Started.UTC(), it.Updated.UTC(), utc(finished)
	end := it.Updated
	if it.Finished != nil {
		end = *it.Finished
	}
	it.Duration = end.Sub(it.Started)
	return it, nil
}

// snapshot runs fn in a read-only transaction that sees one snapshot.
func (db *DB) snapshot(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// GetItem returns everything stored of one item.
func (db *DB) GetItem(ctx context.Context, runID, itemID string) (tpo.ItemState, error) {
	if !storable(runID) || !storable(itemID) {
		return tpo.ItemState{}, fmt.Errorf("get item: %w", db.notFound(ctx, runID, itemID))
	}
	rows, err := db.pool.Query(ctx, itemSelect+` WHERE i.run_id = $1 AND i.item_id = $2 ORDER BY s.step`, runID, itemID)
	if err != nil {
		return tpo.ItemState{}, fmt.Errorf("get item: %w", err)
	}
	var (
		st    tpo.ItemState
		found bool
	)
	err = eachItem(rows, func(s tpo.ItemState) error {
		st, found = s, true
		return nil
	})
	if err == nil && !found {
		err = db.notFound(ctx, runID, itemID)
	}
	if err != nil {
		return tpo.ItemState{}, fmt.Errorf("get item: %w", err)
	}
	return st, nil
}

// Results calls fn with every item of a run, in seq order, reading one item
// at a time from a single snapshot. It stops at, and returns, fn's first
// error. fn may use the store (on another connection of the pool), but
// writes it makes are not seen by Results.
func (db *DB) Results(ctx context.Context, runID string, fn func(tpo.ItemState) error) error {
	return db.snapshot(ctx, func(tx pgx.Tx) error {
		if err := db.runExists(ctx, tx, runID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, itemSelect+` WHERE i.run_id = $1 ORDER BY i.seq, s.step`, runID)
		if err != nil {
			return err
		}
		return eachItem(rows, fn)
	})
}

// itemSelect reads items with their steps, one row per step; a WHERE and
// an ORDER BY i.seq, s.step follow.
const itemSelect = `SELECT i.seq, i.item_id, i.messages, i.done, i.result, s.data
	FROM items i LEFT JOIN steps s ON s.run_id = i.run_id AND s.item_id = i.item_id`

// eachItem calls fn with the state of each item of rows (of itemSelect),
// assembling each from its rows, and closes rows.
func eachItem(rows pgx.Rows, fn func(tpo.ItemState) error) error {
	defer rows.Close()
	var (
		cur    *tpo.ItemState
		result []byte
	)
	flush := func() error {
		if cur == nil {
			return nil
		}
		if cur.Done && result != nil {
			var res tpo.Result
			if err := json.Unmarshal(result, &res); err != nil {
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
			seq           int
			id            string
			messages      []byte
			done          bool
			res, stepData []byte
		)
		if err := rows.Scan(&seq, &id, &messages, &done, &res, &stepData); err != nil {
			return err
		}
		if cur == nil || cur.Seq != seq {
			if err := flush(); err != nil {
				return err
			}
			cur = &tpo.ItemState{Seq: seq, Item: tpo.Item{ID: id}, Done: done}
			result = res
			if err := json.Unmarshal(messages, &cur.Item.Messages); err != nil {
				return fmt.Errorf("item %q: messages: %w", id, err)
			}
		}
		if stepData != nil {
			var s tpo.Step
			if err := json.Unmarshal(stepData, &s); err != nil {
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
