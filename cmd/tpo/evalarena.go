package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"

	"github.com/tpoproject/tpo/eval"
)

const evalArenaUsage = `usage: tpo eval arena-hard --judgments FILE|DIR [flags]
       tpo eval arena-hard --results FILE --judge-url URL [--out judgments.jsonl] [flags]
       tpo eval arena-hard --store S --judge-url URL [--out judgments.jsonl] [flags] RUN

Scores answers on Arena-Hard-Auto v0.1 as its show_result.py does: each
question is judged in two games, the baseline's answer shown first in the
first, the model's in the second; each game gets one of five verdicts
(A>>B, A>B, A=B, B>A, B>>A), a strong one counting three times; the
score is the Bradley-Terry probability of beating the baseline, in
percent, with a bootstrap 95% interval over the battles, printed as
69.7 (-2.1, +1.9).

With --judgments it scores judgment files in Arena-Hard-Auto's own format
(model_judgment/JUDGE/MODEL.jsonl: question_id or uid, model, games with
score strings; a directory scores every model in it), calling no model:
published judgments can be scored again.

With --results (or --store S and a RUN id, for the answers of a run of
the store) it judges the answers first, against the baseline's (by
default arena_hard_v0.1:baseline, gpt-4-0314) on the questions of --data
(by default arena_hard_v0.1), with tpo's own judge prompt, or the one
--judge-template gives: a Go template with "system" and "user" templates
(.Question, .AnswerA, .AnswerB), or Arena-Hard-Auto's judge configuration
(.yaml: system_prompt and prompt_template with {question_1}, {answer_1},
{answer_2}), used unchanged. --out keeps the judgments in Arena-Hard's
format; running the same command again judges only what is not there.

Flags:
`

// arenaSummary is the JSON line of tpo eval arena-hard.
type arenaSummary struct {
	Command string        `json:"command"`
	Scores  []arenaFigure `json:"scores"`
	Judge   string        `json:"judge,omitempty"`
	// Judged and Reused count the questions judged by this command and
	// taken from an earlier --out; RequestErrors the failed games.
	Judged        int `json:"judged"`
	Reused        int `json:"reused"`
	RequestErrors int `json:"request_errors"`
}

// arenaFigure is a model's score, with the way Arena-Hard prints it.
type arenaFigure struct {
	eval.ArenaScore
	Display string `json:"display"`
}

type arenaFlags struct {
	judgments, data, baseline, model, template, out string
	src                                             answerSource
	json                                            bool
	rounds                                          int
	seed                                            uint64
	judge                                           judgeFlags
}

func evalArenaHard(ctx context.Context, args []string, env *environ) error {
	var f arenaFlags
	fs := flagSet("eval arena-hard", evalArenaUsage)
	fs.StringVar(&f.judgments, "judgments", "", "Arena-Hard-Auto judgment `file`, or a directory of them (model_judgment/JUDGE), to score")
	f.src.register(fs, ": the answers to judge (or --store S RUN)")
	fs.StringVar(&f.data, "data", "arena_hard_v0.1", "the questions: a `file` or a set's name")
	fs.StringVar(&f.baseline, "baseline", "arena_hard_v0.1:baseline", "the baseline's answers by id: a `file` or a set's name")
	fs.StringVar(&f.model, "model-name", "", "the judged model's `name` in the judgments (default: the results file's name, or the run's mode-N-D)")
	fs.StringVar(&f.template, "judge-template", "", "the judge prompt: a Go template `file`, or Arena-Hard-Auto's judge configuration (.yaml)")
	fs.StringVar(&f.out, "out", "", "write the judgments to this JSON Lines `file`, in Arena-Hard-Auto's format; questions already there are not judged again")
	fs.IntVar(&f.rounds, "resamples", 100, "bootstrap rounds of the interval (Arena-Hard-Auto: 100)")
	fs.Uint64Var(&f.seed, "seed", 0, "`seed` of the bootstrap")
	fs.BoolVar(&f.json, "json", false, "print the figures as one JSON line instead of a readable report")
	f.judge.register(fs, 4096)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if (f.judgments == "") == !f.src.given(pos) {
		return usagef("give either --judgments FILE|DIR (to score judgments) or --results FILE or --store S RUN (to judge answers)")
	}
	if f.judgments == "" {
		if err := f.src.set(pos, fs.Name()); err != nil {
			return err
		}
	}
	if f.rounds < 1 {
		return usagef("--resamples must be at least 1")
	}
	sum := arenaSummary{Command: "arena-hard"}
	var js []eval.ArenaJudgment
	var failure error
	if f.judgments != "" {
		js, err = readJudgments(f.judgments)
	} else {
		js, failure, err = judgeArena(ctx, env, &f, &sum)
	}
	if err != nil {
		return err
	}
	if len(js) == 0 {
		return errors.New("no judgments: nothing to score")
	}
	if sum.Judge == "" {
		sum.Judge = js[0].Judge
	}
	var unscored []string
	for _, s := range eval.ArenaHardScores(js, eval.ArenaOptions{Rounds: f.rounds, Seed: f.seed}) {
		sum.Scores = append(sum.Scores, arenaFigure{ArenaScore: s, Display: s.String()})
		if s.Battles == 0 {
			unscored = append(unscored, s.Model)
		}
	}
	if len(unscored) > 0 {
		failure = errors.Join(failure, fmt.Errorf("no game of %s got a verdict Arena-Hard scores (A>>B, A>B, A=B, B>A, B>>A): no score (--out FILE keeps the judge's replies)",
			strings.Join(unscored, ", ")))
	}
	ef := evalFlags{json: f.json}
	return ef.finish(env, sum, func(w io.Writer) { printArena(w, sum) }, failure)
}

// readJudgments reads a judgment file, or every .jsonl file of a directory.
func readJudgments(path string) ([]eval.ArenaJudgment, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, inputError("judgments", err)
	}
	files := []string{path}
	if st.IsDir() {
		if files, err = filepath.Glob(filepath.Join(path, "*.jsonl")); err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, usagef("--judgments %s: no .jsonl files in the directory", path)
		}
		slices.Sort(files)
	}
	var all []eval.ArenaJudgment
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, inputError("judgments", err)
		}
		js, err := eval.ReadArenaJudgments(data, f)
		if err != nil {
			return nil, fmt.Errorf("--judgments: %w", err)
		}
		all = append(all, js...)
	}
	return all, nil
}

// loadArenaPrompt reads --judge-template: Arena-Hard-Auto's judge
// configuration (.yaml, .yml) or a Go template.
func loadArenaPrompt(path string, env *environ) (*eval.ArenaPrompt, error) {
	if path == "" {
		return eval.DefaultArenaPrompt(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, inputError("judge-template", err)
	}
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".yaml" && ext != ".yml" {
		p, err := eval.ParseArenaTemplate(string(data))
		if err != nil {
			return nil, usagef("--judge-template %s: %v", path, err)
		}
		return p, nil
	}
	var cfg struct {
		SystemPrompt   string    `yaml:"system_prompt"`
		PromptTemplate yaml.Node `yaml:"prompt_template"`
		// Attempts is how many times v0.1 asks when a reply has no
		// verdict label (2 in its judge_config.yaml).
		Attempts *int `yaml:"number_of_judgment_attempts"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return nil, usagef("--judge-template %s: %v", path, err)
	}
	var user string
	var list []string
	switch {
	case cfg.PromptTemplate.Kind == yaml.ScalarNode:
		user = cfg.PromptTemplate.Value
	case cfg.PromptTemplate.Decode(&list) == nil && len(list) == 1:
		user = list[0]
	case cfg.PromptTemplate.Kind == 0:
		return nil, usagef("--judge-template %s: no prompt_template", path)
	default:
		return nil, usagef("--judge-template %s:%d: prompt_template: want a string, or a list of one string", path, cfg.PromptTemplate.Line)
	}
	if cfg.SystemPrompt == "" {
		fmt.Fprintf(env.stderr, "warning: --judge-template %s has no system_prompt: the judge gets the user prompt alone\n", path)
	}
	p, err := eval.NewArenaPromptFormat(cfg.SystemPrompt, user)
	if err != nil {
		return nil, usagef("--judge-template %s: %v", path, err)
	}
	if cfg.Attempts != nil {
		p = p.WithAttempts(*cfg.Attempts)
	}
	return p, nil
}

// judgeArena judges the results against the baseline's answers, reusing
// the judgments of an earlier --out, and returns the judgments in the
// questions' order; failure is the error of failed requests.
func judgeArena(ctx context.Context, env *environ, f *arenaFlags, sum *arenaSummary) ([]eval.ArenaJudgment, error, error) {
	if err := f.judge.check(); err != nil {
		return nil, nil, err
	}
	prompt, err := loadArenaPrompt(f.template, env)
	if err != nil {
		return nil, nil, err
	}
	items, err := arenaItems(ctx, env, f)
	if err != nil {
		return nil, nil, err
	}
	j := &eval.ArenaJudge{Prompt: prompt, Sampling: f.judge.sampling(), ModelName: cmp.Or(f.model, f.src.name())}
	done, todo, err := reuseJudgments(f.out, j, items)
	if err != nil {
		return nil, nil, err
	}
	sum.Reused = len(done)
	if len(todo) > 0 {
		client, err := f.judge.client(ctx, env)
		if err != nil {
			return nil, nil, err
		}
		j.Model, j.JudgeName = client, client.Model()
		sum.Judge = client.Model()
		if err := runArenaJudge(ctx, j, todo, f, done); err != nil {
			return nil, nil, err
		}
		sum.Judged = len(todo)
	}
	var js []eval.ArenaJudgment
	for _, it := range items {
		if a, ok := done[it.ID]; ok {
			js = append(js, a)
			for _, g := range a.Games {
				if g == nil || g.Error != "" {
					sum.RequestErrors++
				}
			}
		}
	}
	if f.out != "" {
		if err := writeJSONLines(f.out, js); err != nil {
			return nil, nil, err
		}
	}
	var failure error
	if sum.RequestErrors > 0 {
		failure = fmt.Errorf("%s failed; run the same command again (with --out) to retry %s",
			plural(sum.RequestErrors, "judge request", "judge requests"), pick(sum.RequestErrors, "it", "them"))
	}
	return js, failure, nil
}

// arenaItems reads the questions, the answers and the baseline's answers.
func arenaItems(ctx context.Context, env *environ, f *arenaFlags) ([]eval.ArenaItem, error) {
	if err := resolveDataFlags(ctx, env, map[string]*string{"data": &f.data, "baseline": &f.baseline}); err != nil {
		return nil, err
	}
	qs, err := readQuestions(f.data, env)
	if err != nil {
		return nil, err
	}
	a, err := readAnswers(ctx, env, &f.src)
	if err != nil {
		return nil, err
	}
	a.warn(env, nil)
	base, err := readBaseline(f.baseline, "", "", env)
	if err != nil {
		return nil, err
	}
	answers := a.responses()
	missingAnswers(env, qs, answers, base)
	var items []eval.ArenaItem
	for _, q := range qs {
		ans, ok1 := answers[q.id]
		b, ok2 := base[q.id]
		if ok1 && ok2 {
			items = append(items, eval.ArenaItem{ID: q.id, Question: q.prompt, Answer: ans, Baseline: b})
		}
	}
	if len(items) == 0 {
		return nil, errors.New("no question has both an answer and the baseline's: nothing to judge")
	}
	return items, nil
}

// reuseJudgments returns the judgments of an earlier --out that are still
// good (same model, same prompts, no failed game), by id, and the items
// left to judge.
func reuseJudgments(path string, j *eval.ArenaJudge, items []eval.ArenaItem) (map[string]eval.ArenaJudgment, []eval.ArenaItem, error) {
	done := map[string]eval.ArenaJudgment{}
	var prev []eval.ArenaJudgment
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, nil, fmt.Errorf("--out: %w", err)
		default:
			if prev, err = eval.ReadArenaJudgments(data, path); err != nil {
				return nil, nil, fmt.Errorf("--out (reading the judgments of an earlier run): %w", err)
			}
		}
	}
	last := map[string]eval.ArenaJudgment{}
	for _, p := range prev {
		if p.Model == j.ModelName {
			last[p.ID()] = p
		}
	}
	var todo []eval.ArenaItem
	for _, it := range items {
		p, ok := last[it.ID]
		prompts, err := j.UserPrompts(it)
		if err != nil {
			return nil, nil, err
		}
		if ok && !p.Failed() && p.Games[0].UserPrompt == prompts[0] && p.Games[1].UserPrompt == prompts[1] {
			done[it.ID] = p
			continue
		}
		todo = append(todo, it)
	}
	return done, todo, nil
}

// runArenaJudge judges items into done, appending each judgment to --out as
// it comes.
func runArenaJudge(ctx context.Context, j *eval.ArenaJudge, items []eval.ArenaItem, f *arenaFlags, done map[string]eval.ArenaJudgment) error {
	write := func(eval.ArenaJudgment) error { return nil }
	if f.out != "" {
		out, err := os.OpenFile(f.out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer out.Close()
		write = func(a eval.ArenaJudgment) error {
			if err := printJSONLine(out, a); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			return nil
		}
	}
	err := j.Run(ctx, items, f.judge.concurrency, func(a eval.ArenaJudgment) error {
		done[a.ID()] = a
		return write(a)
	})
	if err != nil {
		return fmt.Errorf("judging: %w", err)
	}
	return nil
}

func printArena(w io.Writer, s arenaSummary) {
	fmt.Fprint(w, "Arena-Hard-Auto v0.1")
	if s.Judge != "" {
		fmt.Fprintf(w, ", judge %s", s.Judge)
	}
	if s.Judged+s.Reused > 0 {
		fmt.Fprintf(w, " (%d questions judged now, %d from --out)", s.Judged, s.Reused)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "model\tscore (95% CI)\tquestions\tgames\tnull games\tbattles")
	for _, f := range s.Scores {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", f.Model, f.Display, f.Questions, f.Games, f.NullGames, f.Battles)
	}
	tw.Flush()
	for _, f := range s.Scores {
		var parts []string
		for _, l := range []string{eval.LabelAMuchBetter, eval.LabelABetter, eval.LabelTie, eval.LabelBBetter, eval.LabelBMuchBetter} {
			parts = append(parts, fmt.Sprintf("%s %d", l, f.Verdicts[l]))
		}
		fmt.Fprintf(w, "verdicts of %s (A = the model, B = the baseline): %s\n", f.Model, strings.Join(parts, ", "))
	}
	if s.RequestErrors > 0 {
		fmt.Fprintf(w, "failed judge requests: %d\n", s.RequestErrors)
	}
}
