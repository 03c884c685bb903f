// Package stats holds the few summary statistics tpo's reports and
// benchmarks share, so that they agree on them.
package stats

import "math"

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted values: the smallest value with at least p% of the values at or
// below it; 0 for no values.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(n))) - 1
	return sorted[min(max(k, 0), n-1)]
}
