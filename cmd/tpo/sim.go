package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tpoproject/tpo/sim"
)

const simUsage = `usage: tpo sim [flags]

Serves a simulated model server for trying tpo and measuring it without GPUs:
a continuous-batching policy model on the OpenAI chat completions API
(/v1/chat/completions, streamed or not, /v1/models) that also plays the LLM
judge (a grade from 1 to 10, with logprobs), and a vLLM-style reward model
(/tokenize, /classify, /pooling), with GET /sim/stats for its own accounting.
Its texts are synthetic: markers such as [q=0.512 id=1a2b3c4d], then filler
words. Faults can be injected into the policy endpoints, the reward endpoints
or both. Point tpo at it with

    tpo run --policy-url URL/v1 --policy-model sim-policy ...       # it judges too
    tpo run --policy-url URL/v1 --policy-model sim-policy --reward vllm --reward-url URL ...

or let tpo run --sim and tpo serve --sim start one in process.

Flags:
`

// simFlags are the settings of a simulated server's shape and speed, shared
// by tpo sim and tpo bench.
type simFlags struct {
	seed        int64
	slots       int
	timeScale   float64
	meanTokens  int
	tokenSigma  float64
	maxModelLen int
	unparsed    float64
	updateGain  float64
	plateau     float64
	cacheBlocks int
}

func (s *simFlags) register(fs *flag.FlagSet, timeScale float64) {
	fs.Int64Var(&s.seed, "seed", 1, "seed of every random choice of the simulator")
	fs.IntVar(&s.slots, "slots", 64, "most sequences decoded together (the batch size)")
	fs.Float64Var(&s.timeScale, "time-scale", timeScale, "wall seconds per simulated second (0.01: a hundred times faster than real time)")
	fs.IntVar(&s.meanTokens, "mean-tokens", 350, "mean length of a generated response in tokens")
	fs.Float64Var(&s.tokenSigma, "token-sigma", 0.6, "log-space standard deviation of response lengths")
	fs.IntVar(&s.maxModelLen, "max-model-len", 32768, "context window in tokens")
	fs.Float64Var(&s.unparsed, "unparsed-rate", 0.05, "fraction of update answers without <improved_response> tags")
	fs.Float64Var(&s.updateGain, "update-gain", 0.5, "mean reward gain of an update that follows its instructions")
	fs.Float64Var(&s.plateau, "plateau", 0, "spread of rewards (best above worst) at which updates stop gaining, as a weaker model's do (0: they always gain)")
	fs.IntVar(&s.cacheBlocks, "prefix-cache-blocks", 32768, fmt.Sprintf("capacity of the prefix cache in `blocks` of %d tokens (0: no prefix cache)", sim.BlockTokens))
}

func (s *simFlags) check() error {
	switch {
	case s.slots < 1:
		return usagef("--slots must be at least 1")
	case !(s.timeScale > 0):
		return usagef("--time-scale must be positive")
	case s.meanTokens < 1:
		return usagef("--mean-tokens must be at least 1")
	case !(s.tokenSigma > 0):
		return usagef("--token-sigma must be positive")
	case s.maxModelLen < 1:
		return usagef("--max-model-len must be at least 1")
	case !(s.unparsed >= 0 && s.unparsed <= 1):
		return usagef("--unparsed-rate must be in [0, 1]")
	case !(s.updateGain > 0):
		return usagef("--update-gain must be positive")
	case !(s.plateau >= 0):
		return usagef("--plateau must not be negative")
	case s.cacheBlocks < 0:
		return usagef("--prefix-cache-blocks must not be negative (0: no prefix cache)")
	}
	return nil
}

// options returns the simulator's options (without faults).
func (s *simFlags) options() sim.Options {
	unparsed := s.unparsed
	if unparsed == 0 {
		unparsed = -1 // sim: negative means none
	}
	blocks := s.cacheBlocks
	if blocks == 0 {
		blocks = -1 // sim: negative means none
	}
	return sim.Options{Seed: s.seed, Slots: s.slots, TimeScale: s.timeScale, MeanTokens: s.meanTokens,
		TokenSigma: s.tokenSigma, MaxModelLen: s.maxModelLen, UnparsedRate: unparsed, UpdateGain: s.updateGain, Plateau: s.plateau,
		PrefixCacheBlocks: blocks}
}

// faultFlags are the fault injection settings of tpo sim.
type faultFlags struct {
	f       sim.Faults
	style   string
	target  string
	logNote bool
}

func (ff *faultFlags) register(fs *flag.FlagSet) {
	fs.Float64Var(&ff.f.RateLimited, "fail-429", 0, "fraction of requests answered 429 Too Many Requests")
	fs.Float64Var(&ff.f.ServerError, "fail-500", 0, "fraction of requests answered 500 Internal Server Error")
	fs.Float64Var(&ff.f.Unavailable, "fail-503", 0, "fraction of requests answered 503 Service Unavailable")
	fs.Float64Var(&ff.f.Timeout, "timeout-rate", 0, "fraction of requests that hang (until the client gives up or --hang passes)")
	fs.Float64Var(&ff.f.Drop, "drop-rate", 0, "fraction of responses whose connection drops halfway through the body")
	fs.Float64Var(&ff.f.Malformed, "malformed-rate", 0, "fraction of 200 responses whose body is not JSON")
	fs.Float64Var(&ff.f.SlowFirstByte, "slow-first-byte", 0, "fraction of responses delayed by --first-byte-delay")
	fs.StringVar(&ff.style, "error-style", "vllm", "error bodies of injected statuses: vllm, openai, flat, llamacpp, ollama, tgi or mixed")
	fs.DurationVar(&ff.f.RetryAfter, "retry-after", 0, "Retry-After sent with injected 429 and 503 (0: none)")
	fs.DurationVar(&ff.f.Hang, "hang", 5*time.Minute, "how long a hanging request lasts")
	fs.DurationVar(&ff.f.FirstByteDelay, "first-byte-delay", 2*time.Second, "delay of a slow first byte")
	fs.StringVar(&ff.target, "faults", "both", "endpoints the faults apply to: both, policy or reward")
}

// apply sets the faults of opts.
func (ff *faultFlags) apply(opts *sim.Options) error {
	rates := []struct {
		name string
		v    float64
	}{{"--fail-429", ff.f.RateLimited}, {"--fail-500", ff.f.ServerError}, {"--fail-503", ff.f.Unavailable},
		{"--timeout-rate", ff.f.Timeout}, {"--drop-rate", ff.f.Drop}, {"--malformed-rate", ff.f.Malformed},
		{"--slow-first-byte", ff.f.SlowFirstByte}}
	sum := 0.0
	for _, r := range rates {
		if !(r.v >= 0 && r.v <= 1) {
			return usagef("%s must be in [0, 1], got %g", r.name, r.v)
		}
		sum += r.v
	}
	if sum > 1+1e-9 {
		return usagef("the fault rates add up to %g; they must not exceed 1", sum)
	}
	switch st := sim.ErrorStyle(ff.style); st {
	case sim.StyleVLLM, sim.StyleOpenAI, sim.StyleFlat, sim.StyleLlamaCpp, sim.StyleOllama, sim.StyleTGI, sim.StyleMixed:
		ff.f.Style = st
	default:
		return usagef("--error-style: want vllm, openai, flat, llamacpp, ollama, tgi or mixed, got %q", ff.style)
	}
	if ff.f.RetryAfter < 0 || ff.f.Hang < 0 || ff.f.FirstByteDelay < 0 {
		return usagef("fault durations must not be negative")
	}
	none := sim.Faults{}
	switch ff.target {
	case "both":
		opts.Faults = ff.f
	case "policy":
		opts.Faults, opts.RewardFaults = ff.f, &none
	case "reward":
		f := ff.f
		opts.RewardFaults = &f
	default:
		return usagef("--faults: want both, policy or reward, got %q", ff.target)
	}
	ff.logNote = sum > 0
	return nil
}

func cmdSim(ctx context.Context, args []string, env *environ) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	var sf simFlags
	sf.register(fs, 1)
	var ff faultFlags
	ff.register(fs)
	addr := fs.String("addr", "127.0.0.1:8000", "`address` to listen on (host:port; port 0 picks a free one)")
	model := fs.String("model", "sim-policy", "policy model name")
	rewardModel := fs.String("reward-model", "sim-reward", "reward model name")
	every := fs.Duration("log-every", 10*time.Second, "interval of the utilization log lines (0: none)")
	shutdownAfter := fs.Duration("shutdown-timeout", 5*time.Second, "on SIGINT/SIGTERM, how long requests in flight may take to finish")
	verbose := fs.Bool("v", false, "log every injected fault")
	fs.Usage = func() { fmt.Fprint(fs.Output(), simUsage); fs.PrintDefaults() }
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("sim takes no arguments, got %q", strings.Join(pos, " "))
	}
	if err := sf.check(); err != nil {
		return err
	}
	if *every < 0 || *shutdownAfter < 0 {
		return usagef("durations must not be negative")
	}
	opts := sf.options()
	opts.Model, opts.RewardModel = *model, *rewardModel
	if err := ff.apply(&opts); err != nil {
		return err
	}
	log := env.logAt(slog.LevelInfo)
	if *verbose {
		log = env.logAt(slog.LevelDebug)
		opts.Logger = log
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := sim.New(opts)
	defer srv.Close()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	url := "http://" + ln.Addr().String()
	fmt.Fprintf(env.stdout, "%s\n", url)
	fmt.Fprintf(env.stderr, "tpo sim: serving policy %q at %s/v1 and reward %q at %s (%d slots, time scale %g)\n",
		opts.Model, url, opts.RewardModel, url, sf.slots, sf.timeScale)
	if ff.logNote {
		target := ff.target
		if target == "both" {
			target = "policy and reward"
		}
		fmt.Fprintf(env.stderr, "tpo sim: injecting faults into the %s endpoints\n", target)
	}

	if *every > 0 {
		stopLog := logEvery(ctx, log, srv, *every)
		defer stopLog()
	}
	// Stop accepting, let requests in flight finish for a while, then end
	// the rest (the simulator answers them 503) and close the connections.
	err = serveUntil(ctx, hs, ln, shutdown{grace: *shutdownAfter, overrun: srv.Close})
	srv.Close()
	st := srv.Stats()
	fmt.Fprintf(env.stderr, "tpo sim: stopped after %.0fs: %d chat requests, %d sequences, %d reward calls, utilization %.1f%%, faults %v\n",
		st.WallSeconds, st.Requests[sim.EndpointChat], st.Sequences, st.RewardCalls, 100*st.Utilization, st.Faults)
	return err
}

// logEvery logs what the simulator did every interval until ctx ends or
// the returned stop is called; stop waits for the logger to end.
func logEvery(ctx context.Context, log *slog.Logger, srv *sim.Server, every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		var prev sim.Stats
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				st := srv.Stats()
				logInterval(log, prev, st)
				prev = st
			}
		}
	}()
	return func() { cancel(); <-done }
}

// logInterval logs what the simulator did between two snapshots of its
// stats (taken since the same start).
func logInterval(log *slog.Logger, prev, cur sim.Stats) {
	dSim := cur.SimSeconds - prev.SimSeconds
	util := 0.0
	if dSim > 0 && cur.Slots > 0 {
		util = (cur.BusySlotSeconds - prev.BusySlotSeconds) / (float64(cur.Slots) * dSim)
	}
	var faults int64
	for k, v := range cur.Faults {
		faults += v - prev.Faults[k]
	}
	log.Info("sim",
		"utilization", fmt.Sprintf("%.1f%%", 100*util),
		"active", cur.Active, "queued", cur.Queued,
		"chat_requests", cur.Requests[sim.EndpointChat]-prev.Requests[sim.EndpointChat],
		"tokens", cur.GeneratedTokens-prev.GeneratedTokens,
		"reward_calls", cur.RewardCalls-prev.RewardCalls,
		"faults", faults)
}
