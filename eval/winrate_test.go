package eval

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
)

func TestJudgementScore(t *testing.T) {
	tests := []struct {
		a, b Outcome
		want float64
		ok   bool
	}{
		{AWins, AWins, 1, true},
		{AWins, BWins, 0.5, true},
		{BWins, AWins, 0.5, true},
		{AWins, Tie, 0.75, true},
		{Tie, Tie, 0.5, true},
		{BWins, Tie, 0.25, true},
		{BWins, BWins, 0, true},
		{AWins, Unknown, 1, true},
		{Unknown, Tie, 0.5, true},
		{Unknown, Unknown, 0, false},
	}
	for _, tt := range tests {
		got, ok := Judgement{AFirst: tt.a, BFirst: tt.b}.Score()
		if got != tt.want || ok != tt.ok {
			t.Errorf("Score(%v, %v) = %v, %v; want %v, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
		}
	}
}

func TestOutcomeSwapAndText(t *testing.T) {
	for _, o := range []Outcome{Unknown, AWins, BWins, Tie} {
		if o.Swap().Swap() != o {
			t.Errorf("%v.Swap().Swap() = %v", o, o.Swap().Swap())
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		var back Outcome
		if err := json.Unmarshal(b, &back); err != nil || back != o {
			t.Errorf("round trip of %v via %s = %v, %v", o, b, back, err)
		}
	}
	if AWins.Swap() != BWins || Tie.Swap() != Tie {
		t.Errorf("Swap: A -> %v, tie -> %v", AWins.Swap(), Tie.Swap())
	}
	var o Outcome
	if err := o.UnmarshalText([]byte("X")); err == nil {
		t.Error("UnmarshalText(X) succeeded")
	}
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestPairwiseAllWins(t *testing.T) {
	var js []Judgement
	for i := range 50 {
		js = append(js, Judgement{AFirst: AWins, BFirst: AWins, LenA: 100 + i, LenB: 120 - i})
	}
	rep := Pairwise(js, PairwiseOptions{Seed: 1})
	if rep.WinRate != 1 || rep.CILow != 1 || rep.CIHigh != 1 {
		t.Errorf("win rate %v [%v, %v], want 1 [1, 1]", rep.WinRate, rep.CILow, rep.CIHigh)
	}
	if rep.Wins != 100 || rep.Losses != 0 || rep.Ties != 0 || rep.Judgements != 100 || rep.Items != 50 {
		t.Errorf("counts %+v", rep)
	}
	if rep.LengthAdjusted < 0.99 || rep.LengthAdjusted > 1 {
		t.Errorf("LC win rate %v, want in [0.99, 1]", rep.LengthAdjusted)
	}
}

func TestPairwiseSymmetric(t *testing.T) {
	var js []Judgement
	for i := range 40 {
		d := 10 * (i + 1)
		// A wins when longer, loses by the mirror image; plus a tie.
		js = append(js,
			Judgement{AFirst: AWins, BFirst: AWins, LenA: 500 + d, LenB: 500},
			Judgement{AFirst: BWins, BFirst: BWins, LenA: 500, LenB: 500 + d},
			Judgement{AFirst: Tie, BFirst: AWins, LenA: 300, LenB: 300 + d},
			Judgement{AFirst: Tie, BFirst: BWins, LenA: 300 + d, LenB: 300},
		)
	}
	js = append(js, Judgement{ID: "unjudged"})
	rep := Pairwise(js, PairwiseOptions{Seed: 7})
	if rep.WinRate != 0.5 || !near(rep.LengthAdjusted, 0.5, 1e-9) {
		t.Errorf("win rate %v, LC %v; want 0.5, 0.5", rep.WinRate, rep.LengthAdjusted)
	}
	if rep.Skipped != 1 || rep.Items != 160 || rep.Wins != 120 || rep.Losses != 120 || rep.Ties != 80 {
		t.Errorf("counts: items %d skipped %d wins %d losses %d ties %d", rep.Items, rep.Skipped, rep.Wins, rep.Losses, rep.Ties)
	}
	if !(rep.CILow < 0.5 && rep.CIHigh > 0.5) {
		t.Errorf("interval [%v, %v] does not contain 0.5", rep.CILow, rep.CIHigh)
	}
	if rep.Length.Slope <= 0 || !rep.Length.Converged {
		t.Errorf("length model %+v: want a converged positive slope", rep.Length)
	}
}

// lengthBiased makes n judgements where the judge prefers whichever
// response is longer (with some noise) and A is usually the longer one.
func lengthBiased(n int, seed uint64) []Judgement {
	rng := rand.New(rand.NewPCG(seed, 1))
	js := make([]Judgement, n)
	for i := range js {
		d := int(rng.NormFloat64()*300 + 250)
		p := sigmoid(4 * math.Tanh(float64(d)/300))
		pick := func() Outcome {
			if rng.Float64() < p {
				return AWins
			}
			return BWins
		}
		js[i] = Judgement{AFirst: pick(), BFirst: pick(), LenA: 1000 + d, LenB: 1000}
	}
	return js
}

func TestPairwiseLengthControlled(t *testing.T) {
	rep := Pairwise(lengthBiased(2000, 3), PairwiseOptions{Seed: 1})
	t.Logf("raw %.3f [%.3f, %.3f], LC %.3f, model %+v", rep.WinRate, rep.CILow, rep.CIHigh, rep.LengthAdjusted, rep.Length)
	if rep.WinRate < 0.75 {
		t.Errorf("raw win rate %v, want above 0.75 (A is usually longer)", rep.WinRate)
	}
	if !near(rep.LengthAdjusted, 0.5, 0.08) {
		t.Errorf("LC win rate %v, want about 0.5 (length is the only advantage)", rep.LengthAdjusted)
	}
	if rep.LengthAdjusted > rep.WinRate-0.2 {
		t.Errorf("LC win rate %v not well below raw %v", rep.LengthAdjusted, rep.WinRate)
	}
}

func TestPairwiseBootstrap(t *testing.T) {
	small := lengthBiased(100, 5)
	large := lengthBiased(1600, 5)
	a := Pairwise(small, PairwiseOptions{Seed: 42, Resamples: 2000})
	b := Pairwise(small, PairwiseOptions{Seed: 42, Resamples: 2000})
	if a != b {
		t.Errorf("same seed, different reports:\n%+v\n%+v", a, b)
	}
	c := Pairwise(small, PairwiseOptions{Seed: 43, Resamples: 2000})
	if c.CILow == a.CILow && c.CIHigh == a.CIHigh {
		t.Errorf("seeds 42 and 43 gave the same interval [%v, %v]", a.CILow, a.CIHigh)
	}
	if !(a.CILow <= a.WinRate && a.WinRate <= a.CIHigh) {
		t.Errorf("interval [%v, %v] does not contain %v", a.CILow, a.CIHigh, a.WinRate)
	}
	l := Pairwise(large, PairwiseOptions{Seed: 42, Resamples: 2000})
	if !(l.CILow <= l.WinRate && l.WinRate <= l.CIHigh) {
		t.Errorf("interval [%v, %v] does not contain %v", l.CILow, l.CIHigh, l.WinRate)
	}
	ws, wl := a.CIHigh-a.CILow, l.CIHigh-l.CILow
	// 16 times the data: the width should shrink about 4 times.
	if wl > ws/2.5 {
		t.Errorf("interval width %v with 1600 items, %v with 100: want it to narrow about 4x", wl, ws)
	}
	// A rough check of the width: the standard error of a mean of scores in
	// [0, 1] times 2*1.96.
	sd := 0.0
	scores := make([]float64, 0, len(large))
	for _, j := range large {
		s, _ := j.Score()
		scores = append(scores, s)
	}
	m := mean(scores)
	for _, s := range scores {
		sd += (s - m) * (s - m)
	}
	sd = math.Sqrt(sd / float64(len(scores)))
	if want := 2 * 1.96 * sd / math.Sqrt(float64(len(scores))); !near(wl, want, want*0.2) {
		t.Errorf("interval width %v, want about %v", wl, want)
	}
}

func TestPairwiseEmpty(t *testing.T) {
	rep := Pairwise([]Judgement{{ID: "x"}}, PairwiseOptions{})
	if rep.Items != 0 || rep.Skipped != 1 || rep.WinRate != 0 || math.IsNaN(rep.LengthAdjusted) {
		t.Errorf("report %+v", rep)
	}
}

func TestFitLogisticRecovers(t *testing.T) {
	var x [][]float64
	var y []float64
	for i := range 201 {
		v := float64(i-100) / 50
		x = append(x, []float64{1, v})
		y = append(y, sigmoid(0.5+2*v)) // fractional targets: the exact fit is the truth
	}
	beta, _, ok := fitLogistic(x, y, 1e-9)
	if !ok || !near(beta[0], 0.5, 1e-5) || !near(beta[1], 2, 1e-5) {
		t.Errorf("fit = %v (converged %v), want [0.5 2]", beta, ok)
	}
}

func TestParseVerdict(t *testing.T) {
	tests := []struct {
		in   string
		want Outcome
	}{
		{"A is more accurate.\n\n[[A]]", AWins},
		{"[[B]]", BWins},
		{"Both are fine. [[C]]", Tie},
		{"[[ tie ]]", Tie},
		{"[[a]]", AWins},
		{"My final verdict is [[A>>B]].", AWins},
		{"[[B>A]]", BWins},
		{"[[A<B]]", BWins},
		{"[[A=B]]", Tie},
		{"Output [[A]] if A is better or [[B]] if B is better.\nVerdict: [[B]]", BWins},
		{"**Final verdict:** Answer B", BWins},
		{"Verdict: A", AWins},
		{"Winner - tie", Tie},
		{"Verdict: Assistant A is better.", AWins},
	}
	for _, tt := range tests {
		got, err := ParseVerdict(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseVerdict(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "I like both.", "[[D]]", "[[AB]]", "Answer A is clearly better"} {
		if got, err := ParseVerdict(in); !errors.Is(err, ErrNoVerdict) || got != Unknown {
			t.Errorf("ParseVerdict(%q) = %v, %v; want ErrNoVerdict", in, got, err)
		}
	}
}

func FuzzParseVerdict(f *testing.F) {
	for _, s := range []string{"[[A]]", "[[B]]", "[[C]]", "[[A>>B]]", "Verdict: B", "[[", "]]", "[[ tie ]] [[A]]", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		o, err := ParseVerdict(in)
		if (err == nil) == (o == Unknown) {
			t.Fatalf("ParseVerdict(%q) = %v, %v: want an outcome xor an error", in, o, err)
		}
		if err == nil {
			// A verdict appended at the end wins.
			if got, err := ParseVerdict(in + "\n[[B]]"); err != nil || got != BWins {
				t.Errorf("ParseVerdict(%q + [[B]]) = %v, %v", in, got, err)
			}
		}
	})
}

func TestJudgeMessages(t *testing.T) {
	msgs, err := JudgeMessages("What is 2+2?", "It is 4.", "Five.")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Role != tpo.RoleSystem || msgs[1].Role != tpo.RoleUser {
		t.Fatalf("messages %+v: want system then user", msgs)
	}
	sys, user := msgs[0].Content, msgs[1].Content
	for _, want := range []string{"[[A]]", "[[B]]", "[[C]]"} {
		if !strings.Contains(sys, want) {
			t.Errorf("system prompt lacks %s", want)
		}
	}
	ia, ib := strings.Index(user, "It is 4."), strings.Index(user, "Five.")
	if !strings.Contains(user, "What is 2+2?") || ia < 0 || ib < 0 || ia > ib {
		t.Errorf("user prompt lacks the question or answers in order:\n%s", user)
	}
	if strings.Contains(user, "&lt;") || strings.Contains(user, "{{") {
		t.Errorf("user prompt is escaped or unrendered:\n%s", user)
	}
	msgs, _ = JudgeMessages("<b>q</b>", "a & b", "c")
	if !strings.Contains(msgs[1].Content, "<b>q</b>") || !strings.Contains(msgs[1].Content, "a & b") {
		t.Errorf("text was escaped:\n%s", msgs[1].Content)
	}
}
