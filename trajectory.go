package tpo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// A Trajectory is one item's optimization, stage by stage: it owns the
// cache of scored candidates, the finished steps, the step under way and the
// prompts of the round in progress. Optimizer.Optimize runs it to the end;
// a scheduler that interleaves the stages of many items calls Next and Do
// itself. A Trajectory is not safe for concurrent use.
//
// The stages of an item are Sample then Score (step 0), then for each step
// i = 1..D: Loss, Gradient, Update and Score. A stage that fails ends the
// trajectory: Next returns "" and Result carries the error.
type Trajectory struct {
	o    *Optimizer
	item Item
	opts Options
	tmpl *Templates

	steps      []Step
	cache      *cache
	scoreCalls int

	next    Stage      // the stage to run next; "" when done
	stop    StopReason // why next is "" (unless err is set)
	cur     *Step      // the step under way, nil between steps
	pending []written  // texts of cur waiting for their scores
	round   *round     // the prompts of the round under way (steps >= 1)
	err     error
}

// written is a generated text on its way into the cache.
type written struct {
	text          string
	cut, unclosed bool
}

// Start validates the configuration and the item and returns the item's
// trajectory, continuing after opts.Resume when it holds steps. On error
// the trajectory is ended and its Result carries the error.
func (o *Optimizer) Start(item Item, opts Options) (*Trajectory, error) {
	t := &Trajectory{o: o, item: item, opts: opts, tmpl: o.Templates, cache: newCache(), next: StageSample}
	if t.tmpl == nil {
		t.tmpl = defaultTemplates()
	}
	err := o.Config.Validate()
	if err != nil {
		err = fmt.Errorf("config: %w", err)
	} else if err = item.Validate(); err != nil {
		err = fmt.Errorf("item %q: %w", item.ID, err)
	} else {
		err = t.resume(opts.Resume)
	}
	if err != nil {
		t.end(err)
	}
	return t, err
}

// resume rebuilds the cache from the steps of an earlier optimization.
func (t *Trajectory) resume(steps []Step) error {
	for i, s := range steps {
		if s.Step != i {
			return fmt.Errorf("resume: step %d found at position %d", s.Step, i)
		}
		if i > t.o.Config.Steps() {
			break
		}
		t.steps = append(t.steps, s)
		if _, scored := s.Millis[StageScore]; scored {
			t.scoreCalls++ // a step that called the reward model timed it
		}
		for j, c := range s.Candidates {
			t.cache.add(Ref{Step: i, Index: j}, c)
		}
	}
	if len(t.steps) > 0 {
		t.next = t.afterStep()
	}
	return nil
}

// afterStep is the stage that follows a finished step: the next round's
// loss, or "" with the reason in t.stop.
func (t *Trajectory) afterStep() Stage {
	if len(t.cache.cands) == 0 {
		t.stop = StopDepth // nothing to improve: an update step kept nothing and step 0 had nothing
		return ""
	}
	if t.stop = t.stopRule(); t.stop != "" {
		return ""
	}
	return StageLoss
}

// stopRule returns why the trajectory should not start another round, or
// "" to go on.
func (t *Trajectory) stopRule() StopReason {
	cfg := t.o.Config
	best := t.cache.at(t.cache.best()).Score
	switch {
	case len(t.steps) > cfg.Steps():
		return StopDepth
	case cfg.TargetScore != nil && best >= *cfg.TargetScore:
		return StopTarget
	case cfg.Patience > 0 && t.roundsWithoutGain() >= cfg.Patience:
		return StopPatience
	case cfg.MaxItemTokens > 0 && t.tokens()+t.nextRoundTokens() > cfg.MaxItemTokens:
		return StopBudget
	}
	return ""
}

// roundsWithoutGain counts the last rounds in a row whose step did not
// raise the best score of the cache.
func (t *Trajectory) roundsWithoutGain() int {
	bests := make([]float64, len(t.steps))
	for i, s := range t.steps {
		bests[i] = math.Inf(-1)
		if i > 0 {
			bests[i] = bests[i-1]
		}
		for _, c := range s.Candidates {
			bests[i] = max(bests[i], c.Score)
		}
	}
	n := 0
	for i := len(bests) - 1; i > 0 && bests[i] <= bests[i-1]; i-- {
		n++
	}
	return n
}

// tokens is the policy tokens the finished steps used.
func (t *Trajectory) tokens() int {
	n := 0
	for _, s := range t.steps {
		n += s.Usage.TotalTokens()
	}
	return n
}

// Next returns the stage to run next, or "" when the trajectory has ended.
func (t *Trajectory) Next() Stage { return t.next }

// Err returns the error that ended the trajectory, if any.
func (t *Trajectory) Err() error { return t.err }

// Do runs stage st, which must be the stage Next returns. An error ends the
// trajectory and is returned with the step it happened in.
func (t *Trajectory) Do(ctx context.Context, st Stage) error {
	if st == "" || st != t.next {
		return fmt.Errorf("stage %q out of order (next is %q)", st, t.next)
	}
	if err := ctx.Err(); err != nil {
		t.end(err)
		return err
	}
	step := len(t.steps)
	if t.cur != nil {
		step = t.cur.Step
	}
	ctx, span := StartSpan(WithStage(ctx, st), t.o.Tracer, "tpo.stage "+string(st), A("tpo.item", t.item.ID), A("tpo.stage", string(st)), A("tpo.step", step))
	before := t.usage()
	err := t.do(ctx, st)
	used := t.usage()
	span.Set(A("tpo.prompt_tokens", used.PromptTokens-before.PromptTokens), A("tpo.completion_tokens", used.CompletionTokens-before.CompletionTokens),
		A("tpo.requests", used.Requests-before.Requests))
	span.End(err)
	return err
}

// usage is what the policy calls of the finished steps and the step under
// way cost so far.
func (t *Trajectory) usage() Usage {
	var u Usage
	for _, s := range t.steps {
		u.Add(s.Usage)
	}
	if t.cur != nil {
		u.Add(t.cur.Usage)
	}
	return u
}

// do runs stage st.
func (t *Trajectory) do(ctx context.Context, st Stage) error {
	var err error
	switch st {
	case StageSample:
		err = t.Sample(ctx)
	case StageScore:
		err = t.Score(ctx)
	case StageLoss:
		err = t.Loss(ctx)
	case StageGradient:
		err = t.Gradient(ctx)
	case StageUpdate:
		err = t.Update(ctx)
	default:
		err = fmt.Errorf("unknown stage %q", st)
	}
	if err != nil {
		step := len(t.steps)
		if t.cur != nil {
			step = t.cur.Step
		}
		err = fmt.Errorf("step %d: %w", step, err)
		t.end(err)
	}
	return err
}

func (t *Trajectory) end(err error) {
	t.err, t.next = err, ""
}

// StopAtDeadline ends a trajectory whose stage failed because its deadline
// passed, keeping the finished steps: it reports false, changing nothing,
// when no response has been scored yet.
func (t *Trajectory) StopAtDeadline() bool {
	if len(t.steps) == 0 {
		return false
	}
	t.err, t.next, t.stop = nil, "", StopDeadline
	t.cur, t.pending, t.round = nil, nil, nil
	return true
}

// Sample asks the policy for the N initial responses (step 0).
func (t *Trajectory) Sample(ctx context.Context) error {
	cfg := t.o.Config
	t.emit(StepStarted{EventBase: t.base(0), Depth: cfg.Steps()})
	t.cur = &Step{Step: 0, Millis: map[Stage]int64{}}
	gen, err := t.generate(ctx, StageSample, t.item.Messages, cfg.Width, cfg.Sampling, t.seed(0))
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	if len(gen.Texts) == 0 {
		return errors.New("sample: the policy returned no responses")
	}
	if len(gen.Texts) < cfg.Width {
		t.note("asked for %d samples, got %d", cfg.Width, len(gen.Texts))
	}
	t.pending = t.pending[:0]
	for i, text := range gen.Texts {
		t.pending = append(t.pending, written{text: text, cut: gen.Cut(i)})
	}
	t.noteCut(StageSample, gen)
	t.next = StageScore
	return nil
}

// Score scores the texts the step produced (each distinct new text once),
// finishes the step and adds its candidates to the cache.
func (t *Trajectory) Score(ctx context.Context) error {
	if len(t.pending) > 0 {
		if err := t.scorePending(ctx); err != nil {
			return err
		}
	}
	st := *t.cur
	if t.opts.OnStep != nil {
		// A step that finished is saved even if ctx ended meanwhile.
		if err := t.opts.OnStep(context.WithoutCancel(ctx), st); err != nil {
			return fmt.Errorf("saving step %d: %w", st.Step, err)
		}
	}
	for i, c := range st.Candidates {
		t.cache.add(Ref{Step: st.Step, Index: i}, c)
	}
	t.steps = append(t.steps, st)
	t.cur, t.pending, t.round = nil, nil, nil
	t.emit(StepFinished{EventBase: t.base(st.Step), Data: st})
	t.next = t.afterStep()
	return nil
}

func (t *Trajectory) scorePending(ctx context.Context) error {
	var todo []string
	seen := map[string]bool{}
	for _, w := range t.pending {
		if _, ok := t.cache.scoreOf(w.text); ok || seen[w.text] {
			continue
		}
		seen[w.text] = true
		todo = append(todo, w.text)
	}
	scores, err := t.score(ctx, todo)
	if err != nil {
		return fmt.Errorf("score: %w", err)
	}
	best := math.Inf(-1)
	if len(t.cache.cands) > 0 {
		best = t.cache.at(t.cache.best()).Score
	}
	for _, w := range t.pending {
		s, ok := t.cache.scoreOf(w.text)
		if !ok {
			s = scores[w.text]
		}
		t.cur.Candidates = append(t.cur.Candidates, Candidate{Text: w.text, Score: s, Cut: w.cut, Unclosed: w.unclosed})
		best = max(best, s)
	}
	if len(todo) < len(t.pending) {
		t.note("%d of %d responses repeated a text already scored", len(t.pending)-len(todo), len(t.pending))
	}
	t.emit(CandidatesScored{EventBase: t.base(t.cur.Step), Candidates: t.cur.Candidates, Best: best})
	return nil
}

// score asks the reward model for the scores of texts, metering the call.
func (t *Trajectory) score(ctx context.Context, texts []string) (map[string]float64, error) {
	out := map[string]float64{}
	if len(texts) == 0 {
		return out, nil
	}
	t0 := time.Now()
	scores, err := t.o.Reward.Score(ctx, t.item.Messages, texts)
	t.cur.Millis[StageScore] += time.Since(t0).Milliseconds()
	t.cur.ScoreUsage.Add(scores.Usage)
	t.cur.Notes = append(t.cur.Notes, scores.Notes...)
	t.scoreCalls++
	if err != nil {
		return nil, err
	}
	got := scores.Values
	if len(got) != len(texts) {
		return nil, fmt.Errorf("the reward model returned %d scores for %d responses", len(got), len(texts))
	}
	for i, text := range texts {
		if math.IsNaN(got[i]) || math.IsInf(got[i], 0) {
			return nil, fmt.Errorf("the reward model returned %v for response %d", got[i], i)
		}
		out[text] = got[i]
	}
	return out, nil
}

// Loss begins step i: it picks the chosen and rejected responses from the
// whole cache and asks the policy to critique the chosen one (the textual
// loss).
func (t *Trajectory) Loss(ctx context.Context) error {
	cfg := t.o.Config
	i := len(t.steps)
	t.emit(StepStarted{EventBase: t.base(i), Depth: cfg.Steps()})
	t.cur = &Step{Step: i, Millis: map[Stage]int64{}}
	p := t.plan(i)
	if p.tie {
		t.note("every candidate scored the same; used the revision critique (no rejected response)")
	}
	chosenRef := p.chosen
	t.cur.Chosen, t.cur.Rejected, t.round = &chosenRef, p.rejected, p.round
	loss, err := t.ask(ctx, StageLoss, 3*i-2)
	if err != nil {
		return err
	}
	t.cur.Loss = loss
	t.round.set(textLoss, loss)
	t.emit(Critique{EventBase: t.base(i), Chosen: chosenRef, Rejected: t.cur.Rejected, Text: loss})
	t.next = StageGradient
	return nil
}

// plannedRound is what the loss of a round compares: the chosen response,
// the rejected one (nil for the revision critique) and the round's prompts.
type plannedRound struct {
	chosen   Ref
	rejected *Ref
	tie      bool // every candidate scored the same: the revision critique stands in
	round    *round
}

// plan picks the chosen and rejected responses of step i's round from the
// whole cache and prepares its prompts.
func (t *Trajectory) plan(i int) plannedRound {
	cfg := t.o.Config
	chosenRef, rejectedRef := t.cache.best(), t.cache.worst()
	chosen, rejected := t.cache.at(chosenRef), t.cache.at(rejectedRef)
	p := plannedRound{chosen: chosenRef}
	if cfg.Mode != ModeRevision && chosen.Score == rejected.Score {
		p.tie = true
	}
	if cfg.Mode == ModeRevision || p.tie {
		p.round = newRound(t.tmpl, cfg, t.item.Messages, chosen.Text, "", i)
	} else {
		p.rejected = &rejectedRef
		p.round = newRound(t.tmpl, cfg, t.item.Messages, chosen.Text, rejected.Text, i)
	}
	p.round.data.Role = "a chosen response to a user query"
	if cfg.Mode == ModeRevision {
		p.round.data.Role = "a model response to a user query"
	}
	return p
}

// Gradient asks the policy to turn the critique into instructions (the
// textual gradient).
func (t *Trajectory) Gradient(ctx context.Context) error {
	grad, err := t.ask(ctx, StageGradient, 3*t.cur.Step-1)
	if err != nil {
		return err
	}
	t.cur.Gradient = grad
	t.round.set(textGradient, grad)
	t.emit(Instructions{EventBase: t.base(t.cur.Step), Text: grad})
	t.next = StageUpdate
	return nil
}

// Update asks the policy for N improved responses that follow the
// instructions and keeps those with an <improved_response> block.
func (t *Trajectory) Update(ctx context.Context) error {
	cfg := t.o.Config
	i := t.cur.Step
	gen, err := t.call(ctx, StageUpdate, cfg.Width, cfg.Sampling, t.seed(3*i))
	if err != nil {
		return fmt.Errorf("%s: %w", StageUpdate, err)
	}
	t.pending = t.pending[:0]
	for k, raw := range gen.Texts {
		text, unclosed, ok := parseImproved(raw)
		if !ok {
			t.cur.Unparsed = append(t.cur.Unparsed, raw)
			continue
		}
		if unclosed {
			why := "the model did not close it"
			if gen.Cut(k) {
				why = "the server cut the sample at the length limit"
			}
			t.note("update sample %d has no closing </improved_response> tag (%s); kept the text after the opening tag", k, why)
		}
		t.pending = append(t.pending, written{text: text, cut: gen.Cut(k), unclosed: unclosed})
	}
	t.emit(UpdateParsed{EventBase: t.base(i), Parsed: len(t.pending), Unparsed: len(t.cur.Unparsed)})
	if len(t.cur.Unparsed) > 0 {
		t.o.logger().Debug("update samples without <improved_response>", "item", t.item.ID, "step", i, "unparsed", len(t.cur.Unparsed), "of", len(gen.Texts))
	}
	if len(t.pending) == 0 {
		t.note("none of the %d update samples held an <improved_response> block; the cache is unchanged", len(gen.Texts))
		t.o.logger().Warn("no update sample could be parsed; cache unchanged", "item", t.item.ID, "step", i, "samples", len(gen.Texts))
	}
	t.next = StageScore
	return nil
}

// ask sends a one-sample critique call (loss or gradient) and returns its
// text. An empty answer (or one of only white space) is asked again once,
// with another seed.
func (t *Trajectory) ask(ctx context.Context, stage Stage, req int) (string, error) {
	cfg := t.o.Config
	seed := t.seed(req)
	for attempt := 0; ; attempt++ {
		gen, err := t.call(ctx, stage, 1, cfg.Critique, seed)
		if err != nil {
			return "", fmt.Errorf("%s: %w", stage, err)
		}
		if len(gen.Texts) > 0 && strings.TrimSpace(gen.Texts[0]) != "" {
			t.noteCut(stage, gen)
			return gen.Texts[0], nil
		}
		if attempt > 0 {
			return "", fmt.Errorf("%s: the policy returned an empty response, twice", stage)
		}
		t.note("%s: the policy returned an empty response; asked again", stage)
		if seed != nil {
			s := *seed + 1
			seed = &s
		}
	}
}

// maxShrinks bounds the retries of a call whose prompt overflowed the
// model's context window.
const maxShrinks = 3

// call renders the round's messages for stage and sends them. When the
// server says the prompt does not fit the model's context window, it cuts
// the longest quoted texts and tries again, up to maxShrinks times.
func (t *Trajectory) call(ctx context.Context, stage Stage, n int, samp Sampling, seed *int64) (Generation, error) {
	for attempt := 0; ; attempt++ {
		msgs, err := t.round.messages(stage)
		if err != nil {
			return Generation{}, err
		}
		gen, err := t.generate(ctx, stage, msgs, n, samp, seed)
		if err == nil || !errors.Is(err, ErrContextLength) || attempt == maxShrinks {
			return gen, err
		}
		what, ok := t.round.shrink(stage)
		if !ok {
			return gen, fmt.Errorf("%w (the quoted texts are already as short as they can be)", err)
		}
		t.note("%s: the prompt did not fit the context window; retried with %s", stage, what)
		t.o.logger().Info("context overflow; retrying with shorter texts", "item", t.item.ID, "step", t.cur.Step, "stage", stage, "cut", what)
	}
}

// generate sends one request to the policy and records it in the step.
func (t *Trajectory) generate(ctx context.Context, stage Stage, msgs []Message, n int, samp Sampling, seed *int64) (Generation, error) {
	req := GenerateRequest{Messages: msgs, N: n, Sampling: samp, Seed: seed, Stage: stage}
	t0 := time.Now()
	gen, err := t.o.Policy.Generate(ctx, req)
	d := time.Since(t0)
	t.cur.Millis[stage] += d.Milliseconds()
	t.cur.Usage.Add(gen.Usage)
	t.cur.Calls = append(t.cur.Calls, callOf(req, gen, d, err))
	return gen, err
}

// noteCut notes the texts of gen that the server cut at the length limit.
func (t *Trajectory) noteCut(stage Stage, gen Generation) {
	cut := 0
	for i := range gen.Texts {
		if gen.Cut(i) {
			cut++
		}
	}
	if cut > 0 {
		t.note("%s: %d of %d texts were cut at the length limit (finish_reason \"length\")", stage, cut, len(gen.Texts))
	}
}

// seed returns the seed of request number req of this item: Seed +
// req*Width, so that the seeds of the children of an n-request never
// overlap another request's.
func (t *Trajectory) seed(req int) *int64 {
	cfg := t.o.Config
	if cfg.Seed == nil {
		return nil
	}
	s := *cfg.Seed + int64(req)*int64(max(cfg.Width, 1))
	return &s
}

func (t *Trajectory) note(format string, args ...any) {
	t.cur.Notes = append(t.cur.Notes, fmt.Sprintf(format, args...))
}

func (t *Trajectory) emit(e Event) {
	if t.opts.OnEvent != nil {
		t.opts.OnEvent(e)
	}
}

func (t *Trajectory) base(step int) EventBase { return EventBase{ItemID: t.item.ID, Step: step} }

// Result returns the item's result so far: the finished steps, the best
// candidate of the cache, the usage, and the error that ended the
// trajectory, if any.
func (t *Trajectory) Result() Result {
	res := Result{ID: t.item.ID, Prompt: t.item.Prompt(), Messages: t.item.Messages, Steps: t.steps, ScoreCalls: t.scoreCalls}
	for _, s := range t.steps {
		res.Usage.Add(s.Usage)
		res.ScoreUsage.Add(s.ScoreUsage)
	}
	if len(t.cache.cands) > 0 {
		best := t.cache.best()
		res.Best = best
		res.Response = t.cache.at(best).Text
		res.Score = t.cache.at(best).Score
		res.InitialBest = t.initialBest()
	}
	if t.err != nil {
		res.Error = t.err.Error()
	} else if t.next == "" {
		res.StopReason = t.stop
	}
	return res
}

func (t *Trajectory) initialBest() float64 {
	if len(t.steps) == 0 || len(t.steps[0].Candidates) == 0 {
		return 0
	}
	best := t.steps[0].Candidates[0].Score
	for _, c := range t.steps[0].Candidates[1:] {
		best = max(best, c.Score)
	}
	return best
}

func callOf(req GenerateRequest, gen Generation, d time.Duration, err error) Call {
	c := Call{Stage: req.Stage, Messages: req.Messages, N: req.N, Seed: req.Seed,
		Returned: len(gen.Texts), Usage: gen.Usage, Millis: d.Milliseconds()}
	if err != nil {
		c.Error = err.Error()
	}
	return c
}
