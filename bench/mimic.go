package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/tpoproject/tpo"
)

// Schedule is how Mimic orders the work of a chunk.
type Schedule string

// The schedules.
const (
	// StageMajor runs one stage at a time across the chunk: the samples of
	// every item of the chunk, then all their scores, then all losses, all
	// gradients, all updates, all scores, and so on, with a barrier after
	// each stage. Workers calls are in flight at once.
	StageMajor Schedule = "stage"
	// ItemMajor is what the reference script's thread pool does: each of
	// Workers threads takes an item of the chunk and runs it to the end,
	// stage after stage; the next chunk starts when the whole chunk is done.
	ItemMajor Schedule = "item"
)

// ParseSchedule returns the schedule named s.
func ParseSchedule(s string) (Schedule, error) {
	switch sc := Schedule(s); sc {
	case StageMajor, ItemMajor:
		return sc, nil
	}
	return "", fmt.Errorf("unknown schedule %q (want %s or %s)", s, StageMajor, ItemMajor)
}

// Defaults of the paper's reference script: 4 threads, chunks of 4 prompts
// per thread.
const (
	DefaultMimicWorkers   = 4
	DefaultMimicChunkSize = 16
)

// Mimic optimizes items the way the paper's reference script schedules the
// work: the dataset is cut into chunks of ChunkSize items, a chunk is
// processed by Workers workers, and the next chunk starts only when every
// item of the current one is finished. It sends the same requests as
// tpo.Optimizer (same templates, seeds, sampling settings, chosen and
// rejected responses, score caching), so that a comparison with tpo.Runner
// measures scheduling alone. It keeps no store, and does not retry a
// request with a smaller text budget after a context overflow.
type Mimic struct {
	Policy    tpo.Generator
	Reward    tpo.Scorer
	Config    tpo.Config
	Templates *tpo.Templates // nil: tpo.DefaultTemplates()
	Workers   int            // default DefaultMimicWorkers
	ChunkSize int            // default DefaultMimicChunkSize
	Schedule  Schedule       // default StageMajor
	// OnItem, if set, is called with each item's result as it finishes.
	// It may be called from several goroutines at once.
	OnItem func(tpo.Result)
}

// Run optimizes items and returns their results in input order. A failed
// item has its Error set; Run itself fails only when ctx ends or the
// configuration is invalid.
func (m *Mimic) Run(ctx context.Context, items []tpo.Item) ([]tpo.Result, error) {
	if err := m.Config.Validate(); err != nil {
		return nil, fmt.Errorf("mimic: config: %w", err)
	}
	tmpl := m.Templates
	if tmpl == nil {
		tmpl = tpo.DefaultTemplates()
	}
	workers := m.Workers
	if workers <= 0 {
		workers = DefaultMimicWorkers
	}
	chunk := m.ChunkSize
	if chunk <= 0 {
		chunk = DefaultMimicChunkSize
	}
	sched := m.Schedule
	if sched == "" {
		sched = StageMajor
	}
	if _, err := ParseSchedule(string(sched)); err != nil {
		return nil, fmt.Errorf("mimic: %w", err)
	}
	stages := m.stages()
	out := make([]tpo.Result, 0, len(items))
	for start := 0; start < len(items); start += chunk {
		end := min(start+chunk, len(items))
		states := make([]*mimicItem, end-start)
		for i, it := range items[start:end] {
			states[i] = newMimicItem(m, tmpl, it)
		}
		switch sched {
		case StageMajor:
			for _, st := range stages {
				forEach(ctx, workers, len(states), func(i int) { states[i].run(ctx, st) })
			}
			for _, s := range states {
				m.done(s)
			}
		case ItemMajor:
			forEach(ctx, workers, len(states), func(i int) {
				for _, st := range stages {
					states[i].run(ctx, st)
				}
				m.done(states[i])
			})
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		for _, s := range states {
			out = append(out, s.res)
		}
	}
	return out, nil
}

func (m *Mimic) done(s *mimicItem) {
	s.finish()
	if m.OnItem != nil {
		m.OnItem(s.res)
	}
}

// stage is one step of an item's work.
type stage func(s *mimicItem, ctx context.Context) error

// stages lists the work of one item in order: sample, score, then per
// iteration loss, gradient, update and score.
func (m *Mimic) stages() []stage {
	list := []stage{(*mimicItem).sample, (*mimicItem).score}
	for range m.Config.Steps() {
		list = append(list, (*mimicItem).loss, (*mimicItem).gradient, (*mimicItem).update, (*mimicItem).score)
	}
	return list
}

// forEach calls fn(0..n-1) from at most workers goroutines and waits for
// every call to return. It starts no new call once ctx is done.
func forEach(ctx context.Context, workers, n int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
}

// mimicItem is the state of one item's optimization in Mimic.
type mimicItem struct {
	m    *Mimic
	tmpl *tpo.Templates
	item tpo.Item
	res  tpo.Result
	err  error

	// The cache: every scored candidate, in the order found.
	refs   []tpo.Ref
	cands  []tpo.Candidate
	scores map[string]float64

	cur     tpo.Step // the step in progress
	pending []string // texts of cur waiting for scores
	data    tpo.PromptData
	lossSys string
}

func newMimicItem(m *Mimic, tmpl *tpo.Templates, it tpo.Item) *mimicItem {
	s := &mimicItem{m: m, tmpl: tmpl, item: it, scores: map[string]float64{},
		res: tpo.Result{ID: it.ID, Prompt: it.Prompt(), Messages: it.Messages}}
	if err := it.Validate(); err != nil {
		s.err = fmt.Errorf("item %q: %w", it.ID, err)
	}
	return s
}

// run runs one stage unless the item already failed.
func (s *mimicItem) run(ctx context.Context, st stage) {
	if s.err != nil {
		return
	}
	if err := ctx.Err(); err != nil {
		s.err = err
		return
	}
	if err := st(s, ctx); err != nil {
		s.err = fmt.Errorf("step %d: %w", s.cur.Step, err)
	}
}

// seed mirrors tpo.Optimizer: request r of an item gets Seed + r*Width.
func (s *mimicItem) seed(req int) *int64 {
	cfg := s.m.Config
	if cfg.Seed == nil {
		return nil
	}
	v := *cfg.Seed + int64(req)*int64(max(cfg.Width, 1))
	return &v
}

func (s *mimicItem) generate(ctx context.Context, stage tpo.Stage, msgs []tpo.Message, n int, samp tpo.Sampling, req int) (tpo.Generation, error) {
	gr := tpo.GenerateRequest{Messages: msgs, N: n, Sampling: samp, Seed: s.seed(req), Stage: stage}
	t0 := time.Now()
	gen, err := s.m.Policy.Generate(ctx, gr)
	s.cur.Millis[stage] += time.Since(t0).Milliseconds()
	s.cur.Usage.Add(gen.Usage)
	if err != nil {
		return gen, fmt.Errorf("%s: %w", stage, err)
	}
	if len(gen.Texts) == 0 || gen.Texts[0] == "" {
		return gen, fmt.Errorf("%s: the policy returned no response", stage)
	}
	return gen, nil
}

func (s *mimicItem) sample(ctx context.Context) error {
	cfg := s.m.Config
	s.cur = tpo.Step{Step: 0, Millis: map[tpo.Stage]int64{}}
	gen, err := s.generate(ctx, tpo.StageSample, s.item.Messages, cfg.Width, cfg.Sampling, 0)
	if err != nil {
		return err
	}
	s.pending = gen.Texts
	return nil
}

// score scores the pending texts of the current step (each distinct new
// text once), adds them to the cache and closes the step.
func (s *mimicItem) score(ctx context.Context) error {
	var todo []string
	seen := map[string]bool{}
	for _, t := range s.pending {
		if _, ok := s.scores[t]; ok || seen[t] {
			continue
		}
		seen[t] = true
		todo = append(todo, t)
	}
	got := map[string]float64{}
	if len(todo) > 0 {
		t0 := time.Now()
		sc, err := s.m.Reward.Score(ctx, s.item.Messages, todo)
		s.cur.Millis[tpo.StageScore] += time.Since(t0).Milliseconds()
		s.res.ScoreCalls++
		if err != nil {
			return fmt.Errorf("score: %w", err)
		}
		if len(sc) != len(todo) {
			return fmt.Errorf("score: %d scores for %d responses", len(sc), len(todo))
		}
		for i, t := range todo {
			if math.IsNaN(sc[i]) || math.IsInf(sc[i], 0) {
				return fmt.Errorf("score: %v for response %d", sc[i], i)
			}
			got[t] = sc[i]
		}
	}
	for _, t := range s.pending {
		v, ok := s.scores[t]
		if !ok {
			v = got[t]
			s.scores[t] = v
		}
		c := tpo.Candidate{Text: t, Score: v}
		s.refs = append(s.refs, tpo.Ref{Step: s.cur.Step, Index: len(s.cur.Candidates)})
		s.cands = append(s.cands, c)
		s.cur.Candidates = append(s.cur.Candidates, c)
	}
	s.pending = nil
	s.res.Steps = append(s.res.Steps, s.cur)
	return nil
}

// extreme returns the index of the best (sign 1) or worst (sign -1)
// candidate; ties go to the earliest.
func (s *mimicItem) extreme(sign float64) int {
	k := 0
	for i, c := range s.cands {
		if sign*c.Score > sign*s.cands[k].Score {
			k = i
		}
	}
	return k
}

func (s *mimicItem) loss(ctx context.Context) error {
	cfg := s.m.Config
	i := len(s.res.Steps)
	s.cur = tpo.Step{Step: i, Millis: map[tpo.Stage]int64{}}
	if len(s.cands) == 0 {
		return errors.New("no scored candidate")
	}
	bi, wi := s.extreme(1), s.extreme(-1)
	chosen, rejected := s.cands[bi], s.cands[wi]
	revision := cfg.Mode == tpo.ModeRevision || chosen.Score == rejected.Score
	cr := s.refs[bi]
	s.cur.Chosen = &cr
	role := "a chosen response to a user query"
	if cfg.Mode == tpo.ModeRevision {
		role = "a model response to a user query"
	}
	s.data = tpo.PromptData{Query: tpo.RenderQuery(s.item.Messages), Role: role, Revision: revision,
		Chosen: tpo.Truncate(chosen.Text, cfg.MaxTextChars)}
	s.lossSys = "loss_system.tmpl"
	if revision {
		s.lossSys = "revision_loss_system.tmpl"
	} else {
		rr := s.refs[wi]
		s.cur.Rejected = &rr
		s.data.Rejected = tpo.Truncate(rejected.Text, cfg.MaxTextChars)
	}
	var err error
	if s.data.LossSystem, err = s.tmpl.Render(s.lossSys, s.data); err != nil {
		return err
	}
	gen, err := s.call(ctx, tpo.StageLoss, s.lossSys, "loss_user.tmpl", 1, cfg.Critique, 3*i-2)
	if err != nil {
		return err
	}
	s.cur.Loss = gen.Texts[0]
	s.data.Loss = tpo.Truncate(s.cur.Loss, cfg.MaxTextChars)
	return nil
}

func (s *mimicItem) gradient(ctx context.Context) error {
	cfg := s.m.Config
	gen, err := s.call(ctx, tpo.StageGradient, "gradient_system.tmpl", "gradient_user.tmpl", 1, cfg.Critique, 3*s.cur.Step-1)
	if err != nil {
		return err
	}
	s.cur.Gradient = gen.Texts[0]
	s.data.Gradient = tpo.Truncate(s.cur.Gradient, cfg.MaxTextChars)
	return nil
}

func (s *mimicItem) update(ctx context.Context) error {
	cfg := s.m.Config
	gen, err := s.call(ctx, tpo.StageUpdate, "update_system.tmpl", "update_user.tmpl", cfg.Width, cfg.Sampling, 3*s.cur.Step)
	if err != nil {
		return err
	}
	s.pending = nil
	for _, t := range gen.Texts {
		if p, ok := tpo.ParseImproved(t); ok {
			s.pending = append(s.pending, p)
		} else {
			s.cur.Unparsed = append(s.cur.Unparsed, t)
		}
	}
	return nil
}

func (s *mimicItem) call(ctx context.Context, stage tpo.Stage, sysName, userName string, n int, samp tpo.Sampling, req int) (tpo.Generation, error) {
	sys, err := s.tmpl.Render(sysName, s.data)
	if err != nil {
		return tpo.Generation{}, err
	}
	user, err := s.tmpl.Render(userName, s.data)
	if err != nil {
		return tpo.Generation{}, err
	}
	msgs := []tpo.Message{{Role: tpo.RoleSystem, Content: sys}, {Role: tpo.RoleUser, Content: user}}
	return s.generate(ctx, stage, msgs, n, samp, req)
}

// finish fills the result from the cache and the error.
func (s *mimicItem) finish() {
	for _, st := range s.res.Steps {
		s.res.Usage.Add(st.Usage)
	}
	if s.err == nil && len(s.res.Steps) == 0 {
		s.err = errors.New("not run")
	}
	if s.err != nil {
		s.res.Usage.Add(s.cur.Usage) // the unfinished step's calls cost too
		s.res.Error = s.err.Error()
	}
	if len(s.cands) == 0 {
		return
	}
	b := s.extreme(1)
	s.res.Best, s.res.Response, s.res.Score = s.refs[b], s.cands[b].Text, s.cands[b].Score
	first := true
	for i, r := range s.refs {
		if r.Step == 0 && (first || s.cands[i].Score > s.res.InitialBest) {
			s.res.InitialBest, first = s.cands[i].Score, false
		}
	}
}
