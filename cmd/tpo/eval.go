package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"

	"github.com/tpoproject/tpo/eval"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/internal/atomicfile"
	"github.com/tpoproject/tpo/results"
)

const evalUsage = `usage: tpo eval COMMAND [flags]

Scores the answers of a run on the benchmarks of the TPO paper. Every
command reads a results file written by 'tpo run --out', or any JSON Lines
file of {"id": ..., "response": ...} objects (--results FILE), or the run
itself from a store (--store S RUN: a SQLite file or a postgres:// URL and
the run's id; the same answers tpo export and tpo run --out would write).

commands:
  math        MATH-500 accuracy, by level and subject
  alpaca      AlpacaEval 2: the leaderboard's figures (win rate, LC win rate
              with AlpacaEval's published weights) of annotation files, or
              of answers judged against gpt4_1106_preview
  arena-hard  Arena-Hard-Auto v0.1: the score against gpt-4-0314 with a
              95% interval, from judgment files or answers judged here
  reward      mean reward-model score of the answers, and the per-step
              reward curves of a TPO run
  judge       pairwise LLM-judge win rate against any baseline, with a
              bootstrap interval and tpo's length-adjusted estimate
  xstest      XSTest refusal rates on safe and unsafe prompts, and accuracy

With --json, a command prints its figures as one JSON line instead of a
readable report. Run 'tpo eval COMMAND -h' for a command's flags.
`

func cmdEval(ctx context.Context, args []string, env *environ) error {
	// Retries of the judge, classifier or reward model are counted, and
	// said once at the end.
	retries := &retryCounts{}
	err := runSubcommand(httpx.WithRetryObserver(ctx, retries), args, env, evalUsage, "command", []subcommand{
		{"math", evalMath}, {"alpaca", evalAlpaca}, {"arena-hard", evalArenaHard},
		{"reward", evalReward}, {"judge", evalJudge}, {"xstest", evalXSTest},
	})
	if s := retries.summary(); s != "" && ctx.Err() == nil {
		fmt.Fprintln(env.stderr, s)
	}
	return err
}

// evalFlags are the flags every eval command has.
type evalFlags struct {
	src  answerSource
	json bool
}

func newEvalFlagSet(name, usage string, ef *evalFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("eval "+name, flag.ContinueOnError)
	ef.src.register(fs, " (or --store S RUN)")
	fs.BoolVar(&ef.json, "json", false, "print the figures as one JSON line instead of a readable report")
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	return fs
}

// finish ends a command: it prints the figures as one JSON line with
// --json, else the readable report, and returns failure, the error that
// makes the command exit 1 after its report (nil for success).
func (ef *evalFlags) finish(env *environ, figures any, report func(io.Writer), failure error) error {
	if ef.json {
		if err := printJSONLine(env.stdout, figures); err != nil {
			return err
		}
	} else {
		report(env.stdout)
	}
	return failure
}

// parseEvalArgs parses the flags of an eval command, whose only
// positional argument is the RUN of --store, and checks that the answers
// are given: --results FILE or --store S RUN.
func parseEvalArgs(fs *flag.FlagSet, ef *evalFlags, args []string) error {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	return ef.src.set(pos, fs.Name())
}

// inputError wraps the failure to read an input file: a file that does not
// exist is a usage error, anything else (a malformed line) a failure.
func inputError(flagName string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return usageError{fmt.Errorf("--%s: %w", flagName, err)}
	}
	return fmt.Errorf("--%s: %w", flagName, err)
}

// answers are the responses of a results file or a run, by id.
type answers struct {
	name     string   // the source's model name (answerSource.name)
	order    []string // ids in file order, each once
	lines    map[string]results.Line
	failed   int // lines with an error and no response, left out
	repeated int // ids seen again; the last line wins
}

// readAnswers reads the responses of a results file or a run. Items that
// failed before any response are left out (and counted), so that they
// count as unanswered.
func readAnswers(ctx context.Context, env *environ, src *answerSource) (*answers, error) {
	a := &answers{lines: map[string]results.Line{}}
	err := src.each(ctx, env, func(l results.Line) error {
		if l.Error != nil && l.Response == "" {
			a.failed++
			return nil
		}
		if _, seen := a.lines[l.ID]; seen {
			a.repeated++
		} else {
			a.order = append(a.order, l.ID)
		}
		l.Steps = nil // not needed: keep memory small
		a.lines[l.ID] = l
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.name = src.name()
	return a, nil
}

// readGraded reads the items of a benchmark's data file and the answers of
// a results file or a run, and warns of the answers whose ids are not in
// the data.
func readGraded[T any](ctx context.Context, env *environ, dataPath string, src *answerSource, id func(T) string) (items []T, ans *answers, unknown []string, err error) {
	items, err = eval.ReadJSONLFile[T](dataPath)
	if err != nil {
		return nil, nil, nil, inputError("data", err)
	}
	if ans, err = readAnswers(ctx, env, src); err != nil {
		return nil, nil, nil, err
	}
	ids := make(map[string]bool, len(items))
	for _, it := range items {
		ids[id(it)] = true
	}
	return items, ans, ans.warn(env, func(id string) bool { return ids[id] }), nil
}

// responses returns the response texts by id.
func (a *answers) responses() map[string]string {
	m := make(map[string]string, len(a.lines))
	for id, l := range a.lines {
		m[id] = l.Response
	}
	return m
}

// warn reports what did not fit on stderr: failed and repeated lines, and
// ids of the results not in the data (when known is not nil).
func (a *answers) warn(env *environ, known func(id string) bool) (unknown []string) {
	if a.failed > 0 {
		fmt.Fprintf(env.stderr, "warning: %s without a response; %s as unanswered\n",
			plural(a.failed, "item failed", "items failed"), pick(a.failed, "it counts", "they count"))
	}
	if a.repeated > 0 {
		fmt.Fprintf(env.stderr, "warning: %s more than once in the results; the last line of each counts\n",
			plural(a.repeated, "id appears", "ids appear"))
	}
	if known == nil {
		return nil
	}
	for _, id := range a.order {
		if !known(id) {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		fmt.Fprintf(env.stderr, "warning: %s of the results %s not in the data and %s ignored: %s\n",
			plural(len(unknown), "id", "ids"), pick(len(unknown), "is", "are"), pick(len(unknown), "is", "are"), idList(unknown, maxListed))
	}
	return unknown
}

func pct(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }

// writeJSONLines writes one JSON line per element of vs to path atomically.
func writeJSONLines[T any](path string, vs []T) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, v := range vs {
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	return atomicfile.WriteBytes(path, buf.Bytes())
}
