package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/tpoproject/tpo/eval"
)

const evalMathUsage = `usage: tpo eval math --results FILE --data FILE [flags]
       tpo eval math --store S --data FILE [flags] RUN

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
	items, ans, unknown, err := readGraded(ctx, env, *data, &ef.src, func(it eval.MathItem) string { return it.ID })
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
