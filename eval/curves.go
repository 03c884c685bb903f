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
// carried over) but not for the mean score. NaN scores and negative step
// numbers are ignored.
func RewardCurve(results []tpo.Result) Curve {
	var b CurveBuilder
	for _, r := range results {
		b.Add(r)
	}
	return b.Curve()
}

// CurveBuilder computes the Curve of RewardCurve from results added one at
// a time, so that a large results file need not be held in memory. The
// zero value is ready to use.
type CurveBuilder struct {
	items, failed            int
	final, initialBest, gain float64
	steps                    map[int]*curveAcc
}

type curveAcc struct {
	meanSum, bestSum float64
	meanN, bestN     int
}

// Add adds one result.
func (b *CurveBuilder) Add(r tpo.Result) {
	if r.Error != "" {
		b.failed++
		return
	}
	b.items++
	b.final += r.Score
	b.initialBest += r.InitialBest
	b.gain += r.Gain()
	if b.steps == nil {
		b.steps = map[int]*curveAcc{}
	}
	steps := slices.Clone(r.Steps)
	slices.SortStableFunc(steps, func(x, y tpo.Step) int { return cmp.Compare(x.Step, y.Step) })
	best, seen := math.Inf(-1), false
	for _, s := range steps {
		if s.Step < 0 {
			continue
		}
		a := b.steps[s.Step]
		if a == nil {
			a = &curveAcc{}
			b.steps[s.Step] = a
		}
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

// Curve returns the curve of the results added so far.
func (b *CurveBuilder) Curve() Curve {
	c := Curve{Items: b.items, Failed: b.failed, Points: make([]CurvePoint, 0, len(b.steps))}
	if b.items > 0 {
		n := float64(b.items)
		c.MeanFinal, c.MeanInitialBest, c.MeanGain = b.final/n, b.initialBest/n, b.gain/n
	}
	for k, a := range b.steps {
		p := CurvePoint{Step: k, MeanItems: a.meanN, BestItems: a.bestN}
		if a.meanN > 0 {
			p.MeanScore = a.meanSum / float64(a.meanN)
		}
		if a.bestN > 0 {
			p.BestSoFar = a.bestSum / float64(a.bestN)
		}
		c.Points = append(c.Points, p)
	}
	slices.SortFunc(c.Points, func(x, y CurvePoint) int { return cmp.Compare(x.Step, y.Step) })
	return c
}
