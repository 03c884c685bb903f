package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Outcome is the result of one pairwise judgement of system A against
// system B.
type Outcome int8

// The outcomes. Unknown means not judged, or the verdict was unreadable.
const (
	Unknown Outcome = iota
	AWins
	BWins
	Tie
)

// String returns "A", "B", "tie" or "unknown".
func (o Outcome) String() string {
	switch o {
	case AWins:
		return "A"
	case BWins:
		return "B"
	case Tie:
		return "tie"
	}
	return "unknown"
}

// MarshalText encodes the outcome as its String.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText decodes "A", "B", "tie" or "unknown" (and "").
func (o *Outcome) UnmarshalText(b []byte) error {
	switch string(b) {
	case "A":
		*o = AWins
	case "B":
		*o = BWins
	case "tie":
		*o = Tie
	case "unknown", "":
		*o = Unknown
	default:
		return fmt.Errorf("unknown outcome %q", b)
	}
	return nil
}

// Swap exchanges A and B: a verdict given with the answers presented in
// swapped positions, mapped back to the systems.
func (o Outcome) Swap() Outcome {
	switch o {
	case AWins:
		return BWins
	case BWins:
		return AWins
	}
	return o
}

// Score is A's score for the outcome: 1 for a win, 0.5 for a tie, 0 for a
// loss; ok is false for Unknown.
func (o Outcome) Score() (score float64, ok bool) {
	switch o {
	case AWins:
		return 1, true
	case BWins:
		return 0, true
	case Tie:
		return 0.5, true
	}
	return 0, false
}

// Judgement holds the verdicts on one item, judged in both presentation
// orders to cancel the judge's position bias. Both outcomes are in terms of
// the systems: AFirst is the verdict when A's response was shown first,
// BFirst the verdict when B's response was shown first, already mapped back
// (apply Outcome.Swap to the parsed verdict of the swapped prompt).
type Judgement struct {
	ID     string  `json:"id"`
	AFirst Outcome `json:"a_first"`
	BFirst Outcome `json:"b_first"`
	// LenA and LenB are the lengths of the two responses, in any unit
	// (characters or tokens) used consistently.
	LenA int `json:"len_a"`
	LenB int `json:"len_b"`
}

// Score merges the two orders into A's score for the item: the mean of the
// known outcomes' scores. A wins both: 1; wins one and loses the other: 0.5;
// wins one and ties the other: 0.75. With one order unknown the other one
// decides; with both unknown ok is false.
func (j Judgement) Score() (score float64, ok bool) {
	n := 0
	for _, o := range []Outcome{j.AFirst, j.BFirst} {
		if s, known := o.Score(); known {
			score += s
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return score / float64(n), true
}

// PairwiseOptions tunes Pairwise. The zero value is usable.
type PairwiseOptions struct {
	// Resamples is the number of bootstrap resamples (default 1000).
	Resamples int
	// Seed seeds the bootstrap's random numbers.
	Seed uint64
	// Confidence is the level of the interval (default 0.95).
	Confidence float64
	// LengthScale divides length differences before the tanh; 0 means the
	// standard deviation of the differences (1 if they are all equal).
	LengthScale float64
	// L2 is the ridge penalty of the length regression (default 1e-3); it
	// keeps the fit finite when one system wins every item.
	L2 float64
}

// LengthModel is the logistic regression behind the length-adjusted win
// rate: P(A preferred) = sigmoid(Intercept + Slope*tanh((LenA-LenB)/Scale)).
type LengthModel struct {
	Intercept  float64 `json:"intercept"`
	Slope      float64 `json:"slope"`
	Scale      float64 `json:"scale"`
	Iterations int     `json:"iterations"`
	Converged  bool    `json:"converged"`
}

// Predict returns the modelled probability that A is preferred when A's
// response is longer than B's by diff.
func (m LengthModel) Predict(diff float64) float64 {
	return sigmoid(m.Intercept + m.Slope*math.Tanh(diff/m.Scale))
}

// PairwiseReport summarizes judgements of A against B.
type PairwiseReport struct {
	// Items counts items with at least one known verdict; Skipped those
	// with none (they are left out of every statistic).
	Items   int `json:"items"`
	Skipped int `json:"skipped"`
	// Wins, Losses and Ties count A's individual judgements (each order
	// counts once), Judgements their sum.
	Judgements int `json:"judgements"`
	Wins       int `json:"wins"`
	Losses     int `json:"losses"`
	Ties       int `json:"ties"`
	// WinRate is the mean over items of Judgement.Score: ties count half.
	WinRate float64 `json:"win_rate"`
	// CILow and CIHigh bound WinRate: a percentile bootstrap interval over
	// items at level Confidence.
	CILow      float64 `json:"ci_low"`
	CIHigh     float64 `json:"ci_high"`
	Confidence float64 `json:"confidence"`
	Resamples  int     `json:"resamples"`
	// LengthAdjusted is tpo's length-adjusted estimate of the win rate:
	// what the length model predicts when both responses have the same
	// length. It is not AlpacaEval's length-controlled win rate, which has
	// an instruction-difficulty term (see LengthControlled).
	LengthAdjusted float64     `json:"length_adjusted_estimate"`
	Length         LengthModel `json:"length_model"`
	// MeanLenA and MeanLenB are the mean response lengths over items.
	MeanLenA float64 `json:"mean_len_a"`
	MeanLenB float64 `json:"mean_len_b"`
}

// Pairwise computes win rates of A against B from per-item judgements.
func Pairwise(js []Judgement, opt PairwiseOptions) PairwiseReport {
	if opt.Resamples <= 0 {
		opt.Resamples = 1000
	}
	if opt.Confidence <= 0 || opt.Confidence >= 1 {
		opt.Confidence = 0.95
	}
	if opt.L2 <= 0 {
		opt.L2 = 1e-3
	}
	rep := PairwiseReport{Confidence: opt.Confidence, Resamples: opt.Resamples}
	var scores, diffs []float64
	for _, j := range js {
		s, ok := j.Score()
		if !ok {
			rep.Skipped++
			continue
		}
		for _, o := range []Outcome{j.AFirst, j.BFirst} {
			switch o {
			case AWins:
				rep.Wins++
			case BWins:
				rep.Losses++
			case Tie:
				rep.Ties++
			}
		}
		scores = append(scores, s)
		diffs = append(diffs, float64(j.LenA-j.LenB))
		rep.MeanLenA += float64(j.LenA)
		rep.MeanLenB += float64(j.LenB)
	}
	rep.Items = len(scores)
	rep.Judgements = rep.Wins + rep.Losses + rep.Ties
	if rep.Items == 0 {
		return rep
	}
	n := float64(rep.Items)
	rep.MeanLenA /= n
	rep.MeanLenB /= n
	rep.WinRate = mean(scores)
	rep.CILow, rep.CIHigh = bootstrapMean(scores, opt.Resamples, opt.Seed, opt.Confidence)
	rep.Length = fitLength(scores, diffs, opt.LengthScale, opt.L2)
	rep.LengthAdjusted = rep.Length.Predict(0)
	return rep
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// bootstrapMean returns the percentile bootstrap interval of the mean of xs.
func bootstrapMean(xs []float64, resamples int, seed uint64, confidence float64) (lo, hi float64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed_b007_57a7_5a11))
	means := make([]float64, resamples)
	for b := range means {
		s := 0.0
		for range xs {
			s += xs[rng.IntN(len(xs))]
		}
		means[b] = s / float64(len(xs))
	}
	slices.Sort(means)
	alpha := (1 - confidence) / 2
	return quantile(means, alpha), quantile(means, 1-alpha)
}

// quantile interpolates linearly between the order statistics of sorted.
func quantile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	i := int(math.Floor(pos))
	if i >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	f := pos - float64(i)
	return sorted[i]*(1-f) + sorted[i+1]*f
}

// fitLength fits the length model to item scores and length differences.
func fitLength(scores, diffs []float64, scale, l2 float64) LengthModel {
	if scale <= 0 {
		m := mean(diffs)
		v := 0.0
		for _, d := range diffs {
			v += (d - m) * (d - m)
		}
		scale = math.Sqrt(v / float64(len(diffs)))
		if scale == 0 {
			scale = 1
		}
	}
	x := make([][]float64, len(diffs))
	for i, d := range diffs {
		x[i] = []float64{1, math.Tanh(d / scale)}
	}
	beta, iters, converged := fitLogistic(x, scores, l2)
	return LengthModel{Intercept: beta[0], Slope: beta[1], Scale: scale, Iterations: iters, Converged: converged}
}

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// fitLogistic fits a ridge-penalized logistic regression of targets y in
// [0, 1] (fractional targets allowed) on the rows of x by Newton's method
// (iteratively reweighted least squares). It returns the coefficients, the
// iterations used and whether the steps converged.
func fitLogistic(x [][]float64, y []float64, l2 float64) (beta []float64, iters int, converged bool) {
	if len(x) == 0 {
		return nil, 0, false
	}
	k := len(x[0])
	beta = make([]float64, k)
	const maxIter = 100
	for iters = 1; iters <= maxIter; iters++ {
		grad := make([]float64, k)
		hess := make([][]float64, k)
		for a := range hess {
			hess[a] = make([]float64, k)
			hess[a][a] = l2
			grad[a] = -l2 * beta[a]
		}
		for i, row := range x {
			z := 0.0
			for a, v := range row {
				z += beta[a] * v
			}
			p := sigmoid(z)
			w := p * (1 - p)
			for a, va := range row {
				grad[a] += (y[i] - p) * va
				for b, vb := range row {
					hess[a][b] += w * va * vb
				}
			}
		}
		step, ok := solve(hess, grad)
		if !ok {
			return beta, iters, false
		}
		biggest := 0.0
		for a := range beta {
			// Damp huge steps: they only happen far from the optimum.
			s := math.Max(-5, math.Min(5, step[a]))
			beta[a] += s
			biggest = math.Max(biggest, math.Abs(s))
		}
		if biggest < 1e-10 {
			return beta, iters, true
		}
	}
	return beta, maxIter, false
}

// solve solves a x = b by Gaussian elimination with partial pivoting.
func solve(a [][]float64, b []float64) ([]float64, bool) {
	n := len(b)
	m := make([][]float64, n)
	for i := range a {
		m[i] = append(append([]float64(nil), a[i]...), b[i])
	}
	for c := range n {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r][c]) > math.Abs(m[p][c]) {
				p = r
			}
		}
		if math.Abs(m[p][c]) < 1e-300 {
			return nil, false
		}
		m[c], m[p] = m[p], m[c]
		for r := c + 1; r < n; r++ {
			f := m[r][c] / m[c][c]
			for j := c; j <= n; j++ {
				m[r][j] -= f * m[c][j]
			}
		}
	}
	out := make([]float64, n)
	for r := n - 1; r >= 0; r-- {
		s := m[r][n]
		for j := r + 1; j < n; j++ {
			s -= m[r][j] * out[j]
		}
		out[r] = s / m[r][r]
	}
	return out, true
}
