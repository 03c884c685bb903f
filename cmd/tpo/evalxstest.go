package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/eval"
)

const evalXSTestUsage = `usage: tpo eval xstest --results FILE --data FILE [flags]
       tpo eval xstest --store S --data FILE [flags] RUN

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
	items, ans, unknown, err := readGraded(ctx, env, *data, &ef.src, func(it eval.XSTestItem) string { return it.ID })
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
