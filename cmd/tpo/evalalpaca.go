package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tpoproject/tpo/eval"
	"github.com/tpoproject/tpo/internal/atomicfile"
)

const evalAlpacaUsage = `usage: tpo eval alpaca --annotations FILE [--lc-weights FILE]... [flags]
       tpo eval alpaca --results FILE --judge-url URL [--out annotations.jsonl] [flags]
       tpo eval alpaca --store S --judge-url URL [--out annotations.jsonl] [flags] RUN

Reports what AlpacaEval 2's leaderboard reports: the win rate against the
baseline with its standard error, wins, draws and the baseline's wins,
the discrete win rate, the average length of the answers, and the
length-controlled win rate.

With --annotations it scores AlpacaEval annotation files as they are
(annotations.json, a JSON array, or JSON Lines; preference 1 for the
baseline's output_1, 2 for the model's output_2, 1.5 a draw), calling no
model: published annotations can be scored again.

With --results (or --store S and a RUN id, for the answers of a run of
the store) it judges the answers against the baseline's first (by
default alpaca_eval:baseline, gpt4_1106_preview, AlpacaEval 2's
reference) on the instructions of --data (by default alpaca_eval), each
pair twice with either answer shown first, and writes the annotations in
AlpacaEval's format to --out; the same code then computes the figures. The
judge is any OpenAI-compatible model; its verdicts are [[A]], [[B]] or
[[C]] (a tie), so a preference is 1, 1.25, 1.5, 1.75 or 2. Running the same
command again judges only the items not in --out yet (or whose requests
failed).

AlpacaEval's length-controlled win rate fits a GLM with a term for each
instruction's difficulty, whose values AlpacaEval publishes beside its code:
give them with --lc-weights (instruction_difficulty.csv and df_gamed.csv,
or a directory holding them). For a model of AlpacaEval's leaderboard,
its published weights (baseline_gpt4_1106_preview.csv) give AlpacaEval's
own figure. With instruction_difficulty.csv alone tpo
fits AlpacaEval's length_controlled_noreg GLM and reports it as an
estimate (lc_noreg_estimate); without either, a length-adjusted estimate
(length_adjusted_estimate): never as the LC.

Figures are in percent, as AlpacaEval's are.

Flags:
`

// alpacaSummary is the JSON line of tpo eval alpaca.
type alpacaSummary struct {
	Command string `json:"command"`
	eval.AlpacaMetrics
	// LCWinRate and LCStandardError are AlpacaEval's length-controlled
	// win rate (its leaderboard's GLM, length_controlled_v1) and its
	// standard error, with --lc-weights holding df_gamed.csv.
	LCWinRate       *float64 `json:"length_controlled_winrate,omitempty"`
	LCStandardError *float64 `json:"lc_standard_error,omitempty"`
	// NoregEstimate and NoregSE are the length_controlled_noreg GLM's
	// figure and its standard error, with instruction_difficulty.csv
	// alone: an estimate, not the leaderboard's LC, so never under its
	// name.
	NoregEstimate *float64 `json:"lc_noreg_estimate,omitempty"`
	NoregSE       *float64 `json:"lc_noreg_estimate_standard_error,omitempty"`
	// LCGLM names the GLM fitted, LCWeights its fitted weights (tanh of
	// the length difference, instruction difficulty, not a gamed
	// baseline) and LCC the inverse penalty.
	LCGLM     string      `json:"lc_glm,omitempty"`
	LCWeights *[3]float64 `json:"lc_weights,omitempty"`
	LCC       *float64    `json:"lc_c,omitempty"`
	// LCSource says where the weights come from: "published" (AlpacaEval's
	// own for the model, so the figure is AlpacaEval's) or "fitted".
	LCSource string `json:"lc_weights_source,omitempty"`
	// LengthAdjusted is tpo's estimate, without --lc-weights.
	LengthAdjusted *float64 `json:"length_adjusted_estimate,omitempty"`
	Annotations    int      `json:"annotations"`
	Generator      string   `json:"generator"`
	Baseline       string   `json:"baseline"`
	Annotator      string   `json:"annotator,omitempty"`
	// Judged and Reused count the annotations made by this command and
	// taken from an earlier --out; RequestErrors the failed judge requests.
	Judged        int `json:"judged"`
	Reused        int `json:"reused"`
	RequestErrors int `json:"request_errors"`
}

// alpacaFlags are the flags of tpo eval alpaca.
type alpacaFlags struct {
	annotations, data, baseline, generator, out string
	src                                         answerSource
	lcWeights                                   listFlag
	json                                        bool
	judge                                       judgeFlags
}

func evalAlpaca(ctx context.Context, args []string, env *environ) error {
	var f alpacaFlags
	fs := flagSet("eval alpaca", evalAlpacaUsage)
	fs.StringVar(&f.annotations, "annotations", "", "AlpacaEval annotations `file` to score (a JSON array or JSON Lines)")
	f.src.register(fs, ": the answers to judge (or --store S RUN)")
	fs.StringVar(&f.data, "data", "alpaca_eval", "the instructions, in AlpacaEval's order: a `file` or a set's name")
	fs.StringVar(&f.baseline, "baseline", "alpaca_eval:baseline", "the baseline's answers by id (`file` or a set's name); its first record's model names it")
	fs.StringVar(&f.generator, "generator", "", "the `name` of the judged model in the annotations (default: the results file's name, or the run's mode-N-D)")
	fs.StringVar(&f.out, "out", "", "write the annotations to `file`: a JSON array if it ends in .json, else JSON Lines, kept as they come")
	fs.Var(&f.lcWeights, "lc-weights", "AlpacaEval's instruction_difficulty.csv, df_gamed.csv or baseline_gpt4_1106_preview.csv (`file`), or a directory holding them; repeatable")
	fs.BoolVar(&f.json, "json", false, "print the figures as one JSON line instead of a readable report")
	f.judge.register(fs, eval.DefaultJudgeSampling.MaxTokens)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if (f.annotations == "") == !f.src.given(pos) {
		return usagef("give either --annotations FILE (to score annotations) or --results FILE or --store S RUN (to judge answers)")
	}
	if f.annotations == "" {
		if err := f.src.set(pos, fs.Name()); err != nil {
			return err
		}
	}
	lc, err := readLCWeights(f.lcWeights.vals)
	if err != nil {
		return err
	}
	sum := alpacaSummary{Command: "alpaca"}
	var anns []eval.Annotation
	var failure error
	if f.annotations != "" {
		if anns, err = eval.ReadAnnotationsFile(f.annotations); err != nil {
			return inputError("annotations", err)
		}
	} else if anns, failure, err = judgeAlpaca(ctx, env, &f, &sum); err != nil {
		return err
	}
	if len(anns) == 0 {
		return errors.New("no annotations: nothing to score")
	}
	if err := alpacaFigures(anns, lc, &sum); err != nil {
		failure = errors.Join(failure, err)
	}
	ef := evalFlags{json: f.json}
	return ef.finish(env, sum, func(w io.Writer) { printAlpaca(w, sum) }, failure)
}

// flagSet is a flag set whose usage prints usage, then the flags.
func flagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	return fs
}

// alpacaFigures computes the figures of the annotations into sum: AlpacaEval's
// metrics, and its LC with lc, else tpo's estimate.
func alpacaFigures(anns []eval.Annotation, lc *eval.LCData, sum *alpacaSummary) error {
	sum.AlpacaMetrics = eval.AlpacaEvalMetrics(anns)
	sum.Annotations = len(anns)
	first := anns[0]
	sum.Generator, sum.Baseline = first.Generator2, first.Generator1
	sum.Annotator = first.Annotator
	if lc == nil {
		est := eval.LengthAdjustedEstimate(anns)
		sum.LengthAdjusted = &est
		return nil
	}
	res, err := eval.LengthControlled(anns, *lc)
	if err != nil {
		return fmt.Errorf("no length-controlled win rate: %w", err)
	}
	sum.LCGLM, sum.LCWeights, sum.LCSource = res.GLM, &res.Weights, res.Source
	if res.Source == eval.LCFitted {
		sum.LCC = &res.C
	}
	if res.GLM == eval.GLMLengthControlled {
		sum.LCWinRate, sum.LCStandardError = &res.WinRate, &res.StandardError
	} else {
		sum.NoregEstimate, sum.NoregSE = &res.WinRate, &res.StandardError
	}
	return nil
}

// readLCWeights reads AlpacaEval's CSVs for the LC; nil without any.
func readLCWeights(paths []string) (*eval.LCData, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	files := map[string]io.Reader{}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, inputError("lc-weights", err)
		}
		names := []string{p}
		if st.IsDir() {
			names = nil
			for _, n := range []string{"instruction_difficulty.csv", "df_gamed.csv", "baseline_gpt4_1106_preview.csv"} {
				if _, err := os.Stat(filepath.Join(p, n)); err == nil {
					names = append(names, filepath.Join(p, n))
				}
			}
			if names == nil {
				return nil, usagef("--lc-weights %s: holds none of instruction_difficulty.csv, df_gamed.csv, baseline_gpt4_1106_preview.csv", p)
			}
		}
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				return nil, inputError("lc-weights", err)
			}
			files[n] = strings.NewReader(string(data))
		}
	}
	d, err := eval.ReadLCData(files)
	if err != nil {
		return nil, fmt.Errorf("--lc-weights: %w", err)
	}
	return &d, nil
}

// judgeAlpaca judges the results against the baseline into annotations, in
// the order of the instructions, reusing those of an earlier --out.
func judgeAlpaca(ctx context.Context, env *environ, f *alpacaFlags, sum *alpacaSummary) ([]eval.Annotation, error, error) {
	if err := f.judge.check(); err != nil {
		return nil, nil, err
	}
	if err := resolveDataFlags(ctx, env, map[string]*string{"data": &f.data, "baseline": &f.baseline}); err != nil {
		return nil, nil, err
	}
	qs, err := readQuestions(f.data, env)
	if err != nil {
		return nil, nil, err
	}
	a, err := readAnswers(ctx, env, &f.src)
	if err != nil {
		return nil, nil, err
	}
	a.warn(env, nil)
	base, err := readBaseline(f.baseline, "", "", env)
	if err != nil {
		return nil, nil, err
	}
	answers := a.responses()
	missingAnswers(env, qs, answers, base)
	gen1 := firstString(f.baseline, "model", "generator", "model_id")
	if gen1 == "" {
		gen1 = modelName("", f.baseline)
	}
	gen2 := cmp.Or(f.generator, a.name)
	var todo []eval.Annotation
	for _, q := range qs {
		ans, ok1 := answers[q.id]
		b, ok2 := base[q.id]
		if ok1 && ok2 {
			todo = append(todo, eval.Annotation{ID: q.id, Dataset: q.dataset, Instruction: q.prompt,
				Output1: b, Generator1: gen1, Output2: ans, Generator2: gen2})
		}
	}
	if len(todo) == 0 {
		return nil, nil, errors.New("no instruction has both an answer and the baseline's: nothing to judge")
	}
	done, err := reuseAnnotations(f.out, todo)
	if err != nil {
		return nil, nil, err
	}
	anns, failure, err := runAlpacaJudge(ctx, env, f, todo, done, sum)
	if err != nil {
		return nil, nil, err
	}
	if f.out != "" {
		if err := writeAnnotations(f.out, anns); err != nil {
			return nil, nil, err
		}
	}
	return anns, failure, nil
}

// reuseAnnotations returns the annotations of an earlier --out that are
// still good, by id: same instruction and outputs, and no failed request.
func reuseAnnotations(path string, todo []eval.Annotation) (map[string]eval.Annotation, error) {
	done := map[string]eval.Annotation{}
	if path == "" {
		return done, nil
	}
	prev, err := eval.ReadAnnotationsFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return done, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--out (reading the annotations of an earlier run): %w", err)
	}
	want := map[string]eval.Annotation{}
	for _, t := range todo {
		want[t.ID] = t
	}
	for _, p := range prev {
		t, ok := want[p.ID]
		if ok && p.Error == "" && p.Instruction == t.Instruction && p.Output1 == t.Output1 && p.Output2 == t.Output2 {
			done[p.ID] = p
		}
	}
	return done, nil
}

// runAlpacaJudge judges the annotations of todo not in done and returns all
// of them in todo's order; failure is the error of failed requests.
func runAlpacaJudge(ctx context.Context, env *environ, f *alpacaFlags, todo []eval.Annotation, done map[string]eval.Annotation, sum *alpacaSummary) ([]eval.Annotation, error, error) {
	var pairs []eval.PairItem
	for _, t := range todo {
		if _, ok := done[t.ID]; !ok {
			pairs = append(pairs, eval.PairItem{ID: t.ID, Question: t.Instruction, A: t.Output2, B: t.Output1})
		}
	}
	sum.Reused = len(todo) - len(pairs)
	if len(pairs) > 0 {
		client, err := f.judge.client(ctx, env)
		if err != nil {
			return nil, nil, err
		}
		annotator := "tpo-judge:" + client.Model()
		byID := map[string]eval.Annotation{}
		for _, t := range todo {
			byID[t.ID] = t
		}
		appendTo, closeOut, err := appendLines(f.out)
		if err != nil {
			return nil, nil, err
		}
		defer closeOut()
		judge := &eval.PairJudge{Model: client, Sampling: f.judge.sampling()}
		err = judge.Run(ctx, pairs, f.judge.concurrency, func(v eval.PairVerdict) error {
			a := annotationOf(byID[v.ID], v, annotator)
			done[v.ID] = a
			if a.Error != "" {
				sum.RequestErrors += strings.Count(a.Error, "\n") + 1
			}
			return appendTo(a)
		})
		if err != nil {
			return nil, nil, fmt.Errorf("judging: %w", err)
		}
		sum.Judged = len(pairs)
	}
	out := make([]eval.Annotation, 0, len(todo))
	for _, t := range todo {
		out = append(out, done[t.ID])
	}
	var failure error
	if sum.RequestErrors > 0 {
		failure = fmt.Errorf("%s failed; run the same command again (with --out) to retry %s",
			plural(sum.RequestErrors, "judge request", "judge requests"), pick(sum.RequestErrors, "it", "them"))
	}
	return out, failure, nil
}

// annotationOf fills an annotation from the verdicts of both orders: the
// model's output was A. Its preference is 1 + the model's score (a win 2, a
// tie 1.5), null when neither order gave a verdict.
func annotationOf(a eval.Annotation, v eval.PairVerdict, annotator string) eval.Annotation {
	a.Annotator = annotator
	if s, ok := v.Score(); ok {
		p := 1 + s
		a.Preference = &p
	}
	a.RawCompletion = jsonStringValue(fmt.Sprintf("model's output first: %s\n\nbaseline's output first: %s", v.RawAFirst, v.RawBFirst))
	var errs []string
	for _, e := range []string{v.ErrAFirst, v.ErrBFirst} {
		if e != "" {
			errs = append(errs, e)
		}
	}
	a.Error = strings.Join(errs, "\n")
	return a
}

// appendLines opens path (unless it is empty or a .json file, written
// whole at the end) to append one JSON line per annotation as it comes.
func appendLines(path string) (appendTo func(eval.Annotation) error, closeOut func(), err error) {
	if path == "" || strings.HasSuffix(path, ".json") {
		return func(eval.Annotation) error { return nil }, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("--out: %w", err)
	}
	enc := json.NewEncoder(f)
	enc.SetEscapeHTML(false)
	return func(a eval.Annotation) error {
		if err := enc.Encode(a); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		return nil
	}, func() { f.Close() }, nil
}

// writeAnnotations writes the annotations, in order, to path: a JSON array
// (as AlpacaEval's annotations.json) if it ends in .json, else JSON Lines.
func writeAnnotations(path string, anns []eval.Annotation) error {
	if !strings.HasSuffix(path, ".json") {
		return writeJSONLines(path, anns)
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(anns); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return atomicfile.WriteBytes(path, []byte(b.String()))
}

func printAlpaca(w io.Writer, s alpacaSummary) {
	fmt.Fprintf(w, "AlpacaEval: %s against %s, %s", s.Generator, s.Baseline, plural(s.Annotations, "annotation", "annotations"))
	if s.Annotator != "" {
		fmt.Fprintf(w, " by %s", s.Annotator)
	}
	if s.Judged+s.Reused > 0 {
		fmt.Fprintf(w, " (%d judged now, %d from --out)", s.Judged, s.Reused)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  win rate: %.1f%% (standard error %.2f)\n", s.WinRate, s.StandardError)
	switch {
	case s.LCWinRate != nil && s.LCSource == eval.LCPublishedWeights:
		fmt.Fprintf(w, "  length-controlled win rate: %.1f%% (standard error %.2f; AlpacaEval's own: its published %s weights for %s)\n", *s.LCWinRate, *s.LCStandardError, s.LCGLM, s.Generator)
	case s.LCWinRate != nil:
		fmt.Fprintf(w, "  length-controlled win rate: %.1f%% (standard error %.2f; AlpacaEval's %s GLM, fitted by tpo)\n", *s.LCWinRate, *s.LCStandardError, s.LCGLM)
	case s.NoregEstimate != nil:
		fmt.Fprintf(w, "  length-controlled estimate: %.1f%% (standard error %.2f; an estimate, not AlpacaEval's LC: its %s GLM, without the gamed baselines' annotations; give df_gamed.csv too for the LC)\n", *s.NoregEstimate, *s.NoregSE, s.LCGLM)
	case s.LengthAdjusted != nil:
		fmt.Fprintf(w, "  length-adjusted win rate: %.1f%% (an estimate, not AlpacaEval's LC: its GLM without the instruction-difficulty term; give --lc-weights for the LC)\n", *s.LengthAdjusted)
	}
	fmt.Fprintf(w, "  wins %d, draws %d, baseline wins %d, of %d; discrete win rate %.1f%%\n", s.NWins, s.NDraws, s.NWinsBase, s.NTotal, s.DiscreteWinRate)
	fmt.Fprintf(w, "  average length: %d characters\n", s.AvgLength)
	if s.NotPreferences > 0 {
		fmt.Fprintf(w, "  annotations without a preference (left out): %d\n", s.NotPreferences)
	}
	if s.RequestErrors > 0 {
		fmt.Fprintf(w, "  failed judge requests: %d\n", s.RequestErrors)
	}
}
