package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/dataset"
	"github.com/tpoproject/tpo/results"
	"github.com/tpoproject/tpo/sqlite"
)

const runUsage = `usage: tpo run [flags] [PROMPT]

Optimizes the answer to PROMPT (or to the prompt read from stdin), or to every
item of --data, with Test-Time Preference Optimization.

Flags:
`

func cmdRun(ctx context.Context, args []string, env *environ) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var b backendFlags
	b.register(fs)
	var sb simBackend
	sb.register(fs)
	data := fs.String("data", "", "dataset `file`: .jsonl (objects with \"prompt\" or \"messages\") or a .json array; - for stdin")
	promptField := fs.String("prompt-field", "", "the dataset field holding the prompt (default: prompt, instruction, question, turns)")
	idField := fs.String("id-field", "", "the dataset field holding the item id (default: id, question_id, uid; else the line number)")
	system := fs.String("system", "", "a system prompt put before every conversation that has none")
	out := fs.String("out", "", "results `file`, one JSON object per line in input order (written from the store)")
	concurrency := fs.Int("concurrency", 64, "items optimized at once (64 keeps a 64-slot server busy at D2-N5; see BENCHMARKS.md)")
	verbose := fs.Bool("v", false, "print the trajectory (scores per step, critiques, instructions) to stderr")
	progress := fs.String("progress", "auto", "progress on stderr: auto (when a terminal), on or off")
	fs.Usage = func() { fmt.Fprint(fs.Output(), runUsage); fs.PrintDefaults() }
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if *concurrency < 1 {
		return usagef("--concurrency must be at least 1")
	}
	if *data != "" && len(pos) > 0 {
		return usagef("give either --data or a PROMPT, not both")
	}
	if len(pos) > 1 {
		return usagef("one PROMPT at most (quote it), got %d arguments", len(pos))
	}
	log := env.log
	if *verbose {
		log = env.logAt(slog.LevelInfo)
	}

	// Read the single prompt before connecting to anything.
	var single *tpo.Item
	if *data == "" {
		text := ""
		if len(pos) == 1 {
			text = pos[0]
		} else {
			if env.stdinIsTerminal() {
				return usagef("give a PROMPT, --data FILE, or a prompt on stdin")
			}
			bs, err := io.ReadAll(env.stdin)
			if err != nil {
				return fmt.Errorf("reading stdin: %w", err)
			}
			text = strings.TrimSpace(string(bs))
		}
		if text == "" {
			return usagef("the prompt is empty")
		}
		it := tpo.Item{ID: "1", Messages: withSystem(*system, []tpo.Message{{Role: tpo.RoleUser, Content: text}})}
		single = &it
	}

	var src *dataSource
	if *data != "" {
		r, err := dataset.Open(*data, dataset.Options{PromptField: *promptField, IDField: *idField})
		if err != nil {
			return usageError{err}
		}
		defer r.Close()
		src = &dataSource{r: r, system: *system, log: log, seen: map[string]bool{}}
	}

	stopSim, err := sb.start(ctx, env, &b)
	if err != nil {
		return err
	}
	defer stopSim()
	bk, err := b.build(ctx, log)
	if err != nil {
		return err
	}
	store, err := sqlite.Open(ctx, b.store)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer store.Close()

	opt := &tpo.Optimizer{Policy: bk.policy, Reward: bk.reward, Config: bk.config, Templates: bk.templates, Logger: log}
	cfgJSON := toJSON(map[string]any{"settings": bk.identity, "backends": map[string]any{
		"policy_urls": b.policyURLs.vals, "reward_urls": b.rewardURLs.vals,
	}})

	if single != nil {
		return runOne(ctx, env, store, opt, *single, cfgJSON, *verbose, *out)
	}

	abs, _ := filepath.Abs(*data)
	if *data == "-" {
		abs = "stdin"
	}
	run := tpo.Run{Kind: "run", Source: abs, Config: cfgJSON,
		Key: runKey(bk.identity, abs, *promptField, *idField, *system)}
	if *data == "-" {
		run.Key = "" // stdin cannot be read twice the same way: never resume
	}

	total := -1
	if *data != "-" {
		if n, err := dataset.Count(*data); err == nil {
			total = n
		}
	}
	prog := newProgress(env, *progress, total)
	rn := &tpo.Runner{Optimizer: opt, Store: store, Concurrency: *concurrency, Logger: log,
		OnItem: prog.item}
	run, sum, runErr := rn.Run(ctx, run, src)
	prog.finish()

	if *out != "" {
		if err := writeOut(context.WithoutCancel(ctx), store, run.ID, *out); err != nil {
			return errors.Join(runErr, err)
		}
	}
	unfinished := ""
	if n := sum.Items - sum.Done - sum.Failed - sum.Skipped; n > 0 {
		unfinished = fmt.Sprintf(", %d unfinished", n)
	}
	fmt.Fprintf(env.stderr, "run %s: %d items: %d done, %d failed, %d already done%s (store %s)\n",
		run.ID, sum.Items, sum.Done, sum.Failed, sum.Skipped, unfinished, b.store)
	if runErr != nil {
		if errors.Is(runErr, context.Canceled) {
			return fmt.Errorf("interrupted; run the same command again to resume: %w", runErr)
		}
		return runErr
	}
	if sum.Failed > 0 {
		return fmt.Errorf("%d of %d items failed (see the error field in the results; run again to retry them)", sum.Failed, sum.Items)
	}
	return nil
}

// runOne optimizes a single prompt and prints the best response.
func runOne(ctx context.Context, env *environ, store *sqlite.DB, opt *tpo.Optimizer, it tpo.Item, cfg []byte, verbose bool, out string) error {
	rn := &tpo.Runner{Optimizer: opt, Store: store, Concurrency: 1, Logger: opt.Logger}
	if verbose {
		rn.OnEvent = func(e tpo.Event) { printEvent(env.stderr, e) }
	}
	var res *tpo.Result
	rn.OnItem = func(st tpo.ItemState, _ bool) { res = st.Result }
	run, _, err := rn.Run(ctx, tpo.Run{Kind: "run", Source: "argument", Config: cfg}, &sliceSource{items: []tpo.Item{it}})
	if err != nil {
		return err
	}
	if out != "" {
		if err := writeOut(ctx, store, run.ID, out); err != nil {
			return err
		}
	}
	if res == nil {
		return errors.New("no result")
	}
	if res.Error != "" {
		return errors.New(res.Error)
	}
	fmt.Fprintln(env.stdout, res.Response)
	if verbose {
		fmt.Fprintf(env.stderr, "best score %.4g (best initial sample %.4g, gain %+.4g); %d policy requests, %d tokens; run %s\n",
			res.Score, res.InitialBest, res.Gain(), res.Usage.Requests, res.Usage.TotalTokens(), run.ID)
	}
	return nil
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
			fmt.Fprintf(w, "step %d: %d update samples had no <improved_response> block\n", e.Step, e.Unparsed)
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

// writeOut writes the run's finished items to path, in input order,
// through a temporary file so that a failure leaves no half-written file.
func writeOut(ctx context.Context, store *sqlite.DB, runID, path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tpo-out-*")
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := results.NewWriter(tmp)
	err = store.Results(ctx, runID, func(st tpo.ItemState) error {
		if !st.Done || st.Result == nil {
			return nil
		}
		return w.Write(results.FromResult(*st.Result))
	})
	if err == nil {
		err = w.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644) // CreateTemp makes it private
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("--out %s: %w", path, err)
	}
	return nil
}

func withSystem(system string, msgs []tpo.Message) []tpo.Message {
	if system == "" || (len(msgs) > 0 && msgs[0].Role == tpo.RoleSystem) {
		return msgs
	}
	return append([]tpo.Message{{Role: tpo.RoleSystem, Content: system}}, msgs...)
}

// dataSource adapts a dataset reader to tpo.Source: a bad record becomes a
// failed item named by its line, and the run goes on.
type dataSource struct {
	r      *dataset.Reader
	system string
	log    *slog.Logger
	seen   map[string]bool
}

func (s *dataSource) Next() (tpo.Input, error) {
	rec, err := s.r.Next()
	if err != nil {
		var de *dataset.Error
		if errors.As(err, &de) {
			s.log.Warn("bad input record", "err", err)
			// Keep the record's own id unless it is missing or taken
			// (a duplicate id is itself the error).
			id := rec.Item.ID
			if id == "" || s.seen[id] {
				id = fmt.Sprintf("line-%d", de.Line)
			}
			s.seen[id] = true
			return tpo.Input{Item: tpo.Item{ID: id}, Err: err}, nil
		}
		return tpo.Input{}, err
	}
	s.seen[rec.Item.ID] = true
	rec.Item.Messages = withSystem(s.system, rec.Item.Messages)
	return tpo.Input{Item: rec.Item}, nil
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

// progress shows items done on stderr when it is a terminal.
type progress struct {
	mu      sync.Mutex
	bar     *progressbar.ProgressBar
	n       int
	sumBest float64
	scored  int
}

func newProgress(env *environ, mode string, total int) *progress {
	p := &progress{}
	show := mode == "on" || (mode == "auto" && env.stderrIsTerminal())
	if !show {
		return p
	}
	p.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(env.stderr),
		progressbar.OptionSetDescription("optimizing"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("items"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetWidth(20),
		progressbar.OptionClearOnFinish(),
	)
	return p
}

func (p *progress) item(st tpo.ItemState, skipped bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if st.Result != nil && st.Result.Error == "" && len(st.Result.Steps) > 0 {
		p.sumBest += st.Result.Score
		p.scored++
	}
	if p.bar == nil {
		return
	}
	if p.scored > 0 {
		p.bar.Describe(fmt.Sprintf("mean best %.3g", p.sumBest/float64(p.scored)))
	}
	_ = p.bar.Add(1)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

func isUnreachable(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) || errors.As(err, &dns)
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
