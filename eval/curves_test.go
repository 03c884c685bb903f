package eval

import (
	"math"
	"testing"

	"github.com/tpoproject/tpo"
)

func cands(scores ...float64) []tpo.Candidate {
	out := make([]tpo.Candidate, len(scores))
	for i, s := range scores {
		out[i] = tpo.Candidate{Text: "r", Score: s}
	}
	return out
}

func TestRewardCurve(t *testing.T) {
	results := []tpo.Result{
		{ID: "1", Score: 5, InitialBest: 3, Steps: []tpo.Step{
			{Step: 1, Candidates: cands(2, 5)}, // out of order on purpose
			{Step: 0, Candidates: cands(1, 3)},
			{Step: 2, Candidates: cands(4)},
		}},
		{ID: "2", Score: 6, InitialBest: 4, Steps: []tpo.Step{
			{Step: 0, Candidates: cands(0, -2, 4)},
			{Step: 1}, // an iteration that produced nothing
			{Step: 2, Candidates: cands(6, 2, math.NaN())},
		}},
		{ID: "3", Score: 10, InitialBest: 10, Steps: []tpo.Step{
			{Step: 0, Candidates: cands(10)},
		}},
		{ID: "4", Error: "boom", Score: 100, Steps: []tpo.Step{{Step: 0, Candidates: cands(100)}}},
	}
	c := RewardCurve(results)
	want := []CurvePoint{
		{Step: 0, MeanScore: (2 + 2.0/3 + 10) / 3, MeanItems: 3, BestSoFar: 17.0 / 3, BestItems: 3},
		{Step: 1, MeanScore: 3.5, MeanItems: 1, BestSoFar: 4.5, BestItems: 2},
		{Step: 2, MeanScore: 4, MeanItems: 2, BestSoFar: 5.5, BestItems: 2},
	}
	if len(c.Points) != len(want) {
		t.Fatalf("points = %+v, want %+v", c.Points, want)
	}
	for i, w := range want {
		g := c.Points[i]
		if g.Step != w.Step || g.MeanItems != w.MeanItems || g.BestItems != w.BestItems ||
			!near(g.MeanScore, w.MeanScore, 1e-12) || !near(g.BestSoFar, w.BestSoFar, 1e-12) {
			t.Errorf("point %d = %+v, want %+v", i, g, w)
		}
	}
	if c.Items != 3 || c.Failed != 1 {
		t.Errorf("items %d, failed %d; want 3, 1", c.Items, c.Failed)
	}
	if !near(c.MeanFinal, 7, 1e-12) || !near(c.MeanInitialBest, 17.0/3, 1e-12) || !near(c.MeanGain, 4.0/3, 1e-12) {
		t.Errorf("final %v, initial best %v, gain %v; want 7, 17/3, 4/3", c.MeanFinal, c.MeanInitialBest, c.MeanGain)
	}
	if results[0].Steps[0].Step != 1 {
		t.Error("RewardCurve reordered the caller's steps")
	}
}

func TestRewardCurveEmpty(t *testing.T) {
	c := RewardCurve(nil)
	if c.Items != 0 || len(c.Points) != 0 || c.Points == nil || c.MeanFinal != 0 {
		t.Errorf("RewardCurve(nil) = %+v", c)
	}
}

// The best-so-far curve never falls, whatever the candidates.
func TestRewardCurveBestMonotone(t *testing.T) {
	var results []tpo.Result
	for i := range 5 {
		r := tpo.Result{ID: string(rune('a' + i))}
		for k := range 4 {
			r.Steps = append(r.Steps, tpo.Step{Step: k, Candidates: cands(float64((i*7+k*3)%5), float64((i+k)%3)-1)})
		}
		results = append(results, r)
	}
	c := RewardCurve(results)
	for k := 1; k < len(c.Points); k++ {
		if c.Points[k].BestSoFar < c.Points[k-1].BestSoFar {
			t.Errorf("best so far fell at step %d: %+v", k, c.Points)
		}
	}
}
