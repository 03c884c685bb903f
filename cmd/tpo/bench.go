package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/bench"
	"github.com/tpoproject/tpo/guard"
)

const benchUsage = `usage: tpo bench BENCHMARK [flags]

Measures tpo against a simulated model server run in this process (see
'tpo sim'), through the same clients, store and runner as 'tpo run' and
'tpo serve'. Each benchmark prints a table on stderr and ends by printing
one JSON line with its figures on stdout.

benchmarks:
  throughput  prompts per minute and server utilization of 'tpo run', and of
              a scheduler that mimics the paper's script, on the same server
  serve       latency 'tpo serve' adds on top of its upstream calls (p50, p99)
  tokens      requests, generations, scored candidates and tokens per prompt
              by mode and (N, D), against what the algorithm requires

Run 'tpo bench BENCHMARK -h' for a benchmark's flags.
`

func cmdBench(ctx context.Context, args []string, env *environ) error {
	return runSubcommand(ctx, args, env, benchUsage, "benchmark", []subcommand{
		{"throughput", benchThroughput}, {"serve", benchServe}, {"tokens", benchTokens},
	})
}

// intList is a comma-separated list of positive integers.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("want positive integers separated by commas, got %q", f)
		}
		out = append(out, n)
	}
	*l = out
	return nil
}

// benchAlgoFlags are the optimization settings of a benchmark (fewer than
// tpo run's algoFlags, and a seed always set).
type benchAlgoFlags struct {
	mode         string
	width, depth int
	maxTokens    int
	critTokens   int
	seed         int64
}

func (a *benchAlgoFlags) register(fs *flag.FlagSet) {
	d := tpo.DefaultConfig()
	fs.StringVar(&a.mode, "mode", string(d.Mode), "tpo, revision or bon")
	fs.IntVar(&a.width, "width", d.Width, "N: responses per sampling or update request")
	fs.IntVar(&a.depth, "depth", d.Depth, "D: loss/gradient/update iterations")
	fs.IntVar(&a.maxTokens, "max-tokens", d.Sampling.MaxTokens, "most new tokens of a response")
	fs.IntVar(&a.critTokens, "critique-max-tokens", d.Critique.MaxTokens, "most new tokens of a critique or of instructions")
	fs.Int64Var(&a.seed, "request-seed", 1, "base seed of the requests (the same for every pass, so that they get the same texts)")
}

func (a *benchAlgoFlags) config() (tpo.Config, error) {
	c := tpo.DefaultConfig()
	m, err := tpo.ParseMode(a.mode)
	if err != nil {
		return c, usagef("--mode: %v", err)
	}
	c.Mode, c.Width, c.Depth = m, a.width, a.depth
	c.Sampling.MaxTokens, c.Critique.MaxTokens = a.maxTokens, a.critTokens
	seed := a.seed
	c.Seed = &seed
	if err := c.Validate(); err != nil {
		return c, usageError{err}
	}
	return c, nil
}

const throughputUsage = `usage: tpo bench throughput [flags]

Optimizes --prompts synthetic prompts with the runner of 'tpo run' (openai
client, vLLM reward client, SQLite store) at each --concurrency, then
--mimic-prompts prompts with a scheduler that mimics the paper's script
(--workers threads over chunks of --chunk prompts, a barrier per chunk):
'stage' runs one stage at a time across the chunk, 'item' runs each prompt
start to end on a thread. All passes share one simulated server and send the
same requests. Reported: prompts per (wall and simulated) minute and the
server's slot utilization.

Flags:
`

func benchThroughput(ctx context.Context, args []string, env *environ) error {
	fs := flag.NewFlagSet("bench throughput", flag.ContinueOnError)
	var sf simFlags
	sf.register(fs, bench.DefaultTimeScale)
	var af benchAlgoFlags
	af.register(fs)
	prompts := fs.Int("prompts", 500, "prompts of each runner pass")
	mimicPrompts := fs.Int("mimic-prompts", 64, "prompts of each mimic pass")
	conc := intList{16, 64}
	fs.Var(&conc, "concurrency", "runner concurrency levels, comma-separated (one pass each)")
	schedules := fs.String("schedules", "stage,item", "mimic schedules, comma-separated: stage, item (empty: no mimic pass)")
	workers := fs.Int("workers", bench.DefaultMimicWorkers, "mimic worker threads")
	chunk := fs.Int("chunk", bench.DefaultMimicChunkSize, "mimic chunk size in prompts")
	policyInFlight := fs.Int("policy-max-inflight", bench.DefaultPolicyInFlight, "most policy requests in flight")
	rewardInFlight := fs.Int("reward-max-inflight", bench.DefaultRewardInFlight, "most reward requests in flight")
	verbose := fs.Bool("v", false, "log each pass as it starts")
	fs.Usage = func() { fmt.Fprint(fs.Output(), throughputUsage); fs.PrintDefaults() }
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("bench throughput takes no arguments")
	}
	if err := sf.check(); err != nil {
		return err
	}
	cfg, err := af.config()
	if err != nil {
		return err
	}
	if *prompts < 1 || *mimicPrompts < 1 || *workers < 1 || *chunk < 1 || *policyInFlight < 1 || *rewardInFlight < 1 {
		return usagef("--prompts, --mimic-prompts, --workers, --chunk and the in-flight limits must be at least 1")
	}
	scheds := []bench.Schedule{}
	for _, s := range strings.Split(*schedules, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		sc, err := bench.ParseSchedule(s)
		if err != nil {
			return usagef("--schedules: %v", err)
		}
		scheds = append(scheds, sc)
	}
	opts := bench.ThroughputOptions{
		Prompts: *prompts, MimicPrompts: *mimicPrompts, Concurrency: conc,
		Schedules: scheds, Workers: *workers, ChunkSize: *chunk, Config: &cfg, Sim: sf.options(),
		Clients: bench.ClientOptions{PolicyInFlight: *policyInFlight, RewardInFlight: *rewardInFlight},
		Logger:  env.log,
	}
	if *verbose {
		env.logAt(slog.LevelInfo)
	}
	rep, err := bench.Throughput(ctx, opts)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.stderr, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scheduler\tconc\tprompts\tfailed\twall s\tprompts/min\tprompts/sim-min\tutil\tsteady util\tmean active\tmax queue\tspeedup\t\n")
	for _, p := range rep.Passes {
		c := p.Concurrency
		if c == 0 {
			c = p.Workers
		}
		speedup := "-"
		if p.Speedup > 0 {
			speedup = fmt.Sprintf("%.2fx", p.Speedup)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f%%\t%.1f%%\t%.1f\t%d\t%s\t\n", p.Scheduler, c, p.Prompts, p.Failed,
			p.WallSeconds, p.PromptsPerMinute, p.PromptsPerSimMinute, 100*p.Utilization, 100*p.SteadyUtilization, p.MeanActive, p.MaxQueue, speedup)
	}
	tw.Flush()
	fmt.Fprintf(env.stderr, "%s D%d-N%d, %d slots, %d mean tokens, time scale %g; speedup: prompts per simulated minute over the first mimic pass (goal 3x); steady util: between 10%% and 90%% of the prompts done (goal 90%%)\n",
		rep.Mode, rep.Depth, rep.Width, rep.Slots, rep.MeanTok, rep.TimeScale)
	return printJSONLine(env.stdout, rep)
}

const serveBenchUsage = `usage: tpo bench serve [flags]

Runs the server of 'tpo serve' (openai and vLLM reward clients, SQLite store)
on loopback in front of a simulated server, sends it --requests chat
completion requests, --concurrency at a time, and reports the latency a client
sees, the sum of the latencies of each request's upstream calls (policy and
reward, measured by the server's clients), and the difference: the latency
tpo serve adds (p50, p90, p99). It also reports what the answers were
worth: their mean reward, the mean best initial sample, and why their
optimizations stopped. With --deadline the server answers with the best
response found by then (compare the time to answer and the score with a pass
without it).

With --stall, that share of the clients stop reading: each asks for a
streamed answer with n=16 over a connection with a 1 KiB receive buffer and
reads none of it. The report says how long the server held their requests,
how many it dropped, and what is left once the load is over: slots held,
open connections, goroutines against those before the load.

Flags:
`

func benchServe(ctx context.Context, args []string, env *environ) error {
	fs := flag.NewFlagSet("bench serve", flag.ContinueOnError)
	var sf simFlags
	sf.register(fs, bench.DefaultServeTimeScale)
	var af benchAlgoFlags
	af.register(fs)
	requests := fs.Int("requests", 200, "requests measured")
	warmup := fs.Int("warmup", 5, "requests sent first and not measured")
	conc := fs.Int("concurrency", 4, "requests in flight at once (also the server's --max-concurrent)")
	stream := fs.Bool("stream", false, "send streamed requests and read the SSE answers")
	noStore := fs.Bool("no-store", false, "run the server without a run store (to tell the store's share of the added latency)")
	stall := fs.Float64("stall", 0, "share of the clients that stop reading (0 to 1; with --stream)")
	writeTimeout := fs.Duration("write-timeout", guard.DefaultWriteTimeout, "the server's --write-timeout")
	maxConc := fs.Int("max-concurrent", 0, "the server's --max-concurrent (default --concurrency)")
	storeSpec := fs.String("store", "", "the server's run store: a SQLite `file` or a postgres://... URL (default: a SQLite file in a temporary directory)")
	deadline := fs.Duration("deadline", 0, "the server's --deadline, in wall time: the best answer found by then is returned (0: none)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), serveBenchUsage); fs.PrintDefaults() }
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("bench serve takes no arguments")
	}
	if err := sf.check(); err != nil {
		return err
	}
	cfg, err := af.config()
	if err != nil {
		return err
	}
	cfg.Seed = nil // a served request carries no seed
	if *requests < 1 || *conc < 1 || *warmup < 0 {
		return usagef("--requests and --concurrency must be at least 1, --warmup at least 0")
	}
	switch {
	case !(*stall >= 0 && *stall < 1):
		return usagef("--stall must be at least 0 and below 1, got %g", *stall)
	case *stall > 0 && !*stream:
		return usagef("--stall needs --stream (the clients that stop reading stream)")
	case *writeTimeout <= 0 || *maxConc < 0 || *deadline < 0:
		return usagef("--write-timeout must be positive, --max-concurrent and --deadline at least 0")
	}
	w := *warmup
	if w == 0 {
		w = -1 // bench: negative means none
	}
	opts := bench.ServeOptions{Requests: *requests, Concurrency: *conc, Warmup: w,
		Stream: *stream, NoStore: *noStore, Config: &cfg, Sim: sf.options(), Logger: env.log,
		Stall: *stall, WriteTimeout: *writeTimeout, MaxConcurrent: *maxConc, Deadline: *deadline}
	if *storeSpec != "" && !*noStore {
		store, err := openStore(ctx, *storeSpec)
		if err != nil {
			return err
		}
		defer store.Close()
		opts.Store, opts.StoreKind = store, "sqlite"
		if isStoreURL(*storeSpec) {
			opts.StoreKind = "postgres"
		}
	}
	rep, err := bench.Serve(ctx, opts)
	if err != nil {
		return err
	}
	printServeReport(env.stderr, rep)
	return printJSONLine(env.stdout, rep)
}

// printServeReport writes the table and the lines of a serve benchmark.
func printServeReport(w io.Writer, rep bench.ServeReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "ms\tp50\tp90\tp99\tmean\tmax\t\n")
	for _, r := range []struct {
		name string
		l    bench.Latency
	}{{"end to end", rep.EndToEnd}, {"upstream calls", rep.Upstream}, {"added by tpo serve", rep.Added}} {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", r.name, r.l.P50, r.l.P90, r.l.P99, r.l.Mean, r.l.Max)
	}
	tw.Flush()
	storeKind := rep.StoreKind
	if storeKind == "" {
		storeKind = "none"
	}
	fmt.Fprintf(w, "%d requests (%d failed), %d at a time, %s D%d-N%d, stream %v, store %s, %.1f upstream calls per request, time scale %g\n",
		rep.Requests, rep.Failed, rep.Concurrency, rep.Mode, rep.Depth, rep.Width, rep.Stream, storeKind, rep.UpstreamCalls, rep.TimeScale)
	a := rep.Answers
	deadline := "no deadline"
	if rep.DeadlineMS > 0 {
		deadline = fmt.Sprintf("deadline %g ms", rep.DeadlineMS)
	}
	fmt.Fprintf(w, "answers (%s): mean score %.3f (best initial sample %.3f, gain %+.3f), %.2f steps; stopped: %s\n",
		deadline, a.Score, a.InitialBest, a.Score-a.InitialBest, a.Steps, stopCounts(a.Stopped))
	if s := rep.Stall; s != nil {
		fmt.Fprintf(w, "%d clients stopped reading (the latencies above are the others'); the server held their requests %.0f ms at the median, %.0f ms at most (write timeout %gs), and dropped %d of them\n",
			s.Clients, s.Held.P50, s.Held.Max, s.WriteTimeout, s.Dropped)
		fmt.Fprintf(w, "at the end: %d requests of those clients still handled, %d slots held, %d connections open, %d goroutines (%d before the load, %d at the peak)\n",
			s.StillHandled, s.SlotsHeld, s.OpenConns, s.GoroutinesEnd, s.GoroutinesStart, s.GoroutinesPeak)
	}
}

// stopCounts lists counts by stop reason, most first: "depth 180, deadline 20".
func stopCounts(m map[tpo.StopReason]int) string {
	reasons := slices.Collect(maps.Keys(m))
	slices.SortFunc(reasons, func(a, b tpo.StopReason) int { return cmp.Or(m[b]-m[a], strings.Compare(string(a), string(b))) })
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s %d", r, m[r])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

const tokensUsage = `usage: tpo bench tokens [flags]

Optimizes --prompts prompts with the runner of 'tpo run' in each mode and at
each (N, D), and reports per prompt the policy requests and generations (as
the simulated server counted them), the scored candidates and reward calls,
and the prompt, completion and reward tokens, against what the algorithm
requires: 1+3D requests, N+D(N+2) generations, N(D+1) scored candidates
(bon: 1, N, N). "cached" is the share of prompt tokens the simulated server's
prefix cache served (each configuration starts with an empty cache).

With --rules, each configuration runs the same prompts once per set of
stopping rules and one table compares them side by side: policy requests
and tokens per prompt, the tokens saved against "none", the mean final
score and its mean gain over the best initial sample, the items stopped
early, and with a budget the most tokens an item used. For example

    tpo bench tokens --modes tpo --widths 5 --depths 2 --plateau 1 \
        --rules none,patience=1,target=1.5,budget=12000

An entry is none, or patience=K, target=X and budget=T (an item's
--max-item-tokens), alone or joined by "+" (patience=1+budget=12000).

Flags:
`

func benchTokens(ctx context.Context, args []string, env *environ) error {
	fs := flag.NewFlagSet("bench tokens", flag.ContinueOnError)
	var sf simFlags
	sf.register(fs, bench.DefaultServeTimeScale)
	prompts := fs.Int("prompts", 20, "prompts per configuration")
	modes := fs.String("modes", "tpo,revision,bon", "modes, comma-separated")
	widths := intList{2, 5}
	fs.Var(&widths, "widths", "widths N, comma-separated")
	depths := intList{1, 2, 4}
	fs.Var(&depths, "depths", "depths D, comma-separated")
	maxTokens := fs.Int("max-tokens", tpo.DefaultConfig().Sampling.MaxTokens, "most new tokens of a response (and of a critique)")
	patience := fs.Int("patience", 0, "stop an item after this many rounds without a better best score (0: off)")
	var target optFloat
	fs.Var(&target, "target-score", "stop an item once its best score reaches this `score` (default: off)")
	budget := fs.Int("max-item-tokens", 0, "an item's budget of policy `tokens` (0: none)")
	rulesSpec := fs.String("rules", "", "sets of stopping rules to compare side by side, comma-separated: none, patience=K, target=X, budget=T, or several joined by + (instead of --patience, --target-score and --max-item-tokens)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), tokensUsage); fs.PrintDefaults() }
	// Every update should be a candidate unless asked otherwise.
	if f := fs.Lookup("unparsed-rate"); f != nil {
		f.DefValue = "0"
		_ = f.Value.Set("0")
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("bench tokens takes no arguments")
	}
	if err := sf.check(); err != nil {
		return err
	}
	if *prompts < 1 || *maxTokens < 1 {
		return usagef("--prompts and --max-tokens must be at least 1")
	}
	var ms []tpo.Mode
	for _, m := range strings.Split(*modes, ",") {
		mode, err := tpo.ParseMode(strings.TrimSpace(m))
		if err != nil {
			return usagef("--modes: %v", err)
		}
		ms = append(ms, mode)
	}
	base := tpo.DefaultConfig()
	base.Sampling.MaxTokens, base.Critique.MaxTokens = *maxTokens, *maxTokens
	base.Patience, base.MaxItemTokens = *patience, *budget
	if target.set {
		v := target.v
		base.TargetScore = &v
	}
	if err := base.Validate(); err != nil {
		return usageError{err}
	}
	seed := int64(1)
	base.Seed = &seed
	var rules []bench.Rules
	if *rulesSpec != "" {
		if flagsSet(fs, "patience", "target-score", "max-item-tokens") {
			return usagef("--rules replaces --patience, --target-score and --max-item-tokens: give the rules one way")
		}
		if rules, err = bench.ParseRules(*rulesSpec); err != nil {
			return usagef("--rules: %v", err)
		}
	}
	rep, err := bench.Tokens(ctx, bench.TokensOptions{Prompts: *prompts, Modes: ms, Widths: widths, Depths: depths,
		Base: &base, Rules: rules, Sim: sf.options(), Logger: env.log})
	if err != nil {
		return err
	}
	if rules != nil {
		printRulesTable(env.stderr, rep)
	} else {
		printTokensTable(env.stderr, rep)
	}
	return printJSONLine(env.stdout, rep)
}

// flagsSet reports whether any of the flags named was given.
func flagsSet(fs *flag.FlagSet, names ...string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || slices.Contains(names, f.Name) })
	return found
}

// printTokensTable writes what each configuration cost against what the
// algorithm requires.
func printTokensTable(w io.Writer, rep bench.TokensReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "mode\tN\tD\trequests\tgenerations\tscored\tscore calls\tprompt tok\tcached\tcompletion tok\treward tok\tscore\tstopped\tmatch\t\n")
	for _, r := range rep.Rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f/%g\t%.2f/%g\t%.2f/%g\t%.2f/%g\t%.0f\t%.0f%%\t%.0f\t%.0f\t%.3f\t%s\t%v\t\n", r.Mode, r.Width, r.Depth,
			r.Measured.Requests, r.Required.Requests, r.Measured.Generations, r.Required.Generations,
			r.Measured.Scored, r.Required.Scored, r.Measured.ScoreCalls, r.Required.ScoreCalls,
			r.PromptTokens, 100*r.PrefixHitRate, r.CompletionTokens, r.RewardTokens, r.MeanScore, stopsText(r.Stops), r.Match)
	}
	tw.Flush()
	fmt.Fprintf(w, "per prompt, measured/required, over %d prompts; %d mean tokens per response; all match: %v\n",
		rep.Prompts, rep.MeanTokens, rep.AllMatch)
}

// printRulesTable writes the rows of each configuration side by side, one
// per set of stopping rules.
func printRulesTable(w io.Writer, rep bench.TokensReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "mode\tN\tD\trule\trequests\tprompt tok\tcompletion tok\tsaved\tscore\tgain\tstopped early\tmax item tok\tover budget\tcached\t\n")
	for _, r := range rep.Rows {
		saved := "-"
		if r.TokensSaved != nil {
			saved = fmt.Sprintf("%.0f%%", 100**r.TokensSaved)
		}
		maxItem, over := strconv.Itoa(r.MaxItemTokens), "-"
		if b := r.Rules.MaxItemTokens; b > 0 {
			maxItem += fmt.Sprintf(" (%+d)", r.MaxItemTokens-b)
			over = strconv.Itoa(r.OverBudgetItems)
			if r.OverBudgetItems > 0 {
				over += fmt.Sprintf(" (<= %.0f%% of a round)", 100*r.OverLastRound)
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.2f\t%.0f\t%.0f\t%s\t%.3f\t%+.3f\t%d of %d\t%s\t%s\t%.0f%%\t\n", r.Mode, r.Width, r.Depth, r.Rule,
			r.Measured.Requests, r.PromptTokens, r.CompletionTokens, saved, r.MeanScore, r.MeanGain,
			r.StoppedEarly, rep.Prompts, maxItem, over, 100*r.PrefixHitRate)
	}
	tw.Flush()
	fmt.Fprintf(w, "per prompt, over %d prompts; %d mean tokens per response; saved: policy tokens against none; gain: final score over the best initial sample; max item tok: the dearest item's policy tokens (against the budget); over budget: the items that went over, by at most that share of their last round\n",
		rep.Prompts, rep.MeanTokens)
}

// stopsText lists how many items stopped for each reason.
func stopsText(stops map[tpo.StopReason]int) string {
	var parts []string
	for _, why := range tpo.StopReasons {
		if n := stops[why]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", why, n))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
