package eval

import (
	"context"
	"errors"
	"sync"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/tpoproject/tpo"
)

// DefaultJudgeSampling is what a Judge or a RefusalClassifier sends when
// its Sampling is zero: greedy decoding, with room for a short reasoning
// before the verdict.
var DefaultJudgeSampling = tpo.Sampling{Temperature: 0, TopP: 1, MaxTokens: 1024}

// StageJudge names judge requests for the Generator's accounting.
const StageJudge tpo.Stage = "judge"

// verdictReminder is sent, after the judge's own reply, when that reply
// held no verdict.
const verdictReminder = "I could not find your verdict. Reply with one line only: [[A]], [[B]] or [[C]]."

// PairItem is one item to judge: a question and the answers of systems A
// and B.
type PairItem struct {
	ID       string
	Question string
	A, B     string
}

// PairVerdict is what a Judge found on one PairItem. The embedded
// Judgement holds both outcomes in terms of the systems; the raw replies
// are the judge's last replies in each order, and the errors the failures of
// requests (after the client's own retries) that left an order Unknown.
type PairVerdict struct {
	Judgement
	RawAFirst string `json:"raw_a_first"`
	RawBFirst string `json:"raw_b_first"`
	ErrAFirst string `json:"error_a_first,omitempty"`
	ErrBFirst string `json:"error_b_first,omitempty"`
	// Unparsed counts the orders (0, 1 or 2) whose replies held no verdict
	// even after a reminder.
	Unparsed int `json:"unparsed"`
	// Requests counts the judge requests made, reminders included.
	Requests int `json:"requests"`
}

// Failed reports whether a request of either order failed, so that the
// item is worth judging again.
func (v PairVerdict) Failed() bool { return v.ErrAFirst != "" || v.ErrBFirst != "" }

// PairJudge compares pairs of answers with a judge model, in both presentation
// orders, using JudgeMessages and ParseVerdict.
type PairJudge struct {
	// Model answers the judge's prompts (an *openai.Client, say).
	Model tpo.Generator
	// Sampling is sent with every request; zero means DefaultJudgeSampling.
	Sampling tpo.Sampling
	// Reminders is how many times the judge is asked again, with a short
	// reminder of the format, when its reply holds no verdict. Zero means
	// once; negative means never.
	Reminders int
	// Length measures answers for the length-adjusted estimate; nil
	// counts characters.
	Length func(string) int
}

// Lengths returns the lengths of p's answers as Run records them.
func (j *PairJudge) Lengths(p PairItem) (a, b int) {
	length := j.Length
	if length == nil {
		length = utf8.RuneCountInString
	}
	return length(p.A), length(p.B)
}

// order judges one presentation order: first is shown as Answer A. The
// outcome names positions, not systems. err is a request failure; a reply
// without a verdict gives Unknown, the reply and a nil error.
func (j *PairJudge) order(ctx context.Context, question, first, second string) (o Outcome, raw string, requests int, err error) {
	msgs, err := JudgeMessages(question, first, second)
	if err != nil {
		return Unknown, "", 0, err
	}
	o, _, raw, requests, err = askLabel(ctx, j.Model, j.Sampling, msgs, verdictReminder, j.Reminders, ParseVerdict)
	return o, raw, requests, err
}

// askLabel sends msgs to model and parses the reply with parse; when the
// reply cannot be parsed it sends the reply back with reminder, up to
// reminders times (0 means once, negative never), but not after an
// ambiguous reply (ErrAmbiguousVerdict). It returns the last reply, and ok
// false (with a nil error) when no reply parsed.
func askLabel[T any](ctx context.Context, model tpo.Generator, s tpo.Sampling, msgs []tpo.Message, reminder string, reminders int, parse func(string) (T, error)) (v T, ok bool, raw string, requests int, err error) {
	if s == (tpo.Sampling{}) {
		s = DefaultJudgeSampling
	}
	if reminders == 0 {
		reminders = 1
	}
	for attempt := 0; ; attempt++ {
		gen, err := model.Generate(ctx, tpo.GenerateRequest{Messages: msgs, N: 1, Sampling: s, Stage: StageJudge})
		requests++
		if err == nil && len(gen.Texts) == 0 {
			err = errors.New("the model returned no reply")
		}
		if err != nil {
			return v, false, raw, requests, err
		}
		raw = gen.Texts[0]
		pv, perr := parse(raw)
		if perr == nil {
			return pv, true, raw, requests, nil
		}
		if attempt >= reminders || errors.Is(perr, ErrAmbiguousVerdict) {
			return v, false, raw, requests, nil
		}
		msgs = append(append([]tpo.Message(nil), msgs...),
			tpo.Message{Role: tpo.RoleAssistant, Content: raw},
			tpo.Message{Role: tpo.RoleUser, Content: reminder})
	}
}

// Run judges every item in both orders, with at most concurrency requests
// in flight (at least 1), and calls done with each item's verdict as soon
// as both orders are judged; done is never called concurrently. Request
// failures are recorded in the verdicts, not returned: Run returns ctx's
// error when it is cancelled, or done's first error.
func (j *PairJudge) Run(ctx context.Context, items []PairItem, concurrency int, done func(PairVerdict) error) error {
	verdicts := make([]PairVerdict, len(items))
	for i, it := range items {
		la, lb := j.Lengths(it)
		verdicts[i] = PairVerdict{Judgement: Judgement{ID: it.ID, LenA: la, LenB: lb}}
	}
	play := func(ctx context.Context, i int, swapped bool) func() {
		it := items[i]
		first, second := it.A, it.B
		if swapped {
			first, second = it.B, it.A
		}
		o, raw, n, err := j.order(ctx, it.Question, first, second)
		return func() {
			v := &verdicts[i]
			v.Requests += n
			msg := ""
			if err != nil {
				msg = err.Error()
			} else if o == Unknown {
				v.Unparsed++
			}
			if swapped {
				v.BFirst, v.RawBFirst, v.ErrBFirst = o.Swap(), raw, msg
			} else {
				v.AFirst, v.RawAFirst, v.ErrAFirst = o, raw, msg
			}
		}
	}
	return bothOrders(ctx, len(items), concurrency, play, func(i int) error { return done(verdicts[i]) })
}

// bothOrders plays each of n items in both orders, with at most
// concurrency plays at once, and calls done(i) as soon as both plays of
// item i are recorded. play returns how to record its outcome; records and
// done are called one at a time, and done not again once it returned an
// error. bothOrders returns ctx's error when it is cancelled, or done's
// first error.
func bothOrders(ctx context.Context, n, concurrency int, play func(ctx context.Context, i int, swapped bool) (record func()), done func(i int) error) error {
	var (
		mu     sync.Mutex
		played = make([]int, n)
		failed error
	)
	return forEach(ctx, 2*n, concurrency, func(ctx context.Context, k int) error {
		i := k / 2
		record := play(ctx, i, k%2 == 1)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		mu.Lock()
		defer mu.Unlock()
		if failed != nil {
			return failed
		}
		record()
		if played[i]++; played[i] < 2 {
			return nil
		}
		failed = done(i)
		return failed
	})
}

// forEach calls fn for 0..n-1 with at most limit calls at once, in index
// order of starting, and returns the first error. It ends when every
// started call has returned.
func forEach(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(limit, 1))
	for i := range n {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return fn(gctx, i) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// ReuseVerdicts keeps, in verdicts, the verdicts of an earlier run (prev)
// that still hold, and returns the pairs still to judge: those not judged
// before, those whose requests failed, and those whose answers changed
// length since.
func (j *PairJudge) ReuseVerdicts(prev []PairVerdict, pairs []PairItem, verdicts map[string]PairVerdict) []PairItem {
	last := make(map[string]PairVerdict, len(prev))
	for _, v := range prev {
		last[v.ID] = v
	}
	var todo []PairItem
	for _, p := range pairs {
		v, ok := last[p.ID]
		lenA, lenB := j.Lengths(p)
		if !ok || v.Failed() || v.LenA != lenA || v.LenB != lenB {
			todo = append(todo, p)
			continue
		}
		verdicts[p.ID] = v
	}
	return todo
}
