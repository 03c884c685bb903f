package eval

import (
	"cmp"
	"math"
	"slices"

	"github.com/tpoproject/tpo"
)

// CurvePoint is the state of a set of optimizations after step Step.
type CurvePoint struct {
	Step int `json:"step"`
	// MeanScore is the mean over items of the mean score of the candidates
	// produced at this step; MeanItems counts the items that produced any.
	MeanScore float64 `json:"mean_score"`
	MeanItems int     `json:"mean_items"`
	// BestSoFar is the mean over items of the best score in the cache up
	// to and including this step; BestItems counts the items that reached
	// this step (with at least one scored candidate by then).
	BestSoFar float64 `json:"best_so_far"`
	BestItems int     `json:"best_items"`
}

// Curve is the reward curve of a set of results.
type Curve struct {
	// Points holds one point per step number present, in step order.
	Points []CurvePoint `json:"points"`
	// Items counts the results used; Failed those skipped because their
	// Error was set.
	Items  int `json:"items"`
	Failed int `json:"failed"`
	// MeanFinal is the mean of Result.Score, MeanInitialBest the mean of
	// Result.InitialBest (best of N), and MeanGain the mean of Result.Gain.
	MeanFinal       float64 `json:"mean_final"`
	MeanInitialBest float64 `json:"mean_initial_best"`
	MeanGain        float64 `json:"mean_gain"`
}

// RewardCurve computes, for each step k, the mean over items of the mean
// candidate score at step k and the mean over items of the best score seen
// up to step k, plus the mean final score and mean gain over the best
// initial sample. Results with an Error are skipped. Steps are keyed by
// Step.Step; an item that did not reach step k does not count at k, and a
// step with no candidates counts for the best-so-far mean (the best is
// carried over) but not for the mean score. NaN scores are ignored.
func RewardCurve(results []tpo.Result) Curve {
	var c Curve
	type acc struct {
		meanSum, bestSum float64
		meanN, bestN     int
	}
	accs := map[int]*acc{}
	maxStep := -1
	for _, r := range results {
		if r.Error != "" {
			c.Failed++
			continue
		}
		c.Items++
		c.MeanFinal += r.Score
		c.MeanInitialBest += r.InitialBest
		c.MeanGain += r.Gain()

		steps := append([]tpo.Step(nil), r.Steps...)
		slices.SortStableFunc(steps, func(a, b tpo.Step) int { return cmp.Compare(a.Step, b.Step) })
		best, seen := math.Inf(-1), false
		for _, s := range steps {
			a := accs[s.Step]
			if a == nil {
				a = &acc{}
				accs[s.Step] = a
			}
			maxStep = max(maxStep, s.Step)
			sum, n := 0.0, 0
			for _, cand := range s.Candidates {
				if math.IsNaN(cand.Score) {
					continue
				}
				sum += cand.Score
				n++
				if !seen || cand.Score > best {
					best, seen = cand.Score, true
				}
			}
			if n > 0 {
				a.meanSum += sum / float64(n)
				a.meanN++
			}
			if seen {
				a.bestSum += best
				a.bestN++
			}
		}
	}
	if c.Items > 0 {
		n := float64(c.Items)
		c.MeanFinal /= n
		c.MeanInitialBest /= n
		c.MeanGain /= n
	}
	c.Points = []CurvePoint{}
	for k := 0; k <= maxStep; k++ {
		a := accs[k]
		if a == nil {
			continue
		}
		p := CurvePoint{Step: k, MeanItems: a.meanN, BestItems: a.bestN}
		if a.meanN > 0 {
			p.MeanScore = a.meanSum / float64(a.meanN)
		}
		if a.bestN > 0 {
			p.BestSoFar = a.bestSum / float64(a.bestN)
		}
		c.Points = append(c.Points, p)
	}
	return c
}
