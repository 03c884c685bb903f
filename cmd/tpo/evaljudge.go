package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/dataset"
	"github.com/tpoproject/tpo/eval"
)

const evalJudgeUsage = `usage: tpo eval judge --results A --baseline B --judge-url URL [flags]
       tpo eval judge --store S --baseline B --judge-url URL [flags] A

Judges the answers of A against those of B with an LLM judge, pairwise, and
reports A's win rate (ties count half) with a bootstrap 95% interval and
tpo's length-adjusted estimate (the win rate a logistic model of the
verdicts on the length difference predicts at equal lengths: not
AlpacaEval's length-controlled win rate; for the paper's metrics use
'tpo eval alpaca' and 'tpo eval arena-hard'). Each pair is judged twice,
with either answer shown first, to cancel the judge's position bias.

A is a results file (--results), or a run of the store S (--store S and
the run's id). B is another run's results, or a file of reference answers such as
Arena-Hard's baseline_gpt-4-0314.jsonl: the id is read from the first of
id, question_id, uid and the answer from the first of response, answer,
output present in its first record (or the fields --baseline-id-field and
--baseline-response-field name). The question is A's prompt, or the prompt
of the record of --data with the same id.

The judge is asked for a short reasoning ending in [[A]], [[B]] or [[C]]
(tie), at temperature 0. A reply without a verdict gets one reminder; if
that fails too the order counts as unknown. With --out, each item's
verdicts (both orders, with the judge's replies) are written as they come;
running the same command again judges only the items not yet there (or
whose requests failed).

Flags:
`

// baselineField returns the first of names that is a field of the first
// record of a JSON Lines file, or "" if none is.
func baselineField(path string, names ...string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), dataset.DefaultMaxLineBytes)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(line, &rec); err != nil {
			return "", fmt.Errorf("%s: first record: %w", path, err)
		}
		for _, n := range names {
			if _, ok := rec[n]; ok {
				return n, nil
			}
		}
		return "", nil
	}
	return "", sc.Err()
}

// judgeSummary is the JSON line of tpo eval judge.
type judgeSummary struct {
	Command string `json:"command"`
	eval.PairwiseReport
	// Unknown counts the orders whose verdict could not be read;
	// RequestErrors those whose request failed.
	Unknown       int `json:"unknown"`
	RequestErrors int `json:"request_errors"`
	// Judged counts the items judged by this command, Reused those taken
	// from an earlier --out.
	Judged int `json:"judged"`
	Reused int `json:"reused"`
	// NoBaseline counts the items of A without an answer in B, NoResult
	// those of B without one in A, and NoQuestion the items without a
	// question; none of them is judged.
	NoBaseline int    `json:"no_baseline"`
	NoResult   int    `json:"no_result"`
	NoQuestion int    `json:"no_question"`
	JudgeModel string `json:"judge_model"`
}

func evalJudge(ctx context.Context, args []string, env *environ) error {
	var (
		ef                                 evalFlags
		jf                                 judgeFlags
		baseline, baseIDField, baseRespFld string
		data, out                          string
		resamples                          int
		seed                               uint64
	)
	fs := newEvalFlagSet("judge", evalJudgeUsage, &ef)
	fs.StringVar(&baseline, "baseline", "", "`file` of B's answers: results of another run, or reference answers such as arena_hard_v0.1:baseline (required)")
	fs.StringVar(&baseIDField, "baseline-id-field", "", "the `field` of --baseline holding the id (default: id, question_id or uid)")
	fs.StringVar(&baseRespFld, "baseline-response-field", "", "the `field` of --baseline holding the answer (default: response, answer or output)")
	fs.StringVar(&data, "data", "", "dataset `file` (or a set's name, tpo data list) with the questions by id, for results without prompts")
	jf.register(fs, eval.DefaultJudgeSampling.MaxTokens)
	fs.StringVar(&out, "out", "", "write each item's verdicts to this JSON Lines `file`; items already there are not judged again")
	fs.IntVar(&resamples, "resamples", 1000, "bootstrap resamples of the interval")
	fs.Uint64Var(&seed, "seed", 0, "`seed` of the bootstrap")
	if err := parseEvalArgs(fs, &ef, args); err != nil {
		return err
	}
	if baseline == "" {
		return usagef("give --baseline FILE: the answers to compare against")
	}
	if err := jf.check(); err != nil {
		return err
	}
	if err := resolveDataFlags(ctx, env, map[string]*string{"data": &data, "baseline": &baseline}); err != nil {
		return err
	}
	sum := judgeSummary{Command: "judge"}
	pairs, err := judgePairs(ctx, env, &ef.src, data, baseline, baseIDField, baseRespFld, &sum)
	if err != nil {
		return err
	}
	judge := &eval.PairJudge{Sampling: jf.sampling()}
	verdicts := map[string]eval.PairVerdict{}
	todo := pairs
	if out != "" {
		if todo, err = reuseVerdicts(out, judge, pairs, verdicts); err != nil {
			return err
		}
		sum.Reused = len(pairs) - len(todo)
	}
	if len(todo) > 0 {
		client, err := jf.client(ctx, env)
		if err != nil {
			return err
		}
		judge.Model = client
		sum.JudgeModel = client.Model()
		if err := runJudge(ctx, judge, todo, jf.concurrency, out, verdicts); err != nil {
			return err
		}
		sum.Judged = len(todo)
	}
	return finishJudge(env, ef, &sum, pairs, verdicts, eval.PairwiseOptions{Resamples: resamples, Seed: seed})
}

// judgePairs pairs the answers of the results with those of the baseline
// and the questions, warning about the items left out (counted in sum).
func judgePairs(ctx context.Context, env *environ, src *answerSource, data, baseline, idField, respField string, sum *judgeSummary) ([]eval.PairItem, error) {
	a, err := readAnswers(ctx, env, src)
	if err != nil {
		return nil, err
	}
	a.warn(env, nil)
	base, err := readBaseline(baseline, idField, respField, env)
	if err != nil {
		return nil, err
	}
	var prompts map[string][]tpo.Message
	if data != "" {
		if prompts, err = promptsByID(data, env); err != nil {
			return nil, err
		}
	}
	var pairs []eval.PairItem
	for _, id := range a.order {
		l := a.lines[id]
		b, ok := base[id]
		if !ok {
			sum.NoBaseline++
			continue
		}
		q := tpo.Item{Messages: conversation(l, prompts)}.Prompt()
		if q == "" {
			sum.NoQuestion++
			continue
		}
		pairs = append(pairs, eval.PairItem{ID: id, Question: q, A: l.Response, B: b})
	}
	for id := range base {
		if _, ok := a.lines[id]; !ok {
			sum.NoResult++
		}
	}
	warnUnpaired(env, *sum)
	if len(pairs) == 0 {
		return nil, errors.New("no item has both answers and a question: nothing to judge")
	}
	return pairs, nil
}

// warnUnpaired says which items a judge run leaves out, and why.
func warnUnpaired(env *environ, sum judgeSummary) {
	if sum.NoBaseline > 0 {
		fmt.Fprintf(env.stderr, "warning: %s of the results %s no answer in --baseline; %s not judged\n",
			plural(sum.NoBaseline, "item", "items"), pick(sum.NoBaseline, "has", "have"), pick(sum.NoBaseline, "it is", "they are"))
	}
	if sum.NoResult > 0 {
		fmt.Fprintf(env.stderr, "warning: %s of --baseline %s no answer in the results; %s not judged\n",
			plural(sum.NoResult, "item", "items"), pick(sum.NoResult, "has", "have"), pick(sum.NoResult, "it is", "they are"))
	}
	if sum.NoQuestion > 0 {
		fmt.Fprintf(env.stderr, "warning: %s no question (no prompt in the results; give --data); %s not judged\n",
			plural(sum.NoQuestion, "item has", "items have"), pick(sum.NoQuestion, "it is", "they are"))
	}
}

// finishJudge computes the figures of the verdicts and reports them, or
// says why there are none.
func finishJudge(env *environ, ef evalFlags, sum *judgeSummary, pairs []eval.PairItem, verdicts map[string]eval.PairVerdict, po eval.PairwiseOptions) error {
	js := make([]eval.Judgement, 0, len(pairs))
	firstErr := ""
	for _, p := range pairs {
		v := verdicts[p.ID]
		js = append(js, v.Judgement)
		sum.Unknown += v.Unparsed
		for _, e := range []string{v.ErrAFirst, v.ErrBFirst} {
			if e != "" {
				sum.RequestErrors++
				firstErr = cmp.Or(firstErr, e)
			}
		}
	}
	sum.PairwiseReport = eval.Pairwise(js, po)
	if sum.Items == 0 {
		// No figure means anything: say why instead of a report of zeros.
		return ef.finish(env, *sum, func(io.Writer) {}, nothingJudged(len(pairs), sum.RequestErrors, sum.Unknown, firstErr))
	}
	var failed error
	if sum.RequestErrors > 0 {
		failed = fmt.Errorf("%s failed; run the same command again (with --out) to retry %s",
			plural(sum.RequestErrors, "judge request", "judge requests"), pick(sum.RequestErrors, "it", "them"))
	}
	s := *sum
	return ef.finish(env, s, func(w io.Writer) { printJudge(w, s) }, failed)
}

// nothingJudged is the error of a judge run in which no item got a
// verdict: its requests failed, or the judge's replies held none.
func nothingJudged(items, failedRequests, unreadable int, firstErr string) error {
	var why []string
	if failedRequests > 0 {
		why = append(why, fmt.Sprintf("%s failed (the first: %s)", plural(failedRequests, "judge request", "judge requests"), firstErr))
	}
	if unreadable > 0 {
		why = append(why, fmt.Sprintf("%s held no verdict ([[A]], [[B]] or [[C]]; --out FILE keeps the replies)", plural(unreadable, "reply", "replies")))
	}
	return fmt.Errorf("nothing was judged: none of the %s got a verdict: %s; run the same command again (with --out FILE) to retry",
		plural(items, "item", "items"), strings.Join(why, ", and "))
}

// readBaseline reads B's answers by id.
func readBaseline(path, idField, respField string, env *environ) (map[string]string, error) {
	if respField == "" {
		f, err := baselineField(path, "response", "answer", "output")
		if err != nil {
			return nil, inputError("baseline", err)
		}
		if f == "" {
			return nil, usagef("--baseline: the first record has none of the fields response, answer, output; give --baseline-response-field")
		}
		respField = f
	}
	m := map[string]string{}
	err := eachRecord(path, dataset.Options{IDField: idField, PromptField: respField}, "baseline", env,
		func(rec dataset.Record) { m[rec.Item.ID] = rec.Item.Prompt() })
	return m, err
}

// reuseVerdicts reads the verdicts of an earlier --out file into verdicts
// and returns the pairs still to judge (see eval.ReuseVerdicts).
func reuseVerdicts(path string, j *eval.PairJudge, pairs []eval.PairItem, verdicts map[string]eval.PairVerdict) ([]eval.PairItem, error) {
	prev, err := eval.ReadJSONLFile[eval.PairVerdict](path)
	if errors.Is(err, fs.ErrNotExist) {
		return pairs, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--out (reading the verdicts of an earlier run): %w", err)
	}
	return j.ReuseVerdicts(prev, pairs, verdicts), nil
}

// runJudge judges pairs into verdicts, appending each to the file out
// when it is not empty.
func runJudge(ctx context.Context, j *eval.PairJudge, pairs []eval.PairItem, concurrency int, out string, verdicts map[string]eval.PairVerdict) error {
	var enc *json.Encoder
	if out != "" {
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer f.Close()
		enc = json.NewEncoder(f)
		enc.SetEscapeHTML(false)
	}
	err := j.Run(ctx, pairs, concurrency, func(v eval.PairVerdict) error {
		verdicts[v.ID] = v
		if enc == nil {
			return nil
		}
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("judging: %w", err)
	}
	return nil
}

func printJudge(w io.Writer, s judgeSummary) {
	fmt.Fprintf(w, "judge %s: %s judged in both orders (%d now, %d from --out)\n", s.JudgeModel, plural(s.Items, "item", "items"), s.Judged, s.Reused)
	fmt.Fprintf(w, "win rate of A over B: %s (%.0f%% interval %s to %s)\n", pct(s.WinRate), 100*s.Confidence, pct(s.CILow), pct(s.CIHigh))
	fmt.Fprintf(w, "length-adjusted win rate (tpo's estimate, not AlpacaEval's LC): %s\n", pct(s.LengthAdjusted))
	fmt.Fprintf(w, "judgements: A better %d, B better %d, ties %d (of %d)\n", s.Wins, s.Losses, s.Ties, s.Judgements)
	fmt.Fprintf(w, "mean answer length: A %.0f, B %.0f characters\n", s.MeanLenA, s.MeanLenB)
	if s.Unknown > 0 || s.RequestErrors > 0 || s.Skipped > 0 {
		fmt.Fprintf(w, "unreadable verdicts: %d; failed requests: %d; items with no verdict (left out): %d\n", s.Unknown, s.RequestErrors, s.Skipped)
	}
	if s.NoBaseline+s.NoResult+s.NoQuestion > 0 {
		fmt.Fprintf(w, "not judged: %d without a baseline answer, %d without an answer in the results, %d without a question\n",
			s.NoBaseline, s.NoResult, s.NoQuestion)
	}
}
