package tpotest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tpoproject/tpo"
)

// Policy is a deterministic in-memory tpo.Generator. It records every
// request. Without Respond, it answers:
//
//	sample:   "answer <i> to: <prompt>"
//	loss:     "critique <k>"
//	gradient: "instructions <k>"
//	update:   "<improved_response>improved <k>.<i></improved_response>"
//
// where i is the choice index and k the number of requests seen so far.
type Policy struct {
	// Respond, if set, returns choice i of the reply to req; call is the
	// request's 0-based position among all requests.
	Respond func(call int, req tpo.GenerateRequest, i int) string
	// Err, if set, may fail request number call.
	Err func(call int, req tpo.GenerateRequest) error
	// Short, if set, caps the number of choices returned.
	Short int
	// Finish, if set, gives choice i's finish reason ("stop", "length");
	// without it, Generation.Finish is left nil.
	Finish func(call int, req tpo.GenerateRequest, i int) string

	mu    sync.Mutex
	calls []tpo.GenerateRequest
}

// Generate implements tpo.Generator.
func (p *Policy) Generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	if err := ctx.Err(); err != nil {
		return tpo.Generation{}, err
	}
	p.mu.Lock()
	call := len(p.calls)
	p.calls = append(p.calls, req)
	p.mu.Unlock()
	if p.Err != nil {
		if err := p.Err(call, req); err != nil {
			return tpo.Generation{Usage: tpo.Usage{Requests: 1}}, err
		}
	}
	n := max(req.N, 1)
	if p.Short > 0 {
		n = min(n, p.Short)
	}
	g := tpo.Generation{Usage: tpo.Usage{Requests: 1}}
	for i := 0; i < n; i++ {
		var t string
		if p.Respond != nil {
			t = p.Respond(call, req, i)
		} else {
			t = defaultReply(call, req, i)
		}
		g.Texts = append(g.Texts, t)
		if p.Finish != nil {
			g.Finish = append(g.Finish, p.Finish(call, req, i))
		}
		g.Usage.CompletionTokens += len(strings.Fields(t))
	}
	for _, m := range req.Messages {
		g.Usage.PromptTokens += len(strings.Fields(m.Content))
	}
	return g, nil
}

func defaultReply(call int, req tpo.GenerateRequest, i int) string {
	switch req.Stage {
	case tpo.StageLoss:
		return fmt.Sprintf("critique %d", call)
	case tpo.StageGradient:
		return fmt.Sprintf("instructions %d", call)
	case tpo.StageUpdate:
		return fmt.Sprintf("<improved_response>improved %d.%d</improved_response>", call, i)
	default:
		last := ""
		if len(req.Messages) > 0 {
			last = req.Messages[len(req.Messages)-1].Content
		}
		return fmt.Sprintf("answer %d to: %s", i, last)
	}
}

// Calls returns the requests received so far.
func (p *Policy) Calls() []tpo.GenerateRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]tpo.GenerateRequest(nil), p.calls...)
}

// Reward is a deterministic in-memory tpo.Scorer. It records every call.
type Reward struct {
	// Func scores one response; the default is the length of the text in bytes.
	Func func(messages []tpo.Message, response string) float64
	// Err, if set, may fail call number call.
	Err func(call int) error

	mu    sync.Mutex
	calls [][]string
}

// Score implements tpo.Scorer. Each call costs one request.
func (r *Reward) Score(ctx context.Context, messages []tpo.Message, responses []string) (tpo.Scores, error) {
	if err := ctx.Err(); err != nil {
		return tpo.Scores{}, err
	}
	r.mu.Lock()
	call := len(r.calls)
	r.calls = append(r.calls, append([]string(nil), responses...))
	r.mu.Unlock()
	if r.Err != nil {
		if err := r.Err(call); err != nil {
			return tpo.Scores{}, err
		}
	}
	out := make([]float64, len(responses))
	for i, t := range responses {
		if r.Func != nil {
			out[i] = r.Func(messages, t)
		} else {
			out[i] = float64(len(t))
		}
	}
	return tpo.Scores{Values: out, Usage: tpo.Usage{Requests: 1}}, nil
}

// Calls returns the responses of each call so far.
func (r *Reward) Calls() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.calls...)
}

// MemStore is an in-memory tpo.Store.
type MemStore struct {
	mu    sync.Mutex
	runs  map[string]*tpo.Run
	items map[string]map[string]*tpo.ItemState // run → item
	// Saves counts SaveStep calls per run/item/step key "run/item/step".
	Saves  map[string]int
	jobs   memJobs
	claims map[string]tpo.RunClaim // run → its claim
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{runs: map[string]*tpo.Run{}, items: map[string]map[string]*tpo.ItemState{}, Saves: map[string]int{}}
}

// OpenRun implements tpo.Store.
func (m *MemStore) OpenRun(ctx context.Context, run tpo.Run) (tpo.Run, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(run.Config) > 0 && !json.Valid(run.Config) {
		return tpo.Run{}, false, errors.New("open run: config is not valid JSON")
	}
	if run.Key != "" {
		for _, r := range m.runs {
			if r.Key == run.Key {
				return *r, false, nil
			}
		}
	}
	if _, taken := m.runs[run.ID]; taken {
		return tpo.Run{}, false, fmt.Errorf("open run: run %q already exists", run.ID)
	}
	for n := len(m.runs) + 1; run.ID == ""; n++ {
		if _, taken := m.runs[fmt.Sprintf("run%d", n)]; !taken {
			run.ID = fmt.Sprintf("run%d", n)
		}
	}
	if run.Created.IsZero() {
		run.Created = time.Now()
	}
	m.runs[run.ID] = &run
	m.items[run.ID] = map[string]*tpo.ItemState{}
	return run, true, nil
}

// StartItem implements tpo.Store. Like package sqlite, it refuses an item
// recorded at another position, and a position another item holds.
func (m *MemStore) StartItem(ctx context.Context, runID string, seq int, item tpo.Item) (tpo.ItemState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if item.ID == "" {
		return tpo.ItemState{}, errors.New("start item: empty id")
	}
	if seq < 0 {
		return tpo.ItemState{}, fmt.Errorf("start item %q: negative seq %d", item.ID, seq)
	}
	items, ok := m.items[runID]
	if !ok {
		return tpo.ItemState{}, fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
	}
	st, ok := items[item.ID]
	if ok && st.Seq != seq {
		return tpo.ItemState{}, fmt.Errorf("start item %q: item %q is recorded at position %d, not %d", item.ID, item.ID, st.Seq, seq)
	}
	if !ok {
		for id, other := range items {
			if other.Seq == seq {
				return tpo.ItemState{}, fmt.Errorf("start item %q: position %d holds item %q", item.ID, seq, id)
			}
		}
		st = &tpo.ItemState{Seq: seq, Item: item}
		items[item.ID] = st
	}
	return clone(*st), nil
}

// SaveStep implements tpo.Store.
func (m *MemStore) SaveStep(ctx context.Context, runID, itemID string, step tpo.Step) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if step.Step < 0 {
		return fmt.Errorf("save step of item %q: negative step number %d", itemID, step.Step)
	}
	st, err := m.item(runID, itemID)
	if err != nil {
		return err
	}
	m.Saves[fmt.Sprintf("%s/%s/%d", runID, itemID, step.Step)]++
	saveStep(st, step)
	return nil
}

// saveStep puts step among the item's steps, replacing one of its number.
func saveStep(st *tpo.ItemState, step tpo.Step) {
	for i := range st.Steps {
		if st.Steps[i].Step == step.Step {
			st.Steps[i] = step
			return
		}
	}
	st.Steps = append(st.Steps, step)
	sort.Slice(st.Steps, func(i, j int) bool { return st.Steps[i].Step < st.Steps[j].Step })
}

// FinishItem implements tpo.Store. The result's steps are saved as by
// SaveStep (without counting in Saves); the item's result then holds every
// step saved, as in package sqlite.
func (m *MemStore) FinishItem(ctx context.Context, runID string, res tpo.Result) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if res.ID == "" {
		return errors.New("finish item: empty id")
	}
	st, err := m.item(runID, res.ID)
	if err != nil {
		return err
	}
	for _, s := range res.Steps {
		if s.Step < 0 {
			return fmt.Errorf("finish item %q: negative step number %d", res.ID, s.Step)
		}
	}
	for _, s := range res.Steps {
		saveStep(st, s)
	}
	st.Done, st.Result = true, &res
	return nil
}

// FinishRun implements tpo.Store.
func (m *MemStore) FinishRun(ctx context.Context, runID string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.runs[runID]
	if !ok {
		return fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
	}
	r.Finished = &at
	return nil
}

var _ tpo.Interrupter = (*MemStore)(nil)

// UnfinishedRuns implements tpo.Interrupter.
func (m *MemStore) UnfinishedRuns(ctx context.Context, host string) ([]tpo.Run, error) {
	var out []tpo.Run
	for _, r := range m.Runs() {
		if r.Owner != nil && r.Owner.Host == host && r.Finished == nil && r.Interrupted == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// InterruptRun implements tpo.Interrupter.
func (m *MemStore) InterruptRun(ctx context.Context, runID string, at time.Time, reason string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.runs[runID]
	if !ok {
		return false, fmt.Errorf("run %q: %w", runID, tpo.ErrNotFound)
	}
	if r.Finished != nil || r.Interrupted != nil {
		return false, nil
	}
	r.Interrupted = &at
	for id, st := range m.items[runID] {
		if !st.Done {
			st.Done, st.Result = true, &tpo.Result{ID: id, Error: reason}
		}
	}
	return true, nil
}

// Items returns the items of a run in input order.
func (m *MemStore) Items(runID string) []tpo.ItemState {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []tpo.ItemState
	for _, st := range m.items[runID] {
		out = append(out, clone(*st))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// Runs returns every run, oldest first.
func (m *MemStore) Runs() []tpo.Run {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]tpo.Run, 0, len(m.runs))
	for _, r := range m.runs {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Run returns a run by ID.
func (m *MemStore) Run(id string) (tpo.Run, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.runs[id]
	if !ok {
		return tpo.Run{}, false
	}
	return *r, true
}

func (m *MemStore) item(runID, itemID string) (*tpo.ItemState, error) {
	st, ok := m.items[runID][itemID]
	if !ok {
		return nil, fmt.Errorf("run %q item %q: %w", runID, itemID, tpo.ErrNotFound)
	}
	return st, nil
}

func clone(st tpo.ItemState) tpo.ItemState {
	st.Steps = append([]tpo.Step(nil), st.Steps...)
	if st.Result != nil {
		res := *st.Result
		res.Steps = st.Steps
		st.Result = &res
	}
	return st
}
