package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/openai"
	"github.com/tpoproject/tpo/reward"
)

// registerRewardFlags registers on fs the reward flags of tpo run (the
// same names, meanings and defaults), for commands that only score. The
// backend defaults to none: --reward "".
func registerRewardFlags(fs *flag.FlagSet) *backendFlags {
	b := &backendFlags{}
	b.rewardFlags.register(fs)
	registerShared(fs, &b.retries, &b.maxTokensField)
	b.reward = ""
	return b
}

// httpRetries converts the --retries flag to httpx's convention, where
// zero means the default and a negative number none.
func httpRetries(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// buildScorer builds only the reward scorer the reward flags name. Unlike
// tpo run, the judge backend has no policy server to fall back on: it
// needs --reward-url, and uses the server's only model when --reward-model
// is not given.
func (b *backendFlags) buildScorer(ctx context.Context, log *slog.Logger) (tpo.Scorer, error) {
	if err := b.checkScorer(); err != nil {
		return nil, err
	}
	key := envOr(b.rewardKey, "TPO_REWARD_API_KEY")
	if b.reward == "judge" && b.rewardModel == "" {
		c, err := chatModel(ctx, chatOptions{name: "reward", urls: b.rewardURLs.vals, key: key,
			timeout: b.rewardTimeout, retries: b.retries, inFlight: b.rewardInFlight, tracer: b.tracer}, log)
		if err != nil {
			return nil, err
		}
		b.rewardModel = c.Model()
	}
	s, err := b.newScorer(b.rewardURLs.vals, b.rewardModel, key, log)
	if err != nil {
		return nil, usagef("reward: %v", err)
	}
	if err := checkScorerServers(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// checkScorer settles the usage errors of the reward flags for
// buildScorer, before any file is read or server asked: every backend
// that talks to a server needs its URL here.
func (b *backendFlags) checkScorer() error { return b.rewardFlags.check(true) }

// rewardBackend is one --reward backend: what it needs, and how its
// scorer is built from the reward flags and the resolved servers.
type rewardBackend struct {
	name     string
	usesURL  bool // it talks to a server at --reward-url
	usesCmd  bool // it runs --reward-cmd
	newScore func(r *rewardFlags, c scorerConn) (tpo.Scorer, error)
}

// scorerConn is where a scorer's servers are and how to talk to them.
type scorerConn struct {
	http           httpx.Options
	model          string
	maxTokensField string
}

// rewardBackends are the --reward backends, in the order help lists them.
var rewardBackends = []rewardBackend{
	{"vllm", true, false, func(r *rewardFlags, c scorerConn) (tpo.Scorer, error) {
		return reward.NewVLLM(reward.VLLMOptions{Options: c.http, Model: c.model, Method: r.rewardMethod,
			TokenLevel: r.rewardTokenLevel, AllowOldServer: r.rewardAllowOld})
	}},
	{"tei", true, false, func(r *rewardFlags, c scorerConn) (tpo.Scorer, error) {
		return reward.NewTEI(reward.TEIOptions{Options: c.http, BatchSize: r.rewardBatch, LabelName: r.rewardLabel,
			Truncate: r.rewardTruncate})
	}},
	{"judge", true, false, func(r *rewardFlags, c scorerConn) (tpo.Scorer, error) {
		return reward.NewJudge(reward.JudgeOptions{Options: c.http, Model: c.model, MaxTokens: r.judgeMaxTokens,
			MaxTokensField: c.maxTokensField})
	}},
	{"exec", false, true, func(r *rewardFlags, c scorerConn) (tpo.Scorer, error) {
		env, err := execEnv(r.rewardEnv.vals)
		if err != nil {
			return nil, err
		}
		if r.rewardMaxOutput < 1 {
			return nil, fmt.Errorf("--reward-max-output must be at least 1, got %d", r.rewardMaxOutput)
		}
		return reward.NewExec(reward.ExecOptions{Command: r.rewardCmd, Timeout: c.http.Timeout, Env: env,
			MaxOutput: r.rewardMaxOutput, Logger: c.http.Logger})
	}},
}

// rewardBackendNames lists the backends for help and errors.
func rewardBackendNames() string {
	names := make([]string, len(rewardBackends))
	for i, rb := range rewardBackends {
		names[i] = rb.name
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// backend returns the backend --reward names.
func (r *rewardFlags) backend() (rewardBackend, error) {
	for _, rb := range rewardBackends {
		if rb.name == r.reward {
			return rb, nil
		}
	}
	return rewardBackend{}, usagef("--reward: want %s, got %q", rewardBackendNames(), r.reward)
}

// check settles the usage errors of the reward flags: an unknown backend,
// a missing --reward-cmd, and a missing --reward-url when needURL (tpo run's
// judge falls back on the policy's server).
func (r *rewardFlags) check(needURL bool) error {
	rb, err := r.backend()
	switch {
	case err != nil:
		return err
	case rb.usesURL && needURL && len(r.rewardURLs.vals) == 0:
		return usagef("--reward %s needs --reward-url", rb.name)
	case rb.usesCmd && r.rewardCmd == "":
		return usagef("--reward %s needs --reward-cmd", rb.name)
	}
	return nil
}

// newScorer builds the reward scorer of backend b.reward from resolved
// settings: the servers' URLs, the model (vllm, judge) and the API key.
func (b *backendFlags) newScorer(urls []string, model, key string, log *slog.Logger) (tpo.Scorer, error) {
	rb, err := b.backend()
	if err != nil {
		return nil, err
	}
	return rb.newScore(&b.rewardFlags, scorerConn{
		http: httpx.Options{URLs: urls, APIKey: key, MaxInFlight: b.rewardInFlight, MaxRetries: httpRetries(b.retries),
			Timeout: b.rewardTimeout, Logger: log, Tracer: b.tracer},
		model: model, maxTokensField: b.maxTokensField,
	})
}

// execEnv resolves the --reward-env values: NAME takes the variable from
// tpo's environment (it must be set), NAME=VALUE sets it.
func execEnv(vals []string) ([]string, error) {
	var out []string
	for _, v := range vals {
		name, value, set := strings.Cut(v, "=")
		if name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("--reward-env %q: want a variable NAME or NAME=VALUE", v)
		}
		if !set {
			var ok bool
			if value, ok = os.LookupEnv(name); !ok {
				return nil, fmt.Errorf("--reward-env %s: %s is not set in tpo's environment", name, name)
			}
		}
		out = append(out, name+"="+value)
	}
	return out, nil
}

// chatOptions locate a chat model used to judge or classify.
type chatOptions struct {
	name     string // "judge", "classifier": for errors and logs
	urls     []string
	model    string // empty: the server's only model
	key      string
	timeout  time.Duration
	retries  int // as the --retries flag: 0 means none
	inFlight int
	// maxTokensField is the length limit's field (default max_tokens).
	maxTokensField string
	tracer         tpo.Tracer // records spans (nil: none)
	// check, with a model given, asks the server whether it serves it
	// (and so whether it can be reached) before anything else is done.
	check bool
}

// chatModel returns a client of an OpenAI-compatible server for a model
// that judges or classifies. With no model name it asks the server for its
// models and uses the only one.
func chatModel(ctx context.Context, o chatOptions, log *slog.Logger) (*openai.Client, error) {
	model := o.model
	if model == "" {
		model = "(unset)" // replaced below by the server's only model
	}
	c, err := openai.New(openai.Options{
		Options: httpx.Options{Name: o.name, URLs: o.urls, APIKey: o.key, Timeout: o.timeout,
			MaxRetries: httpRetries(o.retries), MaxInFlight: o.inFlight, Logger: log, Tracer: o.tracer},
		Model: model, MaxTokensField: o.maxTokensField,
	})
	if err != nil {
		return nil, usagef("%s: %v", o.name, err)
	}
	if o.model != "" {
		if o.check {
			if err := checkServed(ctx, c, o.name, o.model); err != nil {
				return nil, err
			}
		}
		return c, nil
	}
	models, err := c.ModelIDs(ctx)
	if err != nil {
		if isUnreachable(err) {
			return nil, unreachable(o.name, c.URLs(), err)
		}
		return nil, fmt.Errorf("no %s model given, and listing the %s server's models failed: %w", o.name, o.name, err)
	}
	if len(models) != 1 {
		return nil, usagef("--%s-model is required: the %s server serves %s (%s)", o.name, o.name, plural(len(models), "model", "models"), strings.Join(models, ", "))
	}
	log.Info("using the server's only model", "role", o.name, "model", models[0])
	return c.WithModel(models[0]), nil
}

// checkServed fails when the server of role name (policy, judge, ...)
// cannot be reached, or lists its models and model is not among them.
// Servers that cannot list models are let through.
func checkServed(ctx context.Context, c *openai.Client, name, model string) error {
	models, err := c.ModelIDs(ctx)
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			return err
		}
		if isUnreachable(err) {
			return unreachable(name, c.URLs(), err)
		}
		slog.Debug("cannot list the server's models", "role", name, "err", err)
		return nil
	}
	if slices.Contains(models, model) {
		return nil
	}
	slices.Sort(models)
	return usagef("the %s server does not serve model %q (it serves: %s)", name, model, strings.Join(models, ", "))
}

// unreachableError says that a server cannot be reached and what to do.
type unreachableError struct {
	msg string
	err error
}

func (e *unreachableError) Error() string { return e.msg }
func (e *unreachableError) Unwrap() error { return e.err }

// unreachable explains that the server of role name (policy, judge, ...)
// at urls cannot be reached, and what to do about it: for the policy at
// the default URL, start Ollama; else give the right URL; or try tpo on
// its built-in simulator.
func unreachable(name string, urls []string, err error) error {
	cause := err
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.As(err, &dns):
		cause = dns
	case errors.As(err, &op):
		cause = op
	}
	hint := fmt.Sprintf("Check that the server runs at that URL (--%s-url).", name)
	if name == "policy" {
		hint = "Check that the server runs at that URL (--policy-url), or try tpo without a model server: --sim runs it against a built-in simulator."
		if slices.Equal(urls, []string{defaultPolicyURL}) {
			hint = "That is Ollama's address, the default: start Ollama (ollama serve), give your server's URL with --policy-url, " +
				"or try tpo without a model server: --sim runs it against a built-in simulator."
		}
	}
	return &unreachableError{
		msg: fmt.Sprintf("cannot reach the %s server at %s (%v).\n%s", name, strings.Join(urls, ", "), cause, hint),
		err: err,
	}
}
