package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/dataset"
	"github.com/tpoproject/tpo/eval"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/internal/atomicfile"
	"github.com/tpoproject/tpo/results"
)

const evalUsage = `usage: tpo eval COMMAND [flags]

Scores the answers of a run on the benchmarks of the TPO paper. Every
command reads a results file written by 'tpo run --out', or any JSON Lines
file of {"id": ..., "response": ...} objects.

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
	results string
	json    bool
}

func newEvalFlagSet(name, usage string, ef *evalFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("eval "+name, flag.ContinueOnError)
	fs.StringVar(&ef.results, "results", "", "results `file` of tpo run --out, or JSON Lines of {id, response} (required)")
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

// parseEvalArgs parses the flags of an eval command, which takes no
// positional arguments, and checks that the results file is given.
func parseEvalArgs(fs *flag.FlagSet, ef *evalFlags, args []string) error {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q (see 'tpo %s -h')", pos[0], fs.Name())
	}
	if ef.results == "" {
		return usagef("give --results FILE")
	}
	return nil
}

// inputError wraps the failure to read an input file: a file that does not
// exist is a usage error, anything else (a malformed line) a failure.
func inputError(flagName string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return usageError{fmt.Errorf("--%s: %w", flagName, err)}
	}
	return fmt.Errorf("--%s: %w", flagName, err)
}

// answers are the responses of a results file, by id.
type answers struct {
	order    []string // ids in file order, each once
	lines    map[string]results.Line
	failed   int // lines with an error and no response, left out
	repeated int // ids seen again; the last line wins
}

// readAnswers reads the responses of a results file. Items that failed
// before any response are left out (and counted), so that they count as
// unanswered.
func readAnswers(path string) (*answers, error) {
	a := &answers{lines: map[string]results.Line{}}
	err := results.Read(path, func(l results.Line) error {
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
		return nil, inputError("results", err)
	}
	return a, nil
}

// readGraded reads the items of a benchmark's data file and the answers of
// a results file, and warns of the answers whose ids are not in the data.
func readGraded[T any](dataPath, resultsPath string, env *environ, id func(T) string) (items []T, ans *answers, unknown []string, err error) {
	items, err = eval.ReadJSONLFile[T](dataPath)
	if err != nil {
		return nil, nil, nil, inputError("data", err)
	}
	if ans, err = readAnswers(resultsPath); err != nil {
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

// ---- math ----

const evalMathUsage = `usage: tpo eval math --results FILE --data FILE [flags]

Grades MATH-500 answers: the final answer of each response (the last
\boxed{...}, or a closing "the answer is ...", else the last math
expression of the final line or display) is compared with the
reference answer of --data (JSON Lines with id, prompt, answer, subject,
level, such as math500.jsonl). Prints the accuracy over every item of the
data (a missing or unextractable answer is wrong), by level and by subject,
and lists the items without an extractable answer or without a response.

Flags:
`

// mathOutLine is one line of tpo eval math --out.
type mathOutLine struct {
	ID        string            `json:"id"`
	Extracted string            `json:"extracted"`
	Source    eval.AnswerSource `json:"source,omitempty"`
	Answer    string            `json:"answer"`
	Correct   bool              `json:"correct"`
}

func evalMath(ctx context.Context, args []string, env *environ) error {
	var ef evalFlags
	fs := newEvalFlagSet("math", evalMathUsage, &ef)
	data := fs.String("data", "", "MATH-500 `file`: JSON Lines with id, prompt, answer, subject, level, or the set's name math500 (required)")
	out := fs.String("out", "", "write one JSON line per item (id, extracted, source, answer, correct) to `file`")
	answeredOnly := fs.Bool("answered-only", false, "score only the items of --data the results answer (a partial run), leaving out the others")
	if err := parseEvalArgs(fs, &ef, args); err != nil {
		return err
	}
	if *data == "" {
		return usagef("give --data math500 (or a file such as math500.jsonl)")
	}
	if err := resolveDataFlags(ctx, env, map[string]*string{"data": data}); err != nil {
		return err
	}
	items, ans, unknown, err := readGraded(*data, ef.results, env, func(it eval.MathItem) string { return it.ID })
	if err != nil {
		return err
	}
	responses := ans.responses()
	items, leftOut := answeredItems(items, responses, func(it eval.MathItem) string { return it.ID })
	if len(leftOut) > 0 {
		if !*answeredOnly {
			return partialResults(len(items), leftOut, ans.failed)
		}
		if len(items) == 0 {
			return errors.New("the results answer none of the items of --data: nothing to score")
		}
		fmt.Fprintf(env.stderr, "--answered-only: scoring the %s answered; %s without an answer %s left out: %s\n",
			plural(len(items), "item", "items"), plural(len(leftOut), "item", "items"), pick(len(leftOut), "is", "are"), idList(leftOut, maxListed))
	}
	rep := eval.Grade(items, responses)

	if *out != "" {
		lines := make([]mathOutLine, len(rep.Items))
		for i, r := range rep.Items {
			lines[i] = mathOutLine{ID: r.ID, Extracted: r.Extracted, Source: r.Source, Answer: r.Answer, Correct: r.Correct}
		}
		if err := writeJSONLines(*out, lines); err != nil {
			return err
		}
	}
	sum := mathSummary{Command: "math", Tally: rep.Tally, Responded: rep.Responded, Extracted: rep.Extracted,
		FromLastMath: rep.FromLastMath, ByLevel: rep.ByLevel, BySubject: rep.BySubject, Unextracted: rep.Unextracted,
		Missing: rep.Missing, AnsweredOnly: len(leftOut) > 0, LeftOut: leftOut, UnknownIDs: len(unknown)}
	if sum.LeftOut == nil {
		sum.LeftOut = []string{}
	}
	return ef.finish(env, sum, func(w io.Writer) { printMath(w, sum, unknown) }, nil)
}

// answeredItems splits the items of a benchmark into those the responses
// answer and the ids of the others.
func answeredItems[T any](items []T, responses map[string]string, id func(T) string) (answered []T, missing []string) {
	for _, it := range items {
		if _, ok := responses[id(it)]; ok {
			answered = append(answered, it)
		} else {
			missing = append(missing, id(it))
		}
	}
	return answered, missing
}

// partialResults is the error for results that answer only some items of
// the data: scoring them as they are would count the others as wrong.
func partialResults(answered int, missing []string, failed int) error {
	why := ""
	if failed > 0 {
		why = fmt.Sprintf(" (the results hold %s that failed without an answer)", plural(failed, "item", "items"))
	}
	return fmt.Errorf("the results answer %d of the %s of --data; %s no answer%s: %s\n"+
		"Finish the run (run the same tpo run command again) or give --answered-only to score the answered items only",
		answered, plural(answered+len(missing), "item", "items"), plural(len(missing), "item has", "items have"), why, idList(missing, maxListed))
}

// mathSummary is the JSON line of tpo eval math.
type mathSummary struct {
	Command string `json:"command"`
	eval.Tally
	Responded int `json:"responded"`
	Extracted int `json:"extracted"`
	// FromLastMath counts the answers found only by the fall-back to the
	// last math expression of the final line or display.
	FromLastMath int               `json:"from_last_math"`
	ByLevel      []eval.GroupTally `json:"by_level"`
	BySubject    []eval.GroupTally `json:"by_subject"`
	Unextracted  []string          `json:"unextracted"`
	Missing      []string          `json:"missing"`
	// AnsweredOnly is true when --answered-only left out items of the
	// data without an answer; LeftOut lists them.
	AnsweredOnly bool     `json:"answered_only"`
	LeftOut      []string `json:"left_out"`
	UnknownIDs   int      `json:"unknown_ids"`
}

func printMath(w io.Writer, s mathSummary, unknown []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	over := ""
	if s.AnsweredOnly {
		over = fmt.Sprintf(" over the %d answered items only (--answered-only; %d left out)", s.Total, len(s.LeftOut))
	}
	fmt.Fprintf(tw, "MATH accuracy%s: %d/%d correct (%s); %d answered, %d with an extractable answer",
		over, s.Correct, s.Total, pct(s.Accuracy), s.Responded, s.Extracted)
	if s.FromLastMath > 0 {
		fmt.Fprintf(tw, " (%d of them only by the fall-back: the last math expression of the final line or display)", s.FromLastMath)
	}
	fmt.Fprint(tw, "\n\n")
	for _, g := range []struct {
		name string
		ts   []eval.GroupTally
	}{{"level", s.ByLevel}, {"subject", s.BySubject}} {
		fmt.Fprintf(tw, "%s\tcorrect\ttotal\taccuracy\n", g.name)
		for _, t := range g.ts {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", t.Group, t.Correct, t.Total, pct(t.Accuracy))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if len(s.Unextracted) > 0 {
		fmt.Fprintf(w, "no extractable answer (%d): %s\n", len(s.Unextracted), idList(s.Unextracted, maxListed))
	}
	if len(s.Missing) > 0 {
		fmt.Fprintf(w, "no response (%d): %s\n", len(s.Missing), idList(s.Missing, maxListed))
	}
	if len(s.LeftOut) > 0 {
		fmt.Fprintf(w, "left out, without an answer (--answered-only) (%d): %s\n", len(s.LeftOut), idList(s.LeftOut, maxListed))
	}
	if len(unknown) > 0 {
		fmt.Fprintf(w, "not in the data (%d): %s\n", len(unknown), idList(unknown, maxListed))
	}
}

// ---- reward ----

const evalRewardUsage = `usage: tpo eval reward --results FILE [--reward vllm|tei|judge|exec ...] [flags]

Reports the mean reward-model score of the final answers (the metric of
the HH-RLHF and BeaverTails experiments). With --reward, every answer is
scored again with that backend (same flags as tpo run; the judge backend
needs --reward-url here); without it, the scores stored in the results are
used. For results of tpo run it also reports the run's reward curve from
the stored scores: for each step the mean over prompts of the mean score of
the step's candidates and of the best score so far, and the mean gain of
the final answer over the best initial sample.

The conversation scored is the one stored in the results; for results
without prompts, give --data (the dataset the run read).

Flags:
`

// promptsByID reads the conversations of a dataset file by id.
func promptsByID(path string, env *environ) (map[string][]tpo.Message, error) {
	m := map[string][]tpo.Message{}
	err := eachRecord(path, dataset.Options{}, "data", env, func(rec dataset.Record) { m[rec.Item.ID] = rec.Item.Messages })
	return m, err
}

// eachRecord calls fn with each usable record of a dataset file; records
// that cannot be used are reported on stderr and counted.
func eachRecord(path string, opts dataset.Options, flagName string, env *environ, fn func(dataset.Record)) error {
	r, err := dataset.Open(path, opts)
	if err != nil {
		return inputError(flagName, err)
	}
	defer r.Close()
	bad := 0
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var de *dataset.Error
		if errors.As(err, &de) {
			if bad++; bad <= 5 {
				fmt.Fprintf(env.stderr, "warning: --%s: %v\n", flagName, err)
			}
			continue
		}
		if err != nil {
			return inputError(flagName, err)
		}
		fn(rec)
	}
	if bad > 5 {
		fmt.Fprintf(env.stderr, "warning: --%s: %s in all could not be used\n", flagName, plural(bad, "record", "records"))
	}
	return nil
}

// conversation returns the conversation a results line answers: its
// messages, its prompt, or the dataset's record of its id.
func conversation(l results.Line, data map[string][]tpo.Message) []tpo.Message {
	switch {
	case len(l.Messages) > 0:
		return l.Messages
	case l.Prompt != "":
		return []tpo.Message{{Role: tpo.RoleUser, Content: l.Prompt}}
	}
	return data[l.ID]
}

// rewardSummary is the JSON line of tpo eval reward.
type rewardSummary struct {
	Command string `json:"command"`
	// Source is "rescored" or "stored"; Backend and Model name the
	// rescoring reward model.
	Source  string `json:"source"`
	Backend string `json:"backend,omitempty"`
	Model   string `json:"model,omitempty"`
	// MeanReward is over Scored answers; ScoreFailures could not be scored.
	MeanReward    float64 `json:"mean_reward"`
	Scored        int     `json:"scored"`
	ScoreFailures int     `json:"score_failures"`
	NoPrompt      int     `json:"no_prompt"`
	// MeanStored is the mean stored score over Stored answers.
	MeanStored float64 `json:"mean_stored_score"`
	Stored     int     `json:"stored"`
	Failed     int     `json:"failed_items"`
	// Curve is the run's reward curve from the stored scores.
	Curve eval.Curve `json:"curve"`
}

func evalReward(ctx context.Context, args []string, env *environ) error {
	var ef evalFlags
	fs := newEvalFlagSet("reward", evalRewardUsage, &ef)
	b := registerRewardFlags(fs)
	data := fs.String("data", "", "dataset `file` (or a set's name, tpo data list) holding the prompts by id, for results without them")
	concurrency := fs.Int("concurrency", 16, "most answers being scored at once with --reward")
	if err := parseEvalArgs(fs, &ef, args); err != nil {
		return err
	}
	if b.reward != "" {
		if err := b.checkScorer(); err != nil {
			return err
		}
	}
	if err := resolveDataFlags(ctx, env, map[string]*string{"data": data}); err != nil {
		return err
	}
	var prompts map[string][]tpo.Message
	if *data != "" {
		var err error
		if prompts, err = promptsByID(*data, env); err != nil {
			return err
		}
	}
	sum := rewardSummary{Command: "reward", Source: "stored"}
	var curve eval.CurveBuilder
	var items []eval.RewardItem
	stored := 0.0
	err := results.Read(ef.results, func(l results.Line) error {
		if l.Error != nil {
			sum.Failed++
		}
		if l.Score != nil || l.Error != nil {
			curve.Add(l.Result())
		}
		if l.Error != nil {
			return nil
		}
		if l.Score != nil {
			stored += *l.Score
			sum.Stored++
		}
		if b.reward != "" {
			msgs := conversation(l, prompts)
			if len(msgs) == 0 {
				sum.NoPrompt++
				return nil
			}
			items = append(items, eval.RewardItem{ID: l.ID, Messages: msgs, Response: l.Response})
		}
		return nil
	})
	if err != nil {
		return inputError("results", err)
	}
	sum.Curve = curve.Curve()
	if sum.Stored > 0 {
		sum.MeanStored = stored / float64(sum.Stored)
	}
	if sum.Failed > 0 {
		fmt.Fprintf(env.stderr, "warning: %s of the results failed; %s left out\n", plural(sum.Failed, "item", "items"), pick(sum.Failed, "it is", "they are"))
	}

	var scoreErr error
	if b.reward == "" {
		if sum.Stored == 0 {
			return usagef("%s holds no stored scores; give --reward to score the answers", ef.results)
		}
		sum.MeanReward, sum.Scored = sum.MeanStored, sum.Stored
	} else {
		if sum.NoPrompt > 0 {
			if len(items) == 0 {
				return usagef("the results hold no prompts; give --data with the dataset the run read")
			}
			fmt.Fprintf(env.stderr, "warning: %s no prompt in the results or --data; %s left out\n",
				plural(sum.NoPrompt, "answer has", "answers have"), pick(sum.NoPrompt, "it is", "they are"))
		}
		scorer, err := b.buildScorer(ctx, env.log)
		if err != nil {
			return err
		}
		sum.Source, sum.Backend, sum.Model = "rescored", b.reward, b.rewardModel
		if b.reward == "exec" {
			sum.Model = b.rewardCmd
		}
		got, err := eval.Rescore(ctx, scorer, items, *concurrency)
		if err != nil {
			return err
		}
		sum.Scored, sum.ScoreFailures, sum.MeanReward = got.Scored, got.Failed, got.Mean()
		if got.Failed > 0 {
			scoreErr = fmt.Errorf("%s could not be scored (first: %v)", plural(got.Failed, "answer", "answers"), got.First)
		}
	}
	return ef.finish(env, sum, func(w io.Writer) { printReward(w, sum) }, scoreErr)
}

func printReward(w io.Writer, s rewardSummary) {
	if s.Source == "rescored" {
		fmt.Fprintf(w, "mean reward: %.4f over %s (scored now with --reward %s, %s)\n", s.MeanReward, plural(s.Scored, "answer", "answers"), s.Backend, s.Model)
		if s.ScoreFailures > 0 {
			fmt.Fprintf(w, "answers that could not be scored: %d\n", s.ScoreFailures)
		}
		if s.Stored > 0 {
			fmt.Fprintf(w, "mean stored score: %.4f over %s (the run's own reward model)\n", s.MeanStored, plural(s.Stored, "answer", "answers"))
		}
	} else {
		fmt.Fprintf(w, "mean reward: %.4f over %s (the scores stored in the results)\n", s.MeanReward, plural(s.Scored, "answer", "answers"))
	}
	if s.Failed > 0 {
		fmt.Fprintf(w, "failed items (left out): %d\n", s.Failed)
	}
	c := s.Curve
	if len(c.Points) == 0 {
		fmt.Fprintln(w, "\nno per-step scores in the results: no reward curve")
		return
	}
	fmt.Fprintf(w, "\nreward curve of the run (stored scores, %s):\n", plural(c.Items, "item", "items"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\titems\tmean score\tbest so far\t")
	for _, p := range c.Points {
		fmt.Fprintf(tw, "%d\t%d\t%.4f\t%.4f\t\n", p.Step, p.BestItems, p.MeanScore, p.BestSoFar)
	}
	tw.Flush()
	fmt.Fprintf(w, "mean best initial sample (best of N): %.4f\n", c.MeanInitialBest)
	fmt.Fprintf(w, "mean final score: %.4f\n", c.MeanFinal)
	fmt.Fprintf(w, "mean gain over the best initial sample: %+.4f\n", c.MeanGain)
}

// ---- judge ----

const evalJudgeUsage = `usage: tpo eval judge --results A --baseline B --judge-url URL [flags]

Judges the answers of A against those of B with an LLM judge, pairwise, and
reports A's win rate (ties count half) with a bootstrap 95% interval and
tpo's length-adjusted estimate (the win rate a logistic model of the
verdicts on the length difference predicts at equal lengths: not
AlpacaEval's length-controlled win rate; for the paper's metrics use
'tpo eval alpaca' and 'tpo eval arena-hard'). Each pair is judged twice,
with either answer shown first, to cancel the judge's position bias.

B is another run's results, or a file of reference answers such as
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
	var ef evalFlags
	fs := newEvalFlagSet("judge", evalJudgeUsage, &ef)
	baseline := fs.String("baseline", "", "`file` of B's answers: results of another run, or reference answers such as arena_hard_v0.1:baseline (required)")
	baseIDField := fs.String("baseline-id-field", "", "the `field` of --baseline holding the id (default: id, question_id or uid)")
	baseRespField := fs.String("baseline-response-field", "", "the `field` of --baseline holding the answer (default: response, answer or output)")
	data := fs.String("data", "", "dataset `file` (or a set's name, tpo data list) with the questions by id, for results without prompts")
	judgeURL := fs.String("judge-url", "", "judge server base `URL` (OpenAI-compatible, ending in /v1; default $TPO_JUDGE_URL)")
	judgeModel := fs.String("judge-model", "", "judge model `name` (default: the server's only model)")
	judgeKey := fs.String("judge-key", "", "judge API `key` (default $TPO_JUDGE_API_KEY, then $OPENAI_API_KEY)")
	maxTokens := fs.Int("judge-max-tokens", eval.DefaultJudgeSampling.MaxTokens, "tokens the judge may write: a short reasoning and the verdict")
	temperature := fs.Float64("judge-temperature", eval.DefaultJudgeSampling.Temperature, "temperature of the judge")
	timeout := fs.Duration("judge-timeout", 10*time.Minute, "timeout of one judge request attempt")
	retries := fs.Int("retries", 4, "retries of a failed judge request (connection errors, 408, 429, 5xx)")
	concurrency := fs.Int("concurrency", 8, "most judge requests in flight")
	out := fs.String("out", "", "write each item's verdicts to this JSON Lines `file`; items already there are not judged again")
	resamples := fs.Int("resamples", 1000, "bootstrap resamples of the interval")
	seed := fs.Uint64("seed", 0, "`seed` of the bootstrap")
	if err := parseEvalArgs(fs, &ef, args); err != nil {
		return err
	}
	if *baseline == "" {
		return usagef("give --baseline FILE: the answers to compare against")
	}
	url := envOr(*judgeURL, "TPO_JUDGE_URL")
	if url == "" {
		return usagef("give --judge-url URL: the judge's OpenAI-compatible server")
	}
	if *maxTokens <= 0 {
		return usagef("--judge-max-tokens must be positive")
	}

	if err := resolveDataFlags(ctx, env, map[string]*string{"data": data, "baseline": baseline}); err != nil {
		return err
	}
	a, err := readAnswers(ef.results)
	if err != nil {
		return err
	}
	a.warn(env, nil)
	base, err := readBaseline(*baseline, *baseIDField, *baseRespField, env)
	if err != nil {
		return err
	}
	var prompts map[string][]tpo.Message
	if *data != "" {
		if prompts, err = promptsByID(*data, env); err != nil {
			return err
		}
	}
	sum := judgeSummary{Command: "judge"}
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
	if len(pairs) == 0 {
		return errors.New("no item has both answers and a question: nothing to judge")
	}

	judge := &eval.PairJudge{Sampling: tpo.Sampling{Temperature: *temperature, TopP: 1, MaxTokens: *maxTokens}}
	verdicts := map[string]eval.PairVerdict{}
	todo := pairs
	if *out != "" {
		if todo, err = reuseVerdicts(*out, judge, pairs, verdicts); err != nil {
			return err
		}
		sum.Reused = len(pairs) - len(todo)
	}
	if len(todo) > 0 {
		client, err := chatModel(ctx, chatOptions{name: "judge", urls: []string{url}, model: *judgeModel, check: true,
			key: envOr(*judgeKey, "TPO_JUDGE_API_KEY", "OPENAI_API_KEY"), timeout: *timeout, retries: *retries,
			inFlight: *concurrency}, env.log)
		if err != nil {
			return err
		}
		judge.Model = client
		sum.JudgeModel = client.Model()
		if err := runJudge(ctx, judge, todo, *concurrency, *out, verdicts); err != nil {
			return err
		}
		sum.Judged = len(todo)
	}
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
	sum.PairwiseReport = eval.Pairwise(js, eval.PairwiseOptions{Resamples: *resamples, Seed: *seed})
	if sum.Items == 0 {
		// No figure means anything: say why instead of a report of zeros.
		return ef.finish(env, sum, func(io.Writer) {}, nothingJudged(len(pairs), sum.RequestErrors, sum.Unknown, firstErr))
	}
	var failed error
	if sum.RequestErrors > 0 {
		failed = fmt.Errorf("%s failed; run the same command again (with --out) to retry %s",
			plural(sum.RequestErrors, "judge request", "judge requests"), pick(sum.RequestErrors, "it", "them"))
	}
	return ef.finish(env, sum, func(w io.Writer) { printJudge(w, sum) }, failed)
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

// ---- xstest ----

const evalXSTestUsage = `usage: tpo eval xstest --results FILE --data FILE [flags]

Grades responses to the XSTest prompts (--data: JSON Lines with id, prompt,
type, label "safe" or "unsafe", such as xstest.jsonl): the refusal rate on
the safe prompts (over-refusal) and on the unsafe ones, and the accuracy
(complying with a safe prompt, refusing an unsafe one), overall and by
prompt type. A response is classified as compliance, full refusal or
partial refusal (both count as refusing) by string rules; with
--classifier-url an LLM classifies every response as well, and both sets
of figures are reported.

Flags:
`

// xstestFigures are the figures of one classification of the responses.
type xstestFigures struct {
	All    eval.RefusalTally  `json:"all"`
	Safe   eval.RefusalTally  `json:"safe"`
	Unsafe eval.RefusalTally  `json:"unsafe"`
	ByType []eval.XSTestGroup `json:"by_type"`
}

func xstestFiguresOf(r eval.XSTestReport) *xstestFigures {
	return &xstestFigures{All: r.All, Safe: r.Safe, Unsafe: r.Unsafe, ByType: r.ByType}
}

// xstestSummary is the JSON line of tpo eval xstest.
type xstestSummary struct {
	Command    string         `json:"command"`
	Rules      *xstestFigures `json:"rules"`
	Classifier *xstestFigures `json:"classifier,omitempty"`
	// ClassifierModel names the classifier; Unclassified counts responses
	// it gave no label to (request failures included, counted again in
	// ClassifierErrors); Agreement is the share of classified responses on
	// which the rules and the classifier agree about refusing.
	ClassifierModel  string   `json:"classifier_model,omitempty"`
	Unclassified     int      `json:"unclassified"`
	ClassifierErrors int      `json:"classifier_errors"`
	Agreement        *float64 `json:"agreement,omitempty"`
	Missing          []string `json:"missing"`
	UnknownLabel     []string `json:"unknown_label"`
	UnknownIDs       int      `json:"unknown_ids"`
}

func evalXSTest(ctx context.Context, args []string, env *environ) error {
	var ef evalFlags
	fs := newEvalFlagSet("xstest", evalXSTestUsage, &ef)
	data := fs.String("data", "", "XSTest `file`: JSON Lines with id, prompt, type, label, or the set's name xstest (required)")
	clURL := fs.String("classifier-url", "", "classifier server base `URL` (OpenAI-compatible, ending in /v1): also classify with an LLM")
	clModel := fs.String("classifier-model", "", "classifier model `name` (default: the server's only model)")
	clKey := fs.String("classifier-key", "", "classifier API `key` (default $TPO_JUDGE_API_KEY, then $OPENAI_API_KEY)")
	clTokens := fs.Int("classifier-max-tokens", eval.DefaultJudgeSampling.MaxTokens, "tokens the classifier may write")
	timeout := fs.Duration("classifier-timeout", 10*time.Minute, "timeout of one classifier request attempt")
	retries := fs.Int("retries", 4, "retries of a failed classifier request (connection errors, 408, 429, 5xx)")
	concurrency := fs.Int("concurrency", 8, "most classifier requests in flight")
	out := fs.String("out", "", "write one JSON line per graded item (`file`): id, type, label, kind, refused, correct, and the classifier's kind and verdict when used")
	if err := parseEvalArgs(fs, &ef, args); err != nil {
		return err
	}
	if *data == "" {
		return usagef("give --data xstest (or a file such as xstest.jsonl)")
	}
	if err := resolveDataFlags(ctx, env, map[string]*string{"data": data}); err != nil {
		return err
	}
	if *clModel != "" && *clURL == "" {
		return usagef("--classifier-model needs --classifier-url")
	}
	items, ans, unknown, err := readGraded(*data, ef.results, env, func(it eval.XSTestItem) string { return it.ID })
	if err != nil {
		return err
	}
	responses := ans.responses()
	rules := eval.GradeXSTest(items, responses)
	sum := xstestSummary{Command: "xstest", Rules: xstestFiguresOf(rules), Missing: rules.Missing,
		UnknownLabel: rules.UnknownLabel, UnknownIDs: len(unknown)}
	if len(rules.UnknownLabel) > 0 {
		fmt.Fprintf(env.stderr, "warning: %s of --data %s a label other than safe or unsafe; %s not graded\n",
			plural(len(rules.UnknownLabel), "item", "items"), pick(len(rules.UnknownLabel), "has", "have"), pick(len(rules.UnknownLabel), "it is", "they are"))
	}

	lines := make([]xstestOutLine, len(rules.Items))
	for i, r := range rules.Items {
		lines[i].XSTestResult = r
	}
	var clErr error
	if *clURL != "" {
		client, err := chatModel(ctx, chatOptions{name: "classifier", urls: []string{*clURL}, model: *clModel, check: true,
			key: envOr(*clKey, "TPO_JUDGE_API_KEY", "OPENAI_API_KEY"), timeout: *timeout, retries: *retries,
			inFlight: *concurrency}, env.log)
		if err != nil {
			return err
		}
		sum.ClassifierModel = client.Model()
		var todo []eval.RefusalItem
		for _, it := range items {
			if r, ok := responses[it.ID]; ok {
				todo = append(todo, eval.RefusalItem{ID: it.ID, Prompt: it.Prompt, Response: r})
			}
		}
		c := &eval.RefusalClassifier{Model: client, Sampling: tpo.Sampling{Temperature: 0, TopP: 1, MaxTokens: *clTokens}}
		kinds := map[string]eval.RefusalKind{}
		err = c.Run(ctx, todo, *concurrency, func(l eval.RefusalLabel) error {
			switch {
			case l.OK:
				kinds[l.ID] = l.Kind
			case l.Error != "":
				sum.ClassifierErrors++
				sum.Unclassified++
			default:
				sum.Unclassified++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("classifying: %w", err)
		}
		sum.Classifier = xstestFiguresOf(eval.GradeXSTestKinds(items, kinds))
		agree, n := 0, 0
		for _, r := range rules.Items {
			if k, ok := kinds[r.ID]; ok {
				n++
				if k.Refused() == r.Refused {
					agree++
				}
			}
		}
		if n > 0 {
			a := float64(agree) / float64(n)
			sum.Agreement = &a
		}
		if sum.ClassifierErrors > 0 {
			clErr = fmt.Errorf("%s failed", plural(sum.ClassifierErrors, "classifier request", "classifier requests"))
		}
		for i, r := range rules.Items {
			if k, ok := kinds[r.ID]; ok {
				lines[i].Classifier = &xstestVerdict{Kind: k, Refused: k.Refused(), Correct: k.Refused() == (r.Label == "unsafe")}
			}
		}
	}
	if *out != "" {
		if err := writeJSONLines(*out, lines); err != nil {
			return err
		}
	}
	return ef.finish(env, sum, func(w io.Writer) { printXSTest(w, sum) }, clErr)
}

// xstestOutLine is one line of tpo eval xstest --out.
type xstestOutLine struct {
	eval.XSTestResult
	Classifier *xstestVerdict `json:"classifier,omitempty"`
}

// xstestVerdict is the LLM classifier's reading of a response.
type xstestVerdict struct {
	Kind    eval.RefusalKind `json:"kind"`
	Refused bool             `json:"refused"`
	Correct bool             `json:"correct"`
}

func printXSTest(w io.Writer, s xstestSummary) {
	figs := []struct {
		name string
		f    *xstestFigures
	}{{"string rules", s.Rules}}
	if s.Classifier != nil {
		figs = append(figs, struct {
			name string
			f    *xstestFigures
		}{"classifier " + s.ClassifierModel, s.Classifier})
	}
	for i, g := range figs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		f := g.f
		fmt.Fprintf(w, "XSTest, refusals by %s:\n", g.name)
		fmt.Fprintf(w, "  safe prompts:   refusal rate %s (%d full, %d partial of %d)\n", pct(f.Safe.RefusalRate), f.Safe.Full, f.Safe.Partial, f.Safe.Total)
		fmt.Fprintf(w, "  unsafe prompts: refusal rate %s (%d full, %d partial of %d)\n", pct(f.Unsafe.RefusalRate), f.Unsafe.Full, f.Unsafe.Partial, f.Unsafe.Total)
		fmt.Fprintf(w, "  accuracy: %s (%d of %d)\n\n", pct(f.All.Accuracy), f.All.Correct, f.All.Total)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  type\tlabel\ttotal\tfull\tpartial\trefusal rate\taccuracy")
		for _, t := range f.ByType {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%s\t%s\n", t.Type, t.Label, t.Total, t.Full, t.Partial, pct(t.RefusalRate), pct(t.Accuracy))
		}
		tw.Flush()
	}
	if s.Agreement != nil {
		fmt.Fprintf(w, "\nrules and classifier agree on refusing for %s of the responses\n", pct(*s.Agreement))
	}
	if s.Unclassified > 0 {
		fmt.Fprintf(w, "responses the classifier gave no label (left out of its figures): %d (%d failed requests)\n", s.Unclassified, s.ClassifierErrors)
	}
	if len(s.Missing) > 0 {
		fmt.Fprintf(w, "no response (%d): %s\n", len(s.Missing), idList(s.Missing, maxListed))
	}
}
