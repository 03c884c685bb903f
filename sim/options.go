package sim

import (
	"log/slog"
	"time"

	"github.com/tpoproject/tpo/internal/vllmver"
)

// Options configure a Server. Zero values mean the defaults given with each
// field.
type Options struct {
	// Seed seeds every random choice of the simulator.
	Seed int64

	// Model is the policy model's name (default "sim-policy"); RewardModel
	// the reward model's (default "sim-reward"). Requests naming another
	// model get a 404; an empty name means the endpoint's model.
	Model       string
	RewardModel string
	// MaxModelLen is the context window in tokens (default 32768).
	MaxModelLen int
	// VLLMVersion is the vLLM version answered on GET /version (default
	// "0.12.0", a current one). The reward endpoints follow it: before
	// 0.11.1 use_activation is ignored (activation decides from 0.10.1,
	// softmax before) and /pooling ignores task; from 0.11.1 use_activation
	// decides and a legacy activation field present at all turns the
	// activation on. A version that does not parse is answered as given but
	// behaves as the default.
	VLLMVersion string
	// RefuseTokenIDs makes /classify refuse lists of token ids with the
	// 400 and pydantic message ("Input should be a valid string") of some
	// vLLM 0.11.2-0.12 servers; strings are still classified.
	RefuseTokenIDs bool
	// PoolingGenerationPrompt makes /pooling add the generation prompt
	// when a request does not say add_generation_prompt, as very old vLLM
	// versions did: the reward is then read after an empty assistant turn.
	PoolingGenerationPrompt bool

	// Slots is the most sequences decoded together (default 64).
	Slots int
	// A decode step takes StepBase + StepPerSeq*active sequences +
	// PrefillPerToken*prompt tokens admitted in the step, in simulated time.
	// Defaults: 15ms, 250µs, 50µs.
	StepBase        time.Duration
	StepPerSeq      time.Duration
	PrefillPerToken time.Duration
	// PrefixCacheBlocks is the capacity of the prefix cache in blocks of
	// BlockTokens tokens (default 32768, about half a million tokens;
	// negative: no prefix cache). Prompt tokens served from it cost no
	// prefill time.
	PrefixCacheBlocks int
	// Response lengths in tokens are log-normal with mean MeanTokens
	// (default 350) and log-space standard deviation TokenSigma (default
	// 0.6), then capped by max_tokens.
	MeanTokens int
	TokenSigma float64
	// TimeScale is the wall time one simulated second takes, in seconds
	// (default 1: real time; 0.001 runs a thousand times faster).
	TimeScale float64

	// A reward call takes RewardBase + RewardPerToken*tokens of simulated
	// time. Defaults: 10ms, 20µs.
	RewardBase     time.Duration
	RewardPerToken time.Duration
	// RewardNoise is the amplitude of the hash-based noise added to q by
	// the reward (default 0.1; negative for none).
	RewardNoise float64

	// UpdateGain is the mean gain in q of an update that follows matching
	// instructions (default 0.5).
	UpdateGain float64
	// Plateau, when positive, makes gains diminish as a weaker model's do:
	// an update gains UpdateGain*(1 - spread/Plateau) on average, where
	// spread is how far the best response of its prompt is above the
	// worst, and once spread reaches Plateau it is noise (standard
	// deviation 0.2) around the best, as likely worse as better. Default 0:
	// every update that follows its instructions gains.
	Plateau float64
	// UnparsedRate is the fraction of update choices that omit the
	// <improved_response> tags (default 0.05; negative for none).
	UnparsedRate float64

	// Faults are injected into every endpoint except /v1/models, /version
	// and /sim/stats; RewardFaults, when not nil, replace them for the reward
	// endpoints (/tokenize, /classify, /pooling).
	Faults       Faults
	RewardFaults *Faults

	// Logger receives a debug record for every injected fault (default:
	// discard).
	Logger *slog.Logger
}

// withDefaults returns o with zero fields set to their defaults and negative
// "none" values set to zero.
func (o Options) withDefaults() Options {
	if o.Model == "" {
		o.Model = "sim-policy"
	}
	if o.RewardModel == "" {
		o.RewardModel = "sim-reward"
	}
	if o.MaxModelLen <= 0 {
		o.MaxModelLen = 32768
	}
	if o.VLLMVersion == "" {
		o.VLLMVersion = vllmver.Current
	}
	if o.Slots <= 0 {
		o.Slots = 64
	}
	if o.StepBase <= 0 {
		o.StepBase = 15 * time.Millisecond
	}
	if o.StepPerSeq <= 0 {
		o.StepPerSeq = 250 * time.Microsecond
	}
	if o.PrefillPerToken <= 0 {
		o.PrefillPerToken = 50 * time.Microsecond
	}
	o.PrefixCacheBlocks = int(orDefault(float64(o.PrefixCacheBlocks), 32768))
	if o.MeanTokens <= 0 {
		o.MeanTokens = 350
	}
	if o.TokenSigma <= 0 {
		o.TokenSigma = 0.6
	}
	if o.TimeScale <= 0 {
		o.TimeScale = 1
	}
	if o.RewardBase <= 0 {
		o.RewardBase = 10 * time.Millisecond
	}
	if o.RewardPerToken <= 0 {
		o.RewardPerToken = 20 * time.Microsecond
	}
	o.RewardNoise = orDefault(o.RewardNoise, 0.1)
	if o.UpdateGain <= 0 {
		o.UpdateGain = 0.5
	}
	o.UnparsedRate = orDefault(o.UnparsedRate, 0.05)
	o.Faults = o.Faults.withDefaults()
	if o.RewardFaults != nil {
		f := o.RewardFaults.withDefaults()
		o.RewardFaults = &f
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// orDefault maps zero to def and negative values to zero.
func orDefault(v, def float64) float64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}
