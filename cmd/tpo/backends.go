package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
	"github.com/tpoproject/tpo/reward"
)

const defaultPolicyURL = "http://localhost:11434/v1"

// backendFlags are the settings shared by every command that optimizes:
// the policy and reward backends, the algorithm and the store, in groups
// that register their own flags.
type backendFlags struct {
	policyFlags
	rewardFlags
	algoFlags
	retries int
	store   string
	// tracer, set by the command, records the clients' spans (nil: none).
	tracer tpo.Tracer
}

// policyFlags locate the policy model.
type policyFlags struct {
	policyURLs     listFlag
	policyModel    string
	policyKey      string
	policyInFlight int
	policyTimeout  time.Duration
	maxTokensField string
}

// rewardFlags choose and locate the reward backend.
type rewardFlags struct {
	reward           string
	rewardURLs       listFlag
	rewardModel      string
	rewardKey        string
	rewardCmd        string
	rewardMaxOutput  int64
	rewardEnv        listFlag
	rewardMethod     string
	rewardTokenLevel bool
	rewardLabel      string
	rewardBatch      int
	rewardAllowOld   bool
	rewardTruncate   bool
	rewardInFlight   int
	rewardTimeout    time.Duration
	judgeMaxTokens   int
}

// algoFlags are the TPO settings.
type algoFlags struct {
	mode              string
	width, depth      int
	temperature, topP float64
	maxTokens         int
	critTemperature   float64
	critTopP          float64
	critMaxTokens     int
	maxTextChars      int
	seed              optInt
	patience          int
	targetScore       optFloat
	maxItemTokens     int
	templates         string
}

func (b *backendFlags) register(fs *flag.FlagSet) {
	fs.String("config", "", "YAML `file` with settings (keys are flag names); flags override it")
	b.policyFlags.register(fs)
	registerShared(fs, &b.retries, &b.maxTokensField)
	b.rewardFlags.register(fs)
	b.algoFlags.register(fs)
	fs.StringVar(&b.store, "store", "tpo.db", storeHelp)
}

func (p *policyFlags) register(fs *flag.FlagSet) {
	fs.Var(&p.policyURLs, "policy-url", "policy server base `URL` (OpenAI-compatible, ending in /v1); repeat for replicas (default "+defaultPolicyURL+")")
	fs.StringVar(&p.policyModel, "policy-model", "", "policy model `name` as the server knows it (default: the server's only model)")
	fs.StringVar(&p.policyKey, "policy-key", "", "policy API `key` (default $TPO_POLICY_API_KEY, then $OPENAI_API_KEY)")
	fs.IntVar(&p.policyInFlight, "policy-max-inflight", 64, "most policy requests in flight (0: no limit)")
	fs.DurationVar(&p.policyTimeout, "policy-timeout", 10*time.Minute, "timeout of one policy request attempt")
}

// registerShared registers the flags the policy and the reward backends
// share: retries, and the length field (the judge's too).
func registerShared(fs *flag.FlagSet, retries *int, maxTokensField *string) {
	fs.StringVar(maxTokensField, "max-tokens-field", "max_tokens", "request field for the length limit: max_tokens or max_completion_tokens (OpenAI reasoning models)")
	fs.IntVar(retries, "retries", 4, "retries of a failed request (connection errors, 408, 429, 5xx)")
}

func (r *rewardFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.reward, "reward", "judge", "reward backend: "+rewardBackendNames())
	fs.Var(&r.rewardURLs, "reward-url", "reward server base `URL`; repeat for replicas (judge: default the policy URL)")
	fs.StringVar(&r.rewardModel, "reward-model", "", "reward model `name` (judge: default the policy model)")
	fs.StringVar(&r.rewardKey, "reward-key", "", "reward API `key` (default $TPO_REWARD_API_KEY; judge: the policy key)")
	fs.StringVar(&r.rewardCmd, "reward-cmd", "", "scoring `command` for --reward exec (reads JSON on stdin, prints a JSON array of numbers)")
	fs.Int64Var(&r.rewardMaxOutput, "reward-max-output", reward.DefaultExecMaxOutput, "exec: most `bytes` the command may print per call (it is killed beyond)")
	fs.Var(&r.rewardEnv, "reward-env", "exec: environment variable `NAME` (or NAME=VALUE) passed on to the command; repeat for several (TPO_* and OPENAI_API_KEY are not passed on otherwise)")
	fs.StringVar(&r.rewardMethod, "reward-method", "classify", "vllm: classify (/tokenize then one batched /classify) or pooling (/pooling per response)")
	fs.BoolVar(&r.rewardTokenLevel, "reward-token-level", false, "vllm: a token-level reward model (token_classify task): the reward is the value at the last token (needs --reward-method pooling)")
	fs.StringVar(&r.rewardLabel, "reward-label", "", "tei: the label whose score is the reward, for models with several labels (default LABEL_0)")
	fs.IntVar(&r.rewardBatch, "reward-batch", 32, "tei: pairs per /predict request (the server's --max-client-batch-size)")
	fs.BoolVar(&r.rewardAllowOld, "reward-allow-old-vllm", false, "vllm: use a server older than vLLM 0.11.1, or of unknown version, with a warning (it ignores use_activation: scores may be sigmoid-squashed)")
	fs.BoolVar(&r.rewardTruncate, "reward-truncate", false, "tei: score a pair longer than the model's input limit truncated (noted in the step) instead of failing")
	fs.IntVar(&r.rewardInFlight, "reward-max-inflight", 32, "most reward requests in flight (0: no limit)")
	fs.DurationVar(&r.rewardTimeout, "reward-timeout", 2*time.Minute, "timeout of one reward request attempt (exec: of one command run)")
	fs.IntVar(&r.judgeMaxTokens, "judge-max-tokens", 0, "judge: tokens the judge may write (default the judge's own small limit)")
}

func (a *algoFlags) register(fs *flag.FlagSet) {
	d := tpo.DefaultConfig()
	fs.StringVar(&a.mode, "mode", string(d.Mode), "tpo, revision or bon")
	fs.IntVar(&a.width, "width", d.Width, "N: responses per sampling or update request")
	fs.IntVar(&a.depth, "depth", d.Depth, "D: loss/gradient/update iterations")
	fs.Float64Var(&a.temperature, "temperature", d.Sampling.Temperature, "sampling temperature of responses")
	fs.Float64Var(&a.topP, "top-p", d.Sampling.TopP, "top_p of responses")
	fs.IntVar(&a.maxTokens, "max-tokens", d.Sampling.MaxTokens, "most new tokens of a response")
	fs.Float64Var(&a.critTemperature, "critique-temperature", d.Critique.Temperature, "temperature of the loss and gradient calls")
	fs.Float64Var(&a.critTopP, "critique-top-p", d.Critique.TopP, "top_p of the loss and gradient calls")
	fs.IntVar(&a.critMaxTokens, "critique-max-tokens", d.Critique.MaxTokens, "most new tokens of a critique or of instructions")
	fs.IntVar(&a.maxTextChars, "max-text-chars", d.MaxTextChars, "bytes of each text inserted into a prompt (chosen, rejected, critique); 0: no limit")
	fs.Var(&a.seed, "seed", "base `seed` for reproducible sampling (default: none sent)")
	fs.IntVar(&a.patience, "patience", 0, "stop an item after this many rounds in a row without a better best score (0: off)")
	fs.Var(&a.targetScore, "target-score", "stop an item as soon as its best score reaches this `score` (default: off)")
	fs.IntVar(&a.maxItemTokens, "max-item-tokens", 0, "an item's budget of policy `tokens`: a round estimated to exceed it is not started (0: none)")
	fs.StringVar(&a.templates, "templates", "", "`dir`ectory of prompt templates overriding the built-in ones")
}

// config returns the optimizer settings, checked.
func (b *algoFlags) config() (tpo.Config, error) {
	mode, err := tpo.ParseMode(b.mode)
	if err != nil {
		return tpo.Config{}, usagef("--mode: %v", err)
	}
	c := tpo.Config{
		Mode: mode, Width: b.width, Depth: b.depth,
		Sampling:     tpo.Sampling{Temperature: b.temperature, TopP: b.topP, MaxTokens: b.maxTokens},
		Critique:     tpo.Sampling{Temperature: b.critTemperature, TopP: b.critTopP, MaxTokens: b.critMaxTokens},
		MaxTextChars: b.maxTextChars,
	}
	c.Patience, c.MaxItemTokens = b.patience, b.maxItemTokens
	if b.targetScore.set {
		v := b.targetScore.v
		c.TargetScore = &v
	}
	if b.seed.set {
		s := b.seed.v
		c.Seed = &s
	}
	if err := c.Validate(); err != nil {
		return c, usageError{err}
	}
	return c, nil
}

// backends are the built policy and reward clients.
type backends struct {
	policy    *openai.Client
	reward    tpo.Scorer
	templates *tpo.Templates
	config    tpo.Config
	// identity describes what determines a run's results, for run keys.
	identity map[string]any
}

func (b *backendFlags) build(ctx context.Context, log *slog.Logger) (*backends, error) {
	cfg, err := b.config()
	if err != nil {
		return nil, err
	}
	// Settle usage errors before talking to any server; the judge falls
	// back on the policy's server.
	if err := b.rewardFlags.check(b.reward != "judge"); err != nil {
		return nil, err
	}
	bk := &backends{config: cfg, templates: tpo.DefaultTemplates()}
	if b.templates != "" {
		if bk.templates, err = tpo.LoadTemplates(b.templates); err != nil {
			return nil, usageError{err}
		}
	}
	urls := b.policyURLs.vals
	if len(urls) == 0 {
		urls = []string{defaultPolicyURL}
	}
	key := envOr(b.policyKey, "TPO_POLICY_API_KEY", "OPENAI_API_KEY")
	switch b.maxTokensField {
	case "max_tokens", "max_completion_tokens":
	default:
		return nil, usagef("--max-tokens-field: want max_tokens or max_completion_tokens, got %q", b.maxTokensField)
	}
	pol, err := chatModel(ctx, chatOptions{name: "policy", urls: urls, model: b.policyModel, key: key, tracer: b.tracer,
		timeout: b.policyTimeout, retries: b.retries, inFlight: b.policyInFlight, maxTokensField: b.maxTokensField}, log)
	if err != nil {
		return nil, err
	}
	if b.policyModel != "" {
		if err := checkModel(ctx, pol, b.policyModel); err != nil {
			return nil, err
		}
	}
	b.policyModel = pol.Model()
	bk.policy = pol

	// The judge defaults to the policy's server, model and key.
	rurls, rmodel, rkey := b.rewardURLs.vals, b.rewardModel, envOr(b.rewardKey, "TPO_REWARD_API_KEY")
	if b.reward == "judge" {
		if len(rurls) == 0 {
			rurls = urls
		}
		if rmodel == "" {
			rmodel = b.policyModel
		}
		if rkey == "" {
			rkey = key
		}
		b.rewardModel = rmodel
	}
	if bk.reward, err = b.newScorer(rurls, rmodel, rkey, log); err != nil {
		return nil, usagef("reward: %v", err)
	}
	if err := checkScorerServers(ctx, bk.reward); err != nil {
		return nil, err
	}
	bk.identity = map[string]any{
		"config":       cfg,
		"policy_model": b.policyModel,
		"reward":       b.reward,
		"reward_model": b.rewardModel,
		"reward_cmd":   b.rewardCmd,
		"reward_token": b.rewardTokenLevel,
		"reward_label": b.rewardLabel,
		"templates":    templatesDigest(b.templates),
	}
	return bk, nil
}

// serverChecker is a scorer that can check its servers before any
// sampling (reward.VLLM, reward.TEI).
type serverChecker interface {
	Check(ctx context.Context) error
}

// checkScorerServers runs the start-up check of s, when it has one: an
// unreachable or wrong reward server fails at once, naming its URL.
func checkScorerServers(ctx context.Context, s tpo.Scorer) error {
	c, ok := s.(serverChecker)
	if !ok {
		return nil
	}
	return c.Check(ctx)
}

// checkModel fails when the policy server cannot be reached, or lists its
// models and the named one is not among them.
func checkModel(ctx context.Context, c *openai.Client, model string) error {
	return checkServed(ctx, c, "policy", model)
}

// templatesDigest hashes a templates directory's files, so that changing a
// template changes the run key.
func templatesDigest(dir string) string {
	if dir == "" {
		return ""
	}
	h := sha256.New()
	for _, name := range tpo.TemplateNames {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			fmt.Fprintf(h, "%s\x00%s\x00", name, data)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// runKey derives a run's key from what determines its results.
func runKey(identity map[string]any, extra ...string) string {
	h := sha256.New()
	b, _ := json.Marshal(identity)
	h.Write(b)
	for _, e := range extra {
		h.Write([]byte{0})
		h.Write([]byte(e))
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// policyJudge returns the judge scorer on the policy's server and model,
// after build has settled them.
func (b *backendFlags) policyJudge(log *slog.Logger) (tpo.Scorer, error) {
	urls := b.policyURLs.vals
	if len(urls) == 0 {
		urls = []string{defaultPolicyURL}
	}
	j := *b
	j.reward = "judge"
	s, err := j.newScorer(urls, b.policyModel, envOr(b.policyKey, "TPO_POLICY_API_KEY", "OPENAI_API_KEY"), log)
	if err != nil {
		return nil, fmt.Errorf("judge on the policy server: %w", err)
	}
	return s, nil
}
