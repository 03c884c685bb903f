package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tpoproject/tpo"
)

// Status is the state of an item, and a filter on it.
type Status string

// The statuses.
const (
	StatusAll     Status = "all"     // a filter that keeps every item
	StatusDone    Status = "done"    // finished without error
	StatusFailed  Status = "failed"  // finished with an error
	StatusPending Status = "pending" // not finished
)

// RunSummary is a run with aggregates over its items.
type RunSummary struct {
	tpo.Run
	Items   int `json:"items"`   // items recorded
	Done    int `json:"done"`    // items finished without error
	Failed  int `json:"failed"`  // items finished with an error
	Pending int `json:"pending"` // items not finished
	// Scored counts the done items with a score; the means are over them,
	// and nil when there is none.
	Scored    int      `json:"scored"`
	MeanScore *float64 `json:"mean_score"`
	// MeanGain is the mean of Score - InitialBest: what the optimization
	// added to best of N.
	MeanGain *float64 `json:"mean_gain"`
	// Improved counts the done items whose score beat their initial best.
	Improved int       `json:"improved"`
	Usage    tpo.Usage `json:"usage"` // over every item, finished or not
	// Started is when the first item was started, Updated when the last
	// step or result was saved; nil for a run without items.
	Started *time.Time `json:"started"`
	Updated *time.Time `json:"updated"`
}

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

func scanRunSummary(scan func(...any) error) (RunSummary, error) {
	var (
		s                   RunSummary
		meanScore, meanGain sql.NullFloat64
		started, updated    sql.NullInt64
	)
	run, err := scanRun(scan, &s.Items, &s.Done, &s.Failed, &s.Scored, &meanScore, &meanGain, &s.Improved,
		&s.Usage.Requests, &s.Usage.PromptTokens, &s.Usage.CompletionTokens, &started, &updated)
	if err != nil {
		return RunSummary{}, err
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
func (db *DB) ListRuns(ctx context.Context) ([]RunSummary, error) {
	rows, err := db.db.QueryContext(ctx, runSummarySelect+` GROUP BY r.id ORDER BY r.created DESC, r.id`)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var runs []RunSummary
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
func (db *DB) GetRun(ctx context.Context, runID string) (RunSummary, error) {
	s, err := scanRunSummary(db.db.QueryRowContext(ctx, runSummarySelect+` WHERE r.id = ? GROUP BY r.id`, runID).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return RunSummary{}, fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
	}
	if err != nil {
		return RunSummary{}, fmt.Errorf("get run %q: %w", runID, err)
	}
	return s, nil
}

// ItemSummary is what a listing shows of an item.
type ItemSummary struct {
	RunID  string `json:"run_id"`
	ID     string `json:"id"`
	Seq    int    `json:"seq"`
	Prompt string `json:"prompt"` // the last user turn, cut to PromptPreview characters
	Status Status `json:"status"` // done, failed or pending
	Error  string `json:"error,omitempty"`
	Steps  int    `json:"steps"` // steps saved
	// Score is the best score so far (the result's once done), InitialBest
	// the best score of step 0, and Gain the difference; nil while unknown.
	Score       *float64  `json:"score"`
	InitialBest *float64  `json:"initial_best"`
	Gain        *float64  `json:"gain"`
	Usage       tpo.Usage `json:"usage"`
	Started     time.Time `json:"started"`
	// Updated is when the item last changed; Finished when it finished.
	Updated  time.Time  `json:"updated"`
	Finished *time.Time `json:"finished,omitempty"`
	// Duration is the wall time from start to finish, or to the last
	// update while pending (including any time the run was stopped).
	Duration time.Duration `json:"duration_ns"`
}

// PromptPreview is how many characters of the prompt ItemSummary holds.
const PromptPreview = 200

// Order sorts an item listing: one of "seq" (the default), "id", "score",
// "gain", "tokens" or "duration", ascending, or descending with a "-" prefix
// ("-score" lists the best first). Items without a score or gain come last
// either way; ties are broken by seq.
type Order string

var orderColumns = map[string]string{
	"seq":      "seq",
	"id":       "item_id",
	"score":    "score",
	"gain":     "(score - initial_best)",
	"tokens":   "(prompt_tokens + completion_tokens)",
	"duration": "(coalesce(finished, updated) - started)",
}

// orderBy returns the ORDER BY clause for o.
func (o Order) orderBy() (string, error) {
	name, dir := string(o), "ASC"
	if strings.HasPrefix(name, "-") {
		name, dir = name[1:], "DESC"
	}
	if name == "" {
		name = "seq"
	}
	col, ok := orderColumns[name]
	if !ok {
		return "", fmt.Errorf("unknown order %q (want seq, id, score, gain, tokens or duration, optionally with a - prefix)", string(o))
	}
	return col + " " + dir + " NULLS LAST, seq", nil
}

// ItemFilter selects and orders items of a run.
type ItemFilter struct {
	// Query keeps items whose id or prompt contains it (case-insensitive
	// for ASCII letters).
	Query  string
	Status Status // "" keeps every item, like StatusAll
	Order  Order
	Limit  int // at most this many items; <= 0 means no limit
	Offset int // skip this many items first
}

// likePattern returns a LIKE pattern matching strings that contain s.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

// ListItems returns a page of a run's items, and how many items pass the
// filter in all.
func (db *DB) ListItems(ctx context.Context, runID string, f ItemFilter) ([]ItemSummary, int, error) {
	where := []string{"run_id = ?"}
	args := []any{runID}
	switch f.Status {
	case "", StatusAll:
	case StatusDone:
		where = append(where, "done AND error = ''")
	case StatusFailed:
		where = append(where, "done AND error != ''")
	case StatusPending:
		where = append(where, "NOT done")
	default:
		return nil, 0, fmt.Errorf("list items: unknown status %q (want all, done, failed or pending)", f.Status)
	}
	if f.Query != "" {
		where = append(where, `(item_id LIKE ? ESCAPE '\' OR prompt LIKE ? ESCAPE '\')`)
		p := likePattern(f.Query)
		args = append(args, p, p)
	}
	order, err := f.Order.orderBy()
	if err != nil {
		return nil, 0, fmt.Errorf("list items: %w", err)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = -1 // no limit
	}
	cond := strings.Join(where, " AND ")

	var (
		items []ItemSummary
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
			FROM items WHERE %s ORDER BY %s LIMIT ? OFFSET ?`, PromptPreview, cond, order),
			append(args, limit, max(f.Offset, 0))...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				it                 ItemSummary
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
				it.Status = StatusPending
			case it.Error != "":
				it.Status = StatusFailed
			default:
				it.Status = StatusDone
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
