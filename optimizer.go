package tpo

import (
	"context"
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

	// Stopping rules; all off by default, so that every item runs the
	// paper's D rounds.

	// Patience, when positive, stops an item after this many rounds in a
	// row that did not raise its best score.
	Patience int `json:"patience,omitempty" yaml:"patience,omitempty"`
	// TargetScore, when set, stops an item as soon as its best score
	// reaches it (checked after step 0 too).
	TargetScore *float64 `json:"target_score,omitempty" yaml:"target_score,omitempty"`
	// MaxItemTokens, when positive, is an item's budget of policy tokens
	// (prompt plus completion): a round that would exceed it is not
	// started. A round's cost is estimated from a model of its three calls
	// calibrated on the steps so far, so an item can go over by what the
	// estimate of its last round missed.
	MaxItemTokens int `json:"max_item_tokens,omitempty" yaml:"max_item_tokens,omitempty"`
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
	if c.Patience < 0 {
		return fmt.Errorf("patience must not be negative, got %d", c.Patience)
	}
	if c.TargetScore != nil && (math.IsNaN(*c.TargetScore) || math.IsInf(*c.TargetScore, 0)) {
		return fmt.Errorf("target score must be a finite number, got %v", *c.TargetScore)
	}
	if c.MaxItemTokens < 0 {
		return fmt.Errorf("max item tokens must not be negative, got %d", c.MaxItemTokens)
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
	// Tracer, when set, records a span per item and per stage.
	Tracer Tracer
}

// Options adjust one call of Optimize.
type Options struct {
	// Resume holds the steps of an earlier, interrupted optimization of the
	// same item (steps 0..k, in order); the optimization continues at k+1.
	Resume []Step
	// OnEvent, if set, receives every event, synchronously.
	OnEvent func(Event)
	// OnStep, if set, is called with each newly finished step before the
	// next begins (to persist it). An error stops the optimization. It is
	// called even when ctx has been cancelled meanwhile, so that a finished
	// step is never lost.
	OnStep func(ctx context.Context, s Step) error
	// Deadline, when set, is when the answer is due: the calls in flight
	// are cancelled then and the result is the best answer so far, with
	// StopReason StopDeadline. An item with no scored response by then
	// fails.
	Deadline time.Time
}

// Optimize runs the configured algorithm on item and returns its result. On
// error the result holds the steps that finished and Error is set.
func (o *Optimizer) Optimize(ctx context.Context, item Item, opts Options) (Result, error) {
	ctx, span := StartSpan(ctx, o.Tracer, "tpo.item", A("tpo.item", item.ID), A("tpo.mode", string(o.Config.Mode)),
		A("tpo.width", o.Config.Width), A("tpo.depth", o.Config.Steps()))
	res, err := o.optimize(ctx, item, opts)
	span.Set(A("tpo.steps", len(res.Steps)), A("tpo.score", res.Score), A("tpo.stop_reason", string(res.StopReason)),
		A("tpo.prompt_tokens", res.Usage.PromptTokens), A("tpo.completion_tokens", res.Usage.CompletionTokens))
	span.End(err)
	return res, err
}

func (o *Optimizer) optimize(ctx context.Context, item Item, opts Options) (Result, error) {
	t, err := o.Start(item, opts)
	if err != nil {
		return t.Result(), err
	}
	run := ctx
	if !opts.Deadline.IsZero() {
		var cancel context.CancelFunc
		run, cancel = context.WithDeadline(ctx, opts.Deadline)
		defer cancel()
	}
	for st := t.Next(); st != ""; st = t.Next() {
		if err := t.Do(run, st); err != nil {
			if ctx.Err() == nil && run.Err() != nil && t.StopAtDeadline() {
				break
			}
			return t.Result(), err
		}
	}
	res := t.Result()
	t.emit(Done{EventBase: EventBase{ItemID: item.ID, Step: len(res.Steps) - 1}, Result: res})
	return res, nil
}

func (o *Optimizer) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// defaultTemplates parses the built-in templates once.
var defaultTemplates = sync.OnceValue(DefaultTemplates)
