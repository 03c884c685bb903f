package tpo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Config holds the settings of an optimization.
type Config struct {
	Mode Mode `json:"mode" yaml:"mode"`
	// Width is N: responses sampled per sampling or update request.
	Width int `json:"width" yaml:"width"`
	// Depth is D: the number of loss/gradient/update iterations (ignored in bon mode).
	Depth int `json:"depth" yaml:"depth"`
	// Sampling is used for the initial samples and the updates.
	Sampling Sampling `json:"sampling" yaml:"sampling"`
	// Critique is used for the loss and gradient calls (one sample each).
	Critique Sampling `json:"critique" yaml:"critique"`
	// Seed, when set, makes requests reproducible on servers that honour
	// seeds. Request r of an item gets Seed + r*max(Width,1), so the seeds of
	// the children of an n-request never overlap another request's.
	Seed *int64 `json:"seed,omitempty" yaml:"seed,omitempty"`
	// MaxTextChars bounds each text (chosen, rejected, critique, instructions)
	// inserted into a prompt, in bytes. Zero means no limit.
	MaxTextChars int `json:"max_text_chars" yaml:"max_text_chars"`
}

// DefaultConfig returns the paper's settings: tpo mode, N=5, D=2, temperature
// 0.7, top_p 0.95 and 2048 new tokens for sampled responses; critique calls at
// temperature 0.7, top_p 0.99, 2048 new tokens; texts in prompts cut to 8192
// bytes (about 2048 tokens).
func DefaultConfig() Config {
	return Config{
		Mode:         ModeTPO,
		Width:        5,
		Depth:        2,
		Sampling:     Sampling{Temperature: 0.7, TopP: 0.95, MaxTokens: 2048},
		Critique:     Sampling{Temperature: 0.7, TopP: 0.99, MaxTokens: 2048},
		MaxTextChars: 8192,
	}
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	if _, err := ParseMode(string(c.Mode)); err != nil {
		return err
	}
	if c.Width < 1 {
		return fmt.Errorf("width must be at least 1, got %d", c.Width)
	}
	if c.Depth < 0 {
		return fmt.Errorf("depth must not be negative, got %d", c.Depth)
	}
	for _, s := range []struct {
		name string
		s    Sampling
	}{{"sampling", c.Sampling}, {"critique", c.Critique}} {
		if !(s.s.Temperature >= 0 && s.s.Temperature <= 2) { // also rejects NaN
			return fmt.Errorf("%s temperature must be in [0, 2], got %g", s.name, s.s.Temperature)
		}
		if !(s.s.TopP > 0 && s.s.TopP <= 1) {
			return fmt.Errorf("%s top_p must be in (0, 1], got %g", s.name, s.s.TopP)
		}
		if s.s.MaxTokens < 1 {
			return fmt.Errorf("%s max tokens must be at least 1, got %d", s.name, s.s.MaxTokens)
		}
	}
	if c.MaxTextChars < 0 {
		return fmt.Errorf("max text chars must not be negative, got %d", c.MaxTextChars)
	}
	return nil
}

// Steps is the number of update steps the configuration runs: Depth, or 0 in
// bon mode.
func (c Config) Steps() int {
	if c.Mode == ModeBoN {
		return 0
	}
	return c.Depth
}

// Optimizer runs TPO on one item at a time. It is safe for concurrent use if
// its Generator and Scorer are.
type Optimizer struct {
	Policy    Generator
	Reward    Scorer
	Config    Config
	Templates *Templates   // nil means DefaultTemplates()
	Logger    *slog.Logger // nil means slog.Default()
}

// Options adjust one call of Optimize.
type Options struct {
	// Resume holds the steps of an earlier, interrupted optimization of the
	// same item (steps 0..k, in order); the optimization continues at k+1.
	Resume []Step
	// OnEvent, if set, receives every event, synchronously.
	OnEvent func(Event)
	// OnStep, if set, is called with each newly finished step before the
	// next begins (to persist it). An error stops the optimization.
	OnStep func(ctx context.Context, s Step) error
}

// Optimize runs the configured algorithm on item and returns its result. On
// error the result holds the steps that finished and Error is set.
func (o *Optimizer) Optimize(ctx context.Context, item Item, opts Options) (Result, error) {
	res := Result{ID: item.ID, Prompt: item.Prompt(), Messages: item.Messages}
	if err := o.Config.Validate(); err != nil {
		return o.fail(res, fmt.Errorf("config: %w", err))
	}
	if err := item.Validate(); err != nil {
		return o.fail(res, fmt.Errorf("item %q: %w", item.ID, err))
	}
	r := &optRun{o: o, item: item, opts: opts, cache: newCache(), tmpl: o.Templates}
	if r.tmpl == nil {
		r.tmpl = defaultTemplates()
	}
	err := r.run(ctx)
	res.Steps = r.steps
	for _, s := range r.steps {
		res.Usage.Add(s.Usage)
		res.ScoreUsage.Add(s.ScoreUsage)
	}
	res.ScoreCalls = r.scoreCalls
	if len(r.cache.cands) > 0 {
		best := r.cache.best()
		res.Best = best
		res.Response = r.cache.at(best).Text
		res.Score = r.cache.at(best).Score
		res.InitialBest = r.initialBest()
	}
	if err != nil {
		return o.fail(res, err)
	}
	r.emit(Done{EventBase: EventBase{ItemID: item.ID, Step: len(res.Steps) - 1}, Result: res})
	return res, nil
}

func (o *Optimizer) fail(res Result, err error) (Result, error) {
	res.Error = err.Error()
	return res, err
}

func (o *Optimizer) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// optRun is the state of one optimization.
type optRun struct {
	o          *Optimizer
	item       Item
	opts       Options
	tmpl       *Templates
	steps      []Step
	cache      *cache
	scoreCalls int
}

func (r *optRun) emit(e Event) {
	if r.opts.OnEvent != nil {
		r.opts.OnEvent(e)
	}
}

func (r *optRun) base(step int) EventBase { return EventBase{ItemID: r.item.ID, Step: step} }

func (r *optRun) run(ctx context.Context) error {
	cfg := r.o.Config
	// Rebuild the cache from resumed steps.
	for i, s := range r.opts.Resume {
		if s.Step != i {
			return fmt.Errorf("resume: step %d found at position %d", s.Step, i)
		}
		if i > cfg.Steps() {
			break
		}
		r.steps = append(r.steps, s)
		for j, c := range s.Candidates {
			r.cache.add(Ref{Step: i, Index: j}, c)
		}
	}
	if len(r.steps) == 0 {
		if err := r.step0(ctx); err != nil {
			return err
		}
	}
	for i := len(r.steps); i <= cfg.Steps(); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.update(ctx, i); err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
	}
	return nil
}

// seed returns the seed of request number req of this item.
func (r *optRun) seed(req int) *int64 {
	if r.o.Config.Seed == nil {
		return nil
	}
	s := *r.o.Config.Seed + int64(req)*int64(max(r.o.Config.Width, 1))
	return &s
}

func (r *optRun) step0(ctx context.Context) error {
	cfg := r.o.Config
	r.emit(StepStarted{EventBase: r.base(0), Depth: cfg.Steps()})
	st := Step{Step: 0, Millis: map[Stage]int64{}}
	req := GenerateRequest{Messages: r.item.Messages, N: cfg.Width, Sampling: cfg.Sampling, Seed: r.seed(0), Stage: StageSample}
	t0 := time.Now()
	gen, err := r.o.Policy.Generate(ctx, req)
	st.Millis[StageSample] = time.Since(t0).Milliseconds()
	st.Usage.Add(gen.Usage)
	st.Calls = append(st.Calls, callOf(req, gen, time.Since(t0), err))
	if err != nil {
		return fmt.Errorf("step 0: sample: %w", err)
	}
	if len(gen.Texts) == 0 {
		return errors.New("step 0: sample: the policy returned no responses")
	}
	if len(gen.Texts) < cfg.Width {
		st.Notes = append(st.Notes, fmt.Sprintf("asked for %d samples, got %d", cfg.Width, len(gen.Texts)))
	}
	if err := r.scoreInto(ctx, &st, gen.Texts); err != nil {
		return fmt.Errorf("step 0: %w", err)
	}
	return r.finish(ctx, st)
}

// scoreInto scores texts (each distinct new text once) and appends them to
// the step's candidates and to the cache.
func (r *optRun) scoreInto(ctx context.Context, st *Step, texts []string) error {
	var todo []string
	seen := map[string]bool{}
	for _, t := range texts {
		if _, ok := r.cache.scoreOf(t); ok || seen[t] {
			continue
		}
		seen[t] = true
		todo = append(todo, t)
	}
	scores := map[string]float64{}
	if len(todo) > 0 {
		t0 := time.Now()
		m := &Meter{}
		got, err := r.o.Reward.Score(WithMeter(ctx, m), r.item.Messages, todo)
		st.Millis[StageScore] += time.Since(t0).Milliseconds()
		st.ScoreUsage.Add(m.Usage())
		st.Notes = append(st.Notes, m.Notes()...)
		r.scoreCalls++
		if err != nil {
			return fmt.Errorf("score: %w", err)
		}
		if len(got) != len(todo) {
			return fmt.Errorf("score: the reward model returned %d scores for %d responses", len(got), len(todo))
		}
		for i, t := range todo {
			if math.IsNaN(got[i]) || math.IsInf(got[i], 0) {
				return fmt.Errorf("score: the reward model returned %v for response %d", got[i], i)
			}
			scores[t] = got[i]
		}
	}
	for _, t := range texts {
		s, ok := r.cache.scoreOf(t)
		if !ok {
			s = scores[t]
		}
		c := Candidate{Text: t, Score: s}
		r.cache.add(Ref{Step: st.Step, Index: len(st.Candidates)}, c)
		st.Candidates = append(st.Candidates, c)
	}
	if len(todo) < len(texts) {
		st.Notes = append(st.Notes, fmt.Sprintf("%d of %d responses repeated a text already scored", len(texts)-len(todo), len(texts)))
	}
	r.emit(CandidatesScored{EventBase: r.base(st.Step), Candidates: st.Candidates, Best: r.cache.at(r.cache.best()).Score})
	return nil
}

func (r *optRun) finish(ctx context.Context, st Step) error {
	if r.opts.OnStep != nil {
		if err := r.opts.OnStep(ctx, st); err != nil {
			return fmt.Errorf("saving step %d: %w", st.Step, err)
		}
	}
	r.steps = append(r.steps, st)
	r.emit(StepFinished{EventBase: r.base(st.Step), Data: st})
	return nil
}

func (r *optRun) initialBest() float64 {
	if len(r.steps) == 0 || len(r.steps[0].Candidates) == 0 {
		return 0
	}
	best := r.steps[0].Candidates[0].Score
	for _, c := range r.steps[0].Candidates[1:] {
		best = max(best, c.Score)
	}
	return best
}

// update runs one loss/gradient/update iteration as step i.
func (r *optRun) update(ctx context.Context, i int) error {
	cfg := r.o.Config
	r.emit(StepStarted{EventBase: r.base(i), Depth: cfg.Steps()})
	st := Step{Step: i, Millis: map[Stage]int64{}}
	chosenRef, rejectedRef := r.cache.best(), r.cache.worst()
	chosen, rejected := r.cache.at(chosenRef), r.cache.at(rejectedRef)
	revision := cfg.Mode == ModeRevision
	if !revision && chosen.Score == rejected.Score {
		revision = true
		st.Notes = append(st.Notes, "every candidate scored the same; used the revision critique (no rejected response)")
	}
	st.Chosen = &chosenRef
	if !revision {
		st.Rejected = &rejectedRef
	}
	role := "a chosen response to a user query"
	if cfg.Mode == ModeRevision {
		role = "a model response to a user query"
	}
	d := PromptData{Query: RenderQuery(r.item.Messages), Role: role, Revision: revision}
	lossSys := "loss_system.tmpl"
	if revision {
		lossSys = "revision_loss_system.tmpl"
	}
	budget := cfg.MaxTextChars
	// prepare fills d's texts within the current budget.
	prepare := func() error {
		d.Chosen = Truncate(chosen.Text, budget)
		if !revision {
			d.Rejected = Truncate(rejected.Text, budget)
		}
		var err error
		d.LossSystem, err = r.tmpl.Render(lossSys, d)
		return err
	}
	if err := prepare(); err != nil {
		return err
	}

	// call renders a system/user pair and sends it, retrying once with half
	// the text budget if the server reports a context overflow.
	call := func(stage Stage, sysName, userName string, n int, samp Sampling, req int) (Generation, error) {
		for attempt := 0; ; attempt++ {
			msgs, err := r.render(sysName, userName, d)
			if err != nil {
				return Generation{}, err
			}
			gr := GenerateRequest{Messages: msgs, N: n, Sampling: samp, Seed: r.seed(req), Stage: stage}
			t0 := time.Now()
			gen, err := r.o.Policy.Generate(ctx, gr)
			st.Millis[stage] += time.Since(t0).Milliseconds()
			st.Usage.Add(gen.Usage)
			st.Calls = append(st.Calls, callOf(gr, gen, time.Since(t0), err))
			if err == nil {
				return gen, nil
			}
			if attempt == 0 && errors.Is(err, ErrContextLength) {
				if budget <= 0 {
					budget = 2 * longest(chosen.Text, rejected.Text, d.Loss, d.Gradient)
				}
				budget /= 2
				st.Notes = append(st.Notes, fmt.Sprintf("%s: the prompt did not fit the context window; retried with texts cut to %d bytes", stage, budget))
				r.o.logger().Warn("context overflow, retrying with a smaller text budget", "item", r.item.ID, "step", i, "stage", stage, "budget", budget)
				if err := prepare(); err != nil {
					return Generation{}, err
				}
				d.Loss = Truncate(d.Loss, budget)
				d.Gradient = Truncate(d.Gradient, budget)
				continue
			}
			return gen, fmt.Errorf("%s: %w", stage, err)
		}
	}
	first := func(g Generation, stage Stage) (string, error) {
		if len(g.Texts) == 0 || g.Texts[0] == "" {
			return "", fmt.Errorf("%s: the policy returned an empty response", stage)
		}
		return g.Texts[0], nil
	}

	// Textual loss.
	gen, err := call(StageLoss, lossSys, "loss_user.tmpl", 1, cfg.Critique, 3*i-2)
	if err != nil {
		return err
	}
	loss, err := first(gen, StageLoss)
	if err != nil {
		return err
	}
	st.Loss = loss
	r.emit(Critique{EventBase: r.base(i), Chosen: chosenRef, Rejected: st.Rejected, Text: loss})
	d.Loss = Truncate(loss, budget)

	// Textual gradient.
	gen, err = call(StageGradient, "gradient_system.tmpl", "gradient_user.tmpl", 1, cfg.Critique, 3*i-1)
	if err != nil {
		return err
	}
	grad, err := first(gen, StageGradient)
	if err != nil {
		return err
	}
	st.Gradient = grad
	r.emit(Instructions{EventBase: r.base(i), Text: grad})
	d.Gradient = Truncate(grad, budget)

	// Update.
	gen, err = call(StageUpdate, "update_system.tmpl", "update_user.tmpl", cfg.Width, cfg.Sampling, 3*i)
	if err != nil {
		return err
	}
	var parsed []string
	for _, t := range gen.Texts {
		if p, ok := ParseImproved(t); ok {
			parsed = append(parsed, p)
		} else {
			st.Unparsed = append(st.Unparsed, t)
		}
	}
	r.emit(UpdateParsed{EventBase: r.base(i), Parsed: len(parsed), Unparsed: len(st.Unparsed)})
	if len(st.Unparsed) > 0 {
		r.o.logger().Debug("update samples without <improved_response>", "item", r.item.ID, "step", i, "unparsed", len(st.Unparsed), "of", len(gen.Texts))
	}
	if len(parsed) == 0 {
		st.Notes = append(st.Notes, fmt.Sprintf("none of the %d update samples held an <improved_response> block; the cache is unchanged", len(gen.Texts)))
		r.o.logger().Warn("no update sample could be parsed; cache unchanged", "item", r.item.ID, "step", i, "samples", len(gen.Texts))
	} else if err := r.scoreInto(ctx, &st, parsed); err != nil {
		return err
	}
	return r.finish(ctx, st)
}

func (r *optRun) render(sysName, userName string, d PromptData) ([]Message, error) {
	sys, err := r.tmpl.Render(sysName, d)
	if err != nil {
		return nil, err
	}
	user, err := r.tmpl.Render(userName, d)
	if err != nil {
		return nil, err
	}
	return []Message{{Role: RoleSystem, Content: sys}, {Role: RoleUser, Content: user}}, nil
}

// defaultTemplates parses the built-in templates once.
var defaultTemplates = sync.OnceValue(DefaultTemplates)

func callOf(req GenerateRequest, gen Generation, d time.Duration, err error) Call {
	c := Call{Stage: req.Stage, Messages: req.Messages, N: req.N, Seed: req.Seed,
		Returned: len(gen.Texts), Usage: gen.Usage, Millis: d.Milliseconds()}
	if err != nil {
		c.Error = err.Error()
	}
	return c
}

func longest(ss ...string) int {
	n := 0
	for _, s := range ss {
		n = max(n, len(s))
	}
	return n
}

// cache is every scored candidate of an optimization, in the order found.
type cache struct {
	refs   []Ref
	cands  []Candidate
	scores map[string]float64
}

func newCache() *cache { return &cache{scores: map[string]float64{}} }

func (c *cache) add(ref Ref, cand Candidate) {
	c.refs = append(c.refs, ref)
	c.cands = append(c.cands, cand)
	if _, ok := c.scores[cand.Text]; !ok {
		c.scores[cand.Text] = cand.Score
	}
}

func (c *cache) scoreOf(text string) (float64, bool) {
	s, ok := c.scores[text]
	return s, ok
}

func (c *cache) at(ref Ref) Candidate {
	for i, r := range c.refs {
		if r == ref {
			return c.cands[i]
		}
	}
	return Candidate{}
}

// best returns the highest-scoring candidate; ties go to the earliest.
func (c *cache) best() Ref {
	bi := 0
	for i, cd := range c.cands {
		if cd.Score > c.cands[bi].Score {
			bi = i
		}
	}
	return c.refs[bi]
}

// worst returns the lowest-scoring candidate; ties go to the earliest.
func (c *cache) worst() Ref {
	wi := 0
	for i, cd := range c.cands {
		if cd.Score < c.cands[wi].Score {
			wi = i
		}
	}
	return c.refs[wi]
}
