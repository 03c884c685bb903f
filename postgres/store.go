package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tpoproject/tpo"
)

var _ tpo.Store = (*DB)(nil)

const runColumns = `id, key, kind, source, config, created, finished, item_count, owner_host, owner_pid, owner_started, interrupted`

// scanRun reads the runColumns of a row, then extra.
func scanRun(scan func(...any) error, extra ...any) (tpo.Run, error) {
	var (
		r             tpo.Run
		key           *string
		config        []byte
		finished      *time.Time
		ownerHost     *string
		ownerPID      *int32
		ownerStarted  *time.Time
		interruptedAt *time.Time
	)
	dest := append([]any{&r.ID, &key, &r.Kind, &r.Source, &config, &r.Created, &finished, &r.ItemCount,
		&ownerHost, &ownerPID, &ownerStarted, &interruptedAt}, extra...)
	if err := scan(dest...); err != nil {
		return tpo.Run{}, err
	}
	if ownerHost != nil && ownerPID != nil && ownerStarted != nil {
		r.Owner = &tpo.Owner{Host: *ownerHost, PID: int(*ownerPID), Started: ownerStarted.UTC()}
	}
	r.Interrupted = utc(interruptedAt)
	if key != nil {
		r.Key = *key
	}
	if config != nil {
		r.Config = json.RawMessage(config)
	}
	r.Created = r.Created.UTC()
	r.Finished = utc(finished)
	return r, nil
}

// utc returns *t in UTC, or nil.
func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// isForeignKeyViolation reports whether err is PostgreSQL's refusal of a
// row that refers to a missing one.
func isForeignKeyViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}

// notFound returns the error for an item that is missing, or whose run is.
func (db *DB) notFound(ctx context.Context, runID, itemID string) error {
	if err := db.runExists(ctx, db.pool, runID); err != nil {
		return err
	}
	return fmt.Errorf("item %q of run %q: %w", itemID, runID, tpo.ErrNotFound)
}

// runExists returns an error wrapping tpo.ErrNotFound unless run id exists.
func (db *DB) runExists(ctx context.Context, q querier, id string) error {
	if !storable(id) {
		return fmt.Errorf("run %q: %w", id, tpo.ErrNotFound)
	}
	var one int
	err := q.QueryRow(ctx, `SELECT 1 FROM runs WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("run %q: %w", id, tpo.ErrNotFound)
	}
	return err
}

// OpenRun implements tpo.Store. A new run without Created gets the
// database's time. Creating a run whose ID exists is an error.
func (db *DB) OpenRun(ctx context.Context, run tpo.Run) (tpo.Run, bool, error) {
	if len(run.Config) > 0 && !json.Valid(run.Config) {
		return tpo.Run{}, false, errors.New("open run: config is not valid JSON")
	}
	if err := errors.Join(checkKey("run id", run.ID), checkKey("run key", run.Key)); err != nil {
		return tpo.Run{}, false, fmt.Errorf("open run: %w", err)
	}
	run.Kind, run.Source = cleanText(run.Kind), cleanText(run.Source)
	// A key taken by another process between the lookup and the insert is
	// found on the next round; a clash of random IDs gets another ID.
	for range 5 {
		if r, ok, err := db.runByKey(ctx, run.Key); err != nil || ok {
			return r, false, err
		}
		r, err := db.insertRun(ctx, run)
		if err == nil {
			return r, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return tpo.Run{}, false, fmt.Errorf("open run: %w", err)
		}
		if run.ID == "" {
			continue
		}
		if r, ok, err := db.runByKey(ctx, run.Key); err != nil || ok {
			return r, false, err
		}
		if err := db.runExists(ctx, db.pool, run.ID); err == nil {
			return tpo.Run{}, false, fmt.Errorf("open run: run %q already exists", run.ID)
		}
	}
	return tpo.Run{}, false, errors.New("open run: the run's key or ID kept being taken and released by others")
}

// runByKey returns the run with the given key, if there is one; an empty
// key finds none.
func (db *DB) runByKey(ctx context.Context, key string) (tpo.Run, bool, error) {
	if key == "" {
		return tpo.Run{}, false, nil
	}
	r, err := scanRun(db.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM runs WHERE key = $1`, key).Scan)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return tpo.Run{}, false, nil
	case err != nil:
		return tpo.Run{}, false, fmt.Errorf("open run: %w", err)
	}
	return r, true, nil
}

// insertRun inserts run unless its ID or key is taken (pgx.ErrNoRows), and
// returns it as stored.
func (db *DB) insertRun(ctx context.Context, run tpo.Run) (tpo.Run, error) {
	id := run.ID
	if id == "" {
		id = db.newID()
	}
	var key, config, created, ownerHost, ownerPID, ownerStarted any
	if run.Key != "" {
		key = run.Key
	}
	if o := run.Owner; o != nil {
		ownerHost, ownerPID, ownerStarted = cleanText(o.Host), o.PID, o.Started
	}
	if len(run.Config) > 0 {
		config = string(run.Config)
	}
	if !run.Created.IsZero() {
		created = run.Created
	}
	return scanRun(db.pool.QueryRow(ctx, `INSERT INTO runs (`+runColumns+`)
		VALUES ($1, $2, $3, $4, $5, coalesce($6::timestamptz, now()), $7, $8, $9, $10, $11, $12)
		ON CONFLICT DO NOTHING RETURNING `+runColumns,
		id, key, run.Kind, run.Source, config, created, run.Finished, run.ItemCount,
		ownerHost, ownerPID, ownerStarted, run.Interrupted).Scan)
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
	if err := checkKey("item id", item.ID); err != nil {
		return tpo.ItemState{}, fmt.Errorf("start item: %w", err)
	}
	messages, err := json.Marshal(item.Messages)
	if err != nil {
		return tpo.ItemState{}, fmt.Errorf("start item %q: %w", item.ID, err)
	}
	st, err := db.startItem(ctx, runID, seq, item, messages)
	if err != nil {
		return tpo.ItemState{}, fmt.Errorf("start item %q: %w", item.ID, err)
	}
	return st, nil
}

// startItem inserts the item unless it is there, looks for conflicts and
// reads its state: one round trip.
func (db *DB) startItem(ctx context.Context, runID string, seq int, item tpo.Item, messages []byte) (tpo.ItemState, error) {
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO items (run_id, item_id, seq, messages, prompt, started, updated)
		VALUES ($1, $2, $3, $4, $5, now(), now()) ON CONFLICT DO NOTHING`,
		runID, item.ID, seq, string(messages), cleanText(item.Prompt()))
	b.Queue(`SELECT item_id, seq FROM items WHERE run_id = $1 AND (item_id = $2 OR seq = $3)`, runID, item.ID, seq)
	b.Queue(itemSelect+` WHERE i.run_id = $1 AND i.item_id = $2 ORDER BY s.step`, runID, item.ID)
	br := db.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		if isForeignKeyViolation(err) {
			return tpo.ItemState{}, fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
		}
		return tpo.ItemState{}, err
	}
	if err := seqConflict(br, item.ID, seq); err != nil {
		return tpo.ItemState{}, err
	}
	rows, err := br.Query()
	if err != nil {
		return tpo.ItemState{}, err
	}
	var st tpo.ItemState
	found := false
	err = eachItem(rows, func(s tpo.ItemState) error {
		st, found = s, true
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("item %q of run %q: vanished as it was started", item.ID, runID)
	}
	return st, err
}

// seqConflict reads the items holding id or seq and returns an error if
// id is at another position or seq holds another item.
func seqConflict(br pgx.BatchResults, id string, seq int) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			otherID  string
			otherSeq int
		)
		if err := rows.Scan(&otherID, &otherSeq); err != nil {
			return err
		}
		switch {
		case otherID == id && otherSeq != seq:
			return fmt.Errorf("item %q is recorded at position %d, not %d", id, otherSeq, seq)
		case otherID != id:
			return fmt.Errorf("position %d holds item %q", seq, otherID)
		}
	}
	return rows.Err()
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

// queueStep queues the upsert of one step.
func queueStep(b *pgx.Batch, runID, itemID string, step tpo.Step) error {
	if step.Step < 0 {
		return fmt.Errorf("negative step number %d", step.Step)
	}
	data, err := json.Marshal(step)
	if err != nil {
		return fmt.Errorf("step %d: %w", step.Step, err)
	}
	b.Queue(`INSERT INTO steps
		(run_id, item_id, step, data, best, requests, prompt_tokens, completion_tokens, saved_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
		ON CONFLICT (run_id, item_id, step) DO UPDATE SET
			data = excluded.data, best = excluded.best, requests = excluded.requests,
			prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
			saved_at = excluded.saved_at`,
		runID, itemID, step.Step, string(data), stepBest(step),
		step.Usage.Requests, step.Usage.PromptTokens, step.Usage.CompletionTokens)
	return nil
}

// lockItem is the first statement of a write to an item: the item's row
// stays locked until the write commits, so that writes of one item follow
// each other and each sees the steps of the one before.
const lockItem = `SELECT 1 FROM items WHERE run_id = $1 AND item_id = $2 FOR NO KEY UPDATE`

// updateFromSteps sets an item's step count and, while it is not done, its
// score, initial best and usage from its steps.
const updateFromSteps = `UPDATE items i SET updated = now(), steps = a.n,
	score = CASE WHEN i.done THEN i.score ELSE a.best END,
	initial_best = CASE WHEN i.done THEN i.initial_best ELSE a.initial_best END,
	requests = CASE WHEN i.done THEN i.requests ELSE a.requests END,
	prompt_tokens = CASE WHEN i.done THEN i.prompt_tokens ELSE a.prompt_tokens END,
	completion_tokens = CASE WHEN i.done THEN i.completion_tokens ELSE a.completion_tokens END
	FROM (SELECT count(*) AS n, max(best) AS best, max(best) FILTER (WHERE step = 0) AS initial_best,
			coalesce(sum(requests), 0) AS requests, coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
			coalesce(sum(completion_tokens), 0) AS completion_tokens
		FROM steps WHERE run_id = $1 AND item_id = $2) a
	WHERE i.run_id = $1 AND i.item_id = $2`

// SaveStep implements tpo.Store. While the item is not finished, its listed
// score, initial best and token counts follow the saved steps.
func (db *DB) SaveStep(ctx context.Context, runID, itemID string, step tpo.Step) error {
	b := &pgx.Batch{}
	b.Queue(lockItem, runID, itemID)
	err := queueStep(b, runID, itemID, step)
	if err == nil {
		b.Queue(updateFromSteps, runID, itemID)
		err = db.writeItem(ctx, b, runID, itemID)
	}
	if err != nil {
		return fmt.Errorf("save step %d of item %q: %w", step.Step, itemID, err)
	}
	return nil
}

// writeItem sends a batch that starts with lockItem and ends with an
// UPDATE of the item, and returns an error wrapping tpo.ErrNotFound when
// the item is missing.
func (db *DB) writeItem(ctx context.Context, b *pgx.Batch, runID, itemID string) error {
	br := db.pool.SendBatch(ctx, b)
	var (
		tag pgconn.CommandTag
		err error
	)
	for range b.Len() {
		if tag, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	switch {
	case isForeignKeyViolation(err) || err == nil && tag.RowsAffected() == 0:
		return db.notFound(ctx, runID, itemID)
	case err != nil:
		return err
	}
	return nil
}

// FinishItem implements tpo.Store. The result's steps are saved as by
// SaveStep; a finished item can be finished again, which replaces its result.
func (db *DB) FinishItem(ctx context.Context, runID string, res tpo.Result) error {
	if res.ID == "" {
		return errors.New("finish item: empty id")
	}
	if err := db.finishItem(ctx, runID, res); err != nil {
		return fmt.Errorf("finish item %q: %w", res.ID, err)
	}
	return nil
}

func (db *DB) finishItem(ctx context.Context, runID string, res tpo.Result) error {
	steps := res.Steps
	res.Steps = nil // kept in the steps table
	data, err := json.Marshal(res)
	if err != nil {
		return err
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
	b := &pgx.Batch{}
	b.Queue(lockItem, runID, res.ID)
	for _, s := range steps {
		if err := queueStep(b, runID, res.ID, s); err != nil {
			return err
		}
	}
	b.Queue(`UPDATE items SET done = true, finished = now(), updated = now(), result = $3, error = $4,
		score = $5, initial_best = $6, requests = $7, prompt_tokens = $8, completion_tokens = $9,
		steps = (SELECT count(*) FROM steps s WHERE s.run_id = $1 AND s.item_id = $2)
		WHERE run_id = $1 AND item_id = $2`,
		runID, res.ID, string(data), cleanText(res.Error), score, initialBest,
		res.Usage.Requests, res.Usage.PromptTokens, res.Usage.CompletionTokens)
	return db.writeItem(ctx, b, runID, res.ID)
}

// FinishRun implements tpo.Store.
func (db *DB) FinishRun(ctx context.Context, runID string, at time.Time) error {
	tag, err := db.pool.Exec(ctx, `UPDATE runs SET finished = $2 WHERE id = $1`, runID, at)
	if err == nil && tag.RowsAffected() == 0 {
		err = fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("finish run: %w", err)
	}
	return nil
}

// DeleteRun deletes a run with its items and steps.
func (db *DB) DeleteRun(ctx context.Context, runID string) error {
	if !storable(runID) {
		return fmt.Errorf("delete run: run %q: %w", runID, tpo.ErrNotFound)
	}
	tag, err := db.pool.Exec(ctx, `DELETE FROM runs WHERE id = $1`, runID)
	if err == nil && tag.RowsAffected() == 0 {
		err = fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete run: %w", err)
	}
	return nil
}
