package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/dataset"
	"github.com/tpoproject/tpo/eval"
	"github.com/tpoproject/tpo/results"
)

const evalRewardUsage = `usage: tpo eval reward --results FILE [--reward vllm|tei|judge|exec ...] [flags]
       tpo eval reward --store S [--reward ...] [flags] RUN

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
	err := ef.src.each(ctx, env, func(l results.Line) error {
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
		return err
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
			return usagef("%s holds no stored scores; give --reward to score the answers", &ef.src)
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
