package eval

import "math"

// weightedRows are the training rows of a logistic regression with
// fractional targets: features X[i], target Y[i] in [0, 1] and weight W[i].
type weightedRows struct {
	X [][]float64
	Y []float64
	W []float64
}

func (d weightedRows) subset(keep func(i int) bool) weightedRows {
	var s weightedRows
	for i := range d.X {
		if keep(i) {
			s.X = append(s.X, d.X[i])
			s.Y = append(s.Y, d.Y[i])
			s.W = append(s.W, d.W[i])
		}
	}
	return s
}

// logLoss is the weighted cross-entropy of beta on d, summed over rows.
func (d weightedRows) logLoss(beta []float64) float64 {
	loss := 0.0
	for i, x := range d.X {
		z := dot(beta, x)
		// -y log s(z) - (1-y) log(1-s(z)), computed stably.
		loss += d.W[i] * (softplus(z) - d.Y[i]*z)
	}
	return loss
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// softplus is log(1 + e^z) without overflow.
func softplus(z float64) float64 {
	if z > 0 {
		return z + math.Log1p(math.Exp(-z))
	}
	return math.Log1p(math.Exp(z))
}

// fitL1Logistic minimizes ||beta||_1 + c * d.logLoss(beta), the objective
// of liblinear's L1-penalized logistic regression without intercept (each
// row's weight multiplies c), by proximal Newton steps solved with
// coordinate descent. It returns the coefficients and whether they
// converged.
func fitL1Logistic(d weightedRows, c float64) ([]float64, bool) {
	if len(d.X) == 0 {
		return nil, false
	}
	k := len(d.X[0])
	beta := make([]float64, k)
	obj := func(b []float64) float64 { return l1(b) + c*d.logLoss(b) }
	cur := obj(beta)
	for iter := 0; iter < 200; iter++ {
		grad, hess := d.gradHess(beta, c)
		dir := l1NewtonDirection(beta, grad, hess)
		// Backtracking line search on the full objective.
		step, next := 1.0, cur
		var cand []float64
		for range 40 {
			cand = make([]float64, k)
			for j := range beta {
				cand[j] = beta[j] + step*dir[j]
			}
			if next = obj(cand); next <= cur {
				break
			}
			step /= 2
		}
		if next > cur {
			return beta, true // no descent left: at the optimum
		}
		beta = cand
		done := math.Abs(cur-next) <= 1e-14*math.Max(1, math.Abs(cur))
		cur = next
		if done || maxAbs(dir)*step < 1e-12 {
			return beta, true
		}
	}
	return beta, false
}

func l1(b []float64) float64 {
	s := 0.0
	for _, v := range b {
		s += math.Abs(v)
	}
	return s
}

func maxAbs(b []float64) float64 {
	m := 0.0
	for _, v := range b {
		m = math.Max(m, math.Abs(v))
	}
	return m
}

// gradHess returns the gradient and Hessian of c * d.logLoss at beta.
func (d weightedRows) gradHess(beta []float64, c float64) ([]float64, [][]float64) {
	k := len(beta)
	grad := make([]float64, k)
	hess := make([][]float64, k)
	for a := range hess {
		hess[a] = make([]float64, k)
	}
	for i, x := range d.X {
		p := sigmoid(dot(beta, x))
		w := c * d.W[i]
		for a, va := range x {
			grad[a] += w * (p - d.Y[i]) * va
			for b, vb := range x {
				hess[a][b] += w * p * (1 - p) * va * vb
			}
		}
	}
	return grad, hess
}

// l1NewtonDirection minimizes the quadratic model g·δ + δᵀHδ/2 +
// ||beta+δ||_1 over δ by cyclic coordinate descent, and returns δ.
func l1NewtonDirection(beta, g []float64, h [][]float64) []float64 {
	k := len(beta)
	delta := make([]float64, k)
	for range 500 {
		moved := 0.0
		for j := range k {
			hjj := h[j][j] + 1e-12
			// Gradient of the quadratic part in coordinate j at delta.
			gj := g[j]
			for l := range k {
				gj += h[j][l] * delta[l]
			}
			// Minimize over z = beta_j + delta_j: hjj/2 (z - u)^2 + |z|.
			u := beta[j] + delta[j] - gj/hjj
			z := softThreshold(u, 1/hjj)
			moved = math.Max(moved, math.Abs(z-beta[j]-delta[j]))
			delta[j] = z - beta[j]
		}
		if moved < 1e-15 {
			break
		}
	}
	return delta
}

func softThreshold(u, t float64) float64 {
	switch {
	case u > t:
		return u - t
	case u < -t:
		return u + t
	}
	return 0
}

// defaultCs are the penalty strengths scikit-learn's LogisticRegressionCV
// tries by default (Cs=10): ten values evenly spaced in log scale from
// 1e-4 to 1e4.
func defaultCs() []float64 {
	cs := make([]float64, 10)
	for i := range cs {
		cs[i] = math.Pow(10, -4+8*float64(i)/9)
	}
	return cs
}

// fitL1LogisticCV chooses c among cs by folds-fold cross-validation (row i
// is in fold i mod folds), scoring each c by the mean over folds of the
// held-out weighted log loss per row, then fits all rows with the best c.
func fitL1LogisticCV(d weightedRows, cs []float64, folds int) (beta []float64, best float64, converged bool) {
	bestLoss := math.Inf(1)
	for _, c := range cs {
		total := 0.0
		for f := range folds {
			train := d.subset(func(i int) bool { return i%folds != f })
			test := d.subset(func(i int) bool { return i%folds == f })
			if len(test.X) == 0 || len(train.X) == 0 {
				continue
			}
			b, _ := fitL1Logistic(train, c)
			total += test.logLoss(b) / float64(len(test.X))
		}
		if total < bestLoss {
			bestLoss, best = total, c
		}
	}
	beta, converged = fitL1Logistic(d, best)
	return beta, best, converged
}
