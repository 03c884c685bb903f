package eval

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest"
)

var (
	answerARe = regexp.MustCompile(`(?s)<answer_a>\n(.*?)\n</answer_a>`)
	answerBRe = regexp.MustCompile(`(?s)<answer_b>\n(.*?)\n</answer_b>`)
)

// judgeAnswers returns the answers shown as A and as B in a judge prompt.
func judgeAnswers(t *testing.T, req tpo.GenerateRequest) (a, b string) {
	t.Helper()
	user := req.Messages[1].Content
	ma, mb := answerARe.FindStringSubmatch(user), answerBRe.FindStringSubmatch(user)
	if ma == nil || mb == nil {
		t.Fatalf("judge prompt without both answers:\n%s", user)
	}
	return ma[1], mb[1]
}

func TestJudgeRun(t *testing.T) {
	// The judge prefers the answer containing "good"; with none or both it
	// calls a tie, except that "mute" answers get a reply without verdict
	// and "broken" ones a request error.
	var mu sync.Mutex
	seen := map[string]int{}
	pol := &tpotest.Policy{
		Respond: func(call int, req tpo.GenerateRequest, _ int) string {
			if len(req.Messages) > 2 {
				return "still thinking" // the reminder did not help
			}
			a, b := judgeAnswers(t, req)
			mu.Lock()
			seen[a+"|"+b]++
			mu.Unlock()
			if strings.Contains(a+b, "mute") {
				return "Both are fine."
			}
			ga, gb := strings.Contains(a, "good"), strings.Contains(b, "good")
			switch {
			case ga && !gb:
				return "A is right.\n[[A]]"
			case gb && !ga:
				return "B is right.\n[[B]]"
			}
			return "[[C]]"
		},
		Err: func(_ int, req tpo.GenerateRequest) error {
			if strings.Contains(req.Messages[1].Content, "broken") {
				return errors.New("server down")
			}
			return nil
		},
	}
	items := []PairItem{
		{ID: "1", Question: "q1", A: "good answer", B: "bad"},
		{ID: "2", Question: "q2", A: "bad", B: "good one"},
		{ID: "3", Question: "q3", A: "plain", B: "plain too"},
		{ID: "4", Question: "q4", A: "mute", B: "x"},
		{ID: "5", Question: "q5", A: "broken", B: "good"},
	}
	j := &PairJudge{Model: pol}
	got := map[string]PairVerdict{}
	err := j.Run(context.Background(), items, 3, func(v PairVerdict) error {
		if _, dup := got[v.ID]; dup {
			t.Errorf("item %s reported twice", v.ID)
		}
		got[v.ID] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		a, b     Outcome
		unparsed int
		failed   bool
	}{
		"1": {AWins, AWins, 0, false},
		"2": {BWins, BWins, 0, false},
		"3": {Tie, Tie, 0, false},
		"4": {Unknown, Unknown, 2, false},
		"5": {Unknown, Unknown, 0, true},
	}
	for id, w := range want {
		g := got[id]
		if g.AFirst != w.a || g.BFirst != w.b || g.Unparsed != w.unparsed || g.Failed() != w.failed {
			t.Errorf("item %s: got a_first %v b_first %v unparsed %d failed %v; want %v %v %d %v",
				id, g.AFirst, g.BFirst, g.Unparsed, g.Failed(), w.a, w.b, w.unparsed, w.failed)
		}
	}
	// Both orders were asked for every judged item.
	for _, it := range items[:4] {
		if seen[it.A+"|"+it.B] != 1 || seen[it.B+"|"+it.A] != 1 {
			t.Errorf("item %s: orders asked %d and %d times, want 1 and 1", it.ID, seen[it.A+"|"+it.B], seen[it.B+"|"+it.A])
		}
	}
	if g := got["4"]; g.Requests != 4 || g.RawAFirst != "still thinking" {
		t.Errorf("mute item: %d requests, raw %q; want 4 (one reminder per order), \"still thinking\"", g.Requests, g.RawAFirst)
	}
	if g := got["1"]; g.LenA != len("good answer") || g.LenB != 3 {
		t.Errorf("lengths %d, %d; want %d, 3", g.LenA, g.LenB, len("good answer"))
	}
	for _, c := range pol.Calls() {
		if c.Sampling != DefaultJudgeSampling || c.N != 1 || c.Stage != StageJudge {
			t.Fatalf("request sampling %+v n %d stage %q; want %+v, 1, judge", c.Sampling, c.N, c.Stage, DefaultJudgeSampling)
		}
	}
}

func TestJudgeRunReminderHelps(t *testing.T) {
	pol := &tpotest.Policy{Respond: func(call int, req tpo.GenerateRequest, _ int) string {
		if len(req.Messages) == 4 && req.Messages[3].Content == verdictReminder {
			return "[[B]]"
		}
		return "no idea"
	}}
	var got []PairVerdict
	err := (&PairJudge{Model: pol}).Run(context.Background(), []PairItem{{ID: "x", Question: "q", A: "a", B: "b"}}, 1,
		func(v PairVerdict) error { got = append(got, v); return nil })
	if err != nil {
		t.Fatal(err)
	}
	// [[B]] in both orders: B wins when A is first, A wins when B is first.
	if len(got) != 1 || got[0].AFirst != BWins || got[0].BFirst != AWins || got[0].Unparsed != 0 || got[0].Requests != 4 {
		t.Errorf("got %+v; want a_first B, b_first A, 0 unparsed, 4 requests", got)
	}
}

func TestJudgeRunDoneError(t *testing.T) {
	pol := &tpotest.Policy{Respond: func(int, tpo.GenerateRequest, int) string { return "[[A]]" }}
	stop := errors.New("stop")
	items := make([]PairItem, 20)
	for i := range items {
		items[i] = PairItem{ID: string(rune('a' + i)), Question: "q", A: "a", B: "b"}
	}
	calls := 0
	err := (&PairJudge{Model: pol}).Run(context.Background(), items, 2, func(PairVerdict) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("got err %v after %d calls; want %v after 1", err, calls, stop)
	}
}

func TestJudgeRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pol := &tpotest.Policy{}
	err := (&PairJudge{Model: pol}).Run(ctx, []PairItem{{ID: "1"}}, 1, func(PairVerdict) error {
		t.Error("done called after cancel")
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestReuseVerdicts(t *testing.T) {
	j := &PairJudge{}
	pairs := []PairItem{{ID: "same", A: "aa", B: "bbb"}, {ID: "failed", A: "a", B: "b"}, {ID: "longer", A: "aaaa", B: "b"}, {ID: "new", A: "x", B: "y"}}
	v := func(id string, a, b int, o Outcome, failed string) PairVerdict {
		return PairVerdict{Judgement: Judgement{ID: id, LenA: a, LenB: b, AFirst: o, BFirst: o.Swap()}, ErrAFirst: failed}
	}
	prev := []PairVerdict{v("same", 2, 3, AWins, ""), v("failed", 1, 1, Tie, "500"), v("longer", 1, 1, BWins, ""), v("gone", 1, 1, Tie, "")}
	verdicts := map[string]PairVerdict{}
	todo := j.ReuseVerdicts(prev, pairs, verdicts)
	var ids []string
	for _, p := range todo {
		ids = append(ids, p.ID)
	}
	if got := strings.Join(ids, ","); got != "failed,longer,new" {
		t.Errorf("to judge: %s, want failed,longer,new", got)
	}
	if len(verdicts) != 1 || verdicts["same"].AFirst != AWins {
		t.Errorf("kept %+v, want the verdict of same only", verdicts)
	}
}
