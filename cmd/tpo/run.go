package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/dataset"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/internal/atomicfile"
	"github.com/tpoproject/tpo/queue"
	"github.com/tpoproject/tpo/results"
)

const runUsage = `usage: tpo run [flags] [PROMPT]

Optimizes the answer to PROMPT (or to the prompt read from stdin), or to every
item of --data, with Test-Time Preference Optimization.

Flags:
`

// runFlags are the flags of tpo run.
type runFlags struct {
	backendFlags
	sim                                     simBackend
	data, promptField, idField, system, out string
	progress                                string
	concurrency, limit                      int
	verbose, force                          bool
	lease                                   time.Duration
}

func (f *runFlags) register(fs *flag.FlagSet) {
	f.backendFlags.register(fs)
	f.sim.register(fs)
	fs.StringVar(&f.data, "data", "", "dataset `file`: .jsonl (objects with \"prompt\" or \"messages\") or a .json array; - for stdin; or a set's name (tpo data list)")
	fs.StringVar(&f.promptField, "prompt-field", "", "the dataset field holding the prompt (default: prompt, instruction, question, turns)")
	fs.StringVar(&f.idField, "id-field", "", "the dataset field holding the item id (default: id, question_id, uid; else the line number)")
	fs.StringVar(&f.system, "system", "", "a system prompt put before every conversation that has none")
	fs.StringVar(&f.out, "out", "", "results `file`, one JSON object per line in input order (written from the store); - for stdout")
	fs.IntVar(&f.concurrency, "concurrency", 64, "items optimized at once (64 keeps a 64-slot server busy at D2-N5; see BENCHMARKS.md)")
	fs.IntVar(&f.limit, "limit", 0, "optimize only the first `N` items of --data (0: all); a later run with a larger limit resumes the same run")
	fs.BoolVar(&f.verbose, "v", false, "print the trajectory (scores per step, critiques, instructions) to stderr")
	fs.StringVar(&f.progress, "progress", "auto", "progress on stderr: auto (when a terminal), on or off")
	fs.BoolVar(&f.force, "force", false, "with --data: take the run over from the process that claims it, when that process is gone (killed, its machine lost); the claim of a process of this machine that no longer runs is taken over without it")
	fs.DurationVar(&f.lease, "lease", queue.DefaultLease, "with --store postgres://... and --data FILE, where processes share the run's items: how long a step may run before another process takes over its item (a step is stopped and retried after 90% of it)")
}

// check settles the usage errors of the flags and the arguments.
func (f *runFlags) check(fs *flag.FlagSet, pos []string) error {
	switch {
	case f.concurrency < 1:
		return usagef("--concurrency must be at least 1")
	case f.data != "" && len(pos) > 0:
		return usagef("give either --data or a PROMPT, not both")
	case len(pos) > 1:
		return usagef("one PROMPT at most (quote it), got %d arguments", len(pos))
	case f.limit < 0:
		return usagef("--limit must not be negative")
	case f.limit > 0 && f.data == "":
		return usagef("--limit needs --data")
	case f.force && f.data == "":
		return usagef("--force needs --data: it takes over a dataset run that another process claims")
	case f.force && isStoreURL(f.store) && f.data != "-":
		return usagef("--force is for a run that one process works on alone; the processes running --data FILE on a PostgreSQL store share the run's items and claim none")
	}
	if err := checkOut(f.out); err != nil {
		return err
	}
	return checkLease(fs, f.lease, f.store, f.data)
}

func cmdRun(ctx context.Context, args []string, env *environ) error {
	var f runFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	f.register(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), runUsage); fs.PrintDefaults() }
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := f.check(fs, pos); err != nil {
		return err
	}
	// Retries are counted, and said once at the end.
	retries := &retryCounts{}
	ctx = httpx.WithRetryObserver(ctx, retries)
	log := env.log
	if f.verbose {
		log = env.logAt(slog.LevelInfo)
	}
	// Read the single prompt, or open the data, before connecting to
	// anything.
	var single *tpo.Item
	if f.data == "" {
		if single, err = f.prompt(env, pos); err != nil {
			return err
		}
	}
	if f.data, err = resolveData(ctx, env, "data", f.data); err != nil {
		return err
	}
	var src *dataset.Source
	if f.data != "" {
		r, err := dataset.Open(f.data, dataset.Options{PromptField: f.promptField, IDField: f.idField})
		if err != nil {
			return usageError{err}
		}
		defer r.Close()
		src = dataset.NewSource(r, dataset.SourceOptions{System: f.system, Limit: f.limit, Logger: log})
	}

	stopSim, err := f.sim.start(ctx, env, &f.backendFlags)
	if err != nil {
		return err
	}
	defer stopSim()
	f.tracer = env.tracer
	bk, err := f.build(ctx, log)
	if err != nil {
		return err
	}
	store, err := openStore(ctx, f.store)
	if err != nil {
		return err
	}
	defer store.Close()

	opt := &tpo.Optimizer{Policy: bk.policy, Reward: bk.reward, Config: bk.config, Templates: bk.templates, Logger: log,
		Tracer: env.tracer}
	cfgJSON := toJSON(map[string]any{"settings": bk.identity, "backends": map[string]any{
		"policy_urls": f.policyURLs.vals, "reward_urls": f.rewardURLs.vals,
	}})
	if single != nil {
		return runOne(ctx, env, store, opt, *single, cfgJSON, f.verbose, f.out, retries)
	}
	d := dataRun{db: store, data: f.data, out: f.out, store: f.store, limit: f.limit, progress: f.progress, retries: retries}
	return d.run(ctx, env, newItemRunner(store, opt, f.data, f.concurrency, f.lease, f.force, log), f.storeRun(bk, cfgJSON), src)
}

// prompt reads the single prompt: the argument, or standard input.
func (f *runFlags) prompt(env *environ, pos []string) (*tpo.Item, error) {
	text := ""
	if len(pos) == 1 {
		text = pos[0]
	} else {
		if env.stdinIsTerminal() {
			return nil, usagef("give a PROMPT, --data FILE, or a prompt on stdin")
		}
		bs, err := io.ReadAll(env.stdin)
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		text = strings.TrimSpace(string(bs))
	}
	if text == "" {
		return nil, usagef("the prompt is empty")
	}
	return &tpo.Item{ID: "1", Messages: dataset.WithSystem(f.system, []tpo.Message{{Role: tpo.RoleUser, Content: text}})}, nil
}

// storeRun is the run of --data in the store: resumed when the same
// command runs again on the same file.
func (f *runFlags) storeRun(bk *backends, cfgJSON json.RawMessage) tpo.Run {
	abs, _ := filepath.Abs(f.data)
	if f.data == "-" {
		abs = "stdin"
	}
	run := tpo.Run{Kind: "run", Source: abs, Config: cfgJSON,
		Key: runKey(bk.identity, abs, f.promptField, f.idField, f.system)}
	if f.data == "-" {
		run.Key = "" // stdin cannot be read twice the same way: never resume
	}
	return run
}

// dataRun is what tpo run needs to know to optimize a dataset and report
// on it.
type dataRun struct {
	db               runStore // the store the Runner writes
	data, out, store string   // store: the --store value, never printed as it is
	limit            int      // the first items only; 0: all
	progress         string
	retries          *retryCounts
}

// run optimizes every item of src (as run, which resumes when the store
// has it), writes --out, and says how it went: the counts, why items
// failed, the retries, and where the results are.
func (d dataRun) run(ctx context.Context, env *environ, newRunner func(*progress) itemRunner, run tpo.Run, src tpo.Source) error {
	total := d.total()
	prog := newProgress(env, d.progress, total, d.data)
	run, sum, runErr := newRunner(prog).Run(ctx, run, src)
	prog.finish()
	if isClaimed(runErr) {
		return runErr // another process works on the run: nothing to say of it here
	}
	db := d.db
	wctx := context.WithoutCancel(ctx) // write what was done, even when interrupted

	if d.out != "" {
		if err := writeOut(wctx, db, run.ID, d.out, d.limit, env.stdout); err != nil {
			return errors.Join(runErr, err)
		}
	}
	if runErr != nil && ctx.Err() != nil {
		return d.interrupted(wctx, db, run.ID, total)
	}
	unfinished := ""
	if n := sum.Items - sum.Done - sum.Failed - sum.Skipped; n > 0 {
		unfinished = fmt.Sprintf(", %d unfinished", n)
	}
	others := ""
	if sum.Elsewhere > 0 {
		others = fmt.Sprintf("; %d of them by other processes", sum.Elsewhere)
	}
	name := storeName(d.store)
	fmt.Fprintf(env.stderr, "run %s: %s: %d done, %d failed, %d already done%s%s (store %s)\n",
		run.ID, plural(sum.Items, "item", "items"), sum.Done, sum.Failed, sum.Skipped, unfinished, others, name)
	if s := d.retries.summary(); s != "" {
		fmt.Fprintln(env.stderr, s)
	}
	if d.out == "" && runErr == nil && sum.Done+sum.Skipped > 0 {
		fmt.Fprintf(env.stderr, "the results are in the store %s, run %s; write them to a file with\n  tpo export --store %s --format jsonl --out results.jsonl %s\n",
			name, run.ID, shellQuote(name), run.ID)
		if name != d.store {
			fmt.Fprintln(env.stderr, "  (with the password in place of xxxxx)")
		}
	}
	if runErr != nil {
		return runErr
	}
	if sum.Failed > 0 {
		hint := "; run the same command again to retry them"
		if sum.Failed == 1 {
			hint = "; run the same command again to retry it"
		}
		if d.data == "-" {
			hint = ""
		}
		return errors.New(prog.failures(fmt.Sprintf("%d of %s failed", sum.Failed, plural(sum.Items, "item", "items")), hint))
	}
	return nil
}

// total is the number of items the run covers, or -1 when it cannot be
// known (stdin).
func (d dataRun) total() int {
	if d.data == "-" {
		return -1
	}
	n, err := dataset.Count(d.data)
	if err != nil {
		return -1
	}
	if d.limit > 0 {
		n = min(n, d.limit)
	}
	return n
}

// interrupted is the one line a run stopped by a signal ends with: how
// many of the run's items are done, counting those of earlier runs.
func (d dataRun) interrupted(ctx context.Context, db runStore, runID string, total int) error {
	done, failed, err := finishedItems(ctx, db, runID, d.limit)
	if err != nil {
		return interruptedError{"interrupted; run the same command again to resume"}
	}
	counts := fmt.Sprintf("%s done", plural(done, "item", "items"))
	if total >= 0 {
		counts = fmt.Sprintf("%d of %s done", done, plural(total, "item", "items"))
	}
	if failed > 0 {
		counts += fmt.Sprintf(", %d failed", failed)
	}
	if d.data == "-" {
		return interruptedError{fmt.Sprintf("interrupted: %s; a run reading stdin cannot be resumed", counts)}
	}
	return interruptedError{fmt.Sprintf("interrupted: %s; run the same command again to resume", counts)}
}

// finishedItems counts the items of a run that are done and those that
// failed, among its first limit items (0: all).
func finishedItems(ctx context.Context, db runStore, runID string, limit int) (done, failed int, err error) {
	items, _, err := db.ListItems(ctx, runID, tpo.ItemFilter{})
	if err != nil {
		return 0, 0, err
	}
	for _, it := range items {
		if limit > 0 && it.Seq >= limit {
			continue
		}
		switch it.Status {
		case tpo.StatusDone:
			done++
		case tpo.StatusFailed:
			failed++
		}
	}
	return done, failed, nil
}

// checkOut fails early for an --out file that could not be written, before
// anything is computed.
func checkOut(out string) error {
	if out == "" || out == "-" {
		return nil
	}
	dir := filepath.Dir(out)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usagef("--out %s: the directory %s does not exist", out, dir)
	}
	return nil
}

// runOne optimizes a single prompt and prints the best response (or, with
// --out -, its result line alone).
func runOne(ctx context.Context, env *environ, store runStore, opt *tpo.Optimizer, it tpo.Item, cfg []byte, verbose bool, out string, retries *retryCounts) error {
	rn := &tpo.Runner{Optimizer: opt, Store: store, Concurrency: 1, Logger: opt.Logger}
	if verbose {
		rn.OnEvent = func(e tpo.Event) { printEvent(env.stderr, e) }
	}
	var res *tpo.Result
	rn.OnItem = func(st tpo.ItemState, _ bool) { res = st.Result }
	run, _, err := rn.Run(ctx, tpo.Run{Kind: "run", Source: "argument", Config: cfg}, &sliceSource{items: []tpo.Item{it}})
	if err != nil && ctx.Err() != nil {
		return interruptedError{"interrupted before the answer was finished"}
	}
	if err != nil {
		return err
	}
	if out != "" {
		if err := writeOut(ctx, store, run.ID, out, 0, env.stdout); err != nil {
			return err
		}
	}
	if s := retries.summary(); s != "" {
		fmt.Fprintln(env.stderr, s)
	}
	if res == nil {
		return errors.New("no result")
	}
	if res.Error != "" {
		return errors.New(res.Error)
	}
	if out != "-" {
		fmt.Fprintln(env.stdout, res.Response)
	}
	if verbose {
		fmt.Fprintf(env.stderr, "best score %.4g (best initial sample %.4g, gain %+.4g); %s, %s; %s; run %s\n",
			res.Score, res.InitialBest, res.Gain(), plural(res.Usage.Requests, "policy request", "policy requests"),
			tokensText(*res), stopText(res.StopReason), run.ID)
	}
	return nil
}

// tokensText says how many tokens an optimization used, for people: the
// policy's, and a judge's (the reward calls that report tokens) apart.
func tokensText(res tpo.Result) string {
	policy := res.Usage.TotalTokens()
	if n := res.ScoreUsage.TotalTokens(); n > 0 {
		return fmt.Sprintf("%s and %s", plural(policy, "policy token", "policy tokens"), plural(n, "judge token", "judge tokens"))
	}
	return plural(policy, "token", "tokens")
}

// stopText says why an optimization stopped, for people.
func stopText(why tpo.StopReason) string {
	switch why {
	case tpo.StopPatience:
		return "stopped early: the best score stopped improving (--patience)"
	case tpo.StopTarget:
		return "stopped early: the best score reached --target-score"
	case tpo.StopBudget:
		return "stopped early: another round would exceed --max-item-tokens"
	case tpo.StopDeadline:
		return "stopped at the deadline"
	}
	return "every round ran"
}

func printEvent(w io.Writer, e tpo.Event) {
	switch e := e.(type) {
	case tpo.CandidatesScored:
		var ss []string
		for _, c := range e.Candidates {
			ss = append(ss, fmt.Sprintf("%.4g", c.Score))
		}
		fmt.Fprintf(w, "step %d: scores [%s], best so far %.4g\n", e.Step, strings.Join(ss, " "), e.Best)
	case tpo.Critique:
		against := ""
		if e.Rejected != nil {
			against = " against " + e.Rejected.String()
		}
		fmt.Fprintf(w, "step %d: critique of %s%s:\n%s\n", e.Step, e.Chosen, against, indent(e.Text))
	case tpo.Instructions:
		fmt.Fprintf(w, "step %d: instructions:\n%s\n", e.Step, indent(e.Text))
	case tpo.UpdateParsed:
		if e.Unparsed > 0 {
			fmt.Fprintf(w, "step %d: %s no <improved_response> block\n", e.Step, plural(e.Unparsed, "update sample had", "update samples had"))
		}
	case tpo.StepFinished:
		for _, n := range e.Data.Notes {
			fmt.Fprintf(w, "step %d: note: %s\n", e.Step, n)
		}
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n    ")
}

// writeOut writes the run's finished items among its first limit (0: all)
// to path, in input order: to stdout when path is "-", else through a
// temporary file so that a failure leaves no half-written file.
func writeOut(ctx context.Context, store runStore, runID, path string, limit int, stdout io.Writer) error {
	if path == "-" {
		if err := writeRunResults(ctx, store, runID, limit, stdout); err != nil {
			return fmt.Errorf("--out -: %w", err)
		}
		return nil
	}
	err := atomicfile.Write(path, func(w io.Writer) error {
		return writeRunResults(ctx, store, runID, limit, w)
	})
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

// writeRunResults writes the results lines of a run's finished items among
// its first limit (0: all) to w.
func writeRunResults(ctx context.Context, store runStore, runID string, limit int, w io.Writer) error {
	rw := results.NewWriter(w)
	err := store.Results(ctx, runID, func(st tpo.ItemState) error {
		if !st.Done || st.Result == nil || (limit > 0 && st.Seq >= limit) {
			return nil
		}
		return rw.Write(results.FromResult(*st.Result))
	})
	if err != nil {
		return err
	}
	return rw.Flush()
}

type sliceSource struct {
	items []tpo.Item
	i     int
}

func (s *sliceSource) Next() (tpo.Input, error) {
	if s.i >= len(s.items) {
		return tpo.Input{}, io.EOF
	}
	s.i++
	return tpo.Input{Item: s.items[s.i-1]}, nil
}

func isUnreachable(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) || errors.As(err, &dns)
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
