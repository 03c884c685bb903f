package stats

import "testing"

func TestPercentile(t *testing.T) {
	seven := []float64{1, 2, 3, 4, 5, 6, 7}
	for _, tc := range []struct {
		v    []float64
		p    float64
		want float64
	}{
		{nil, 50, 0},
		{seven, 50, 4},
		{seven, 90, 7}, // ceil(6.3) = 7th value; rounding 6.3+0.5 would give the 6th
		{seven, 10, 1},
		{seven, 100, 7},
		{[]float64{1, 2, 3, 4}, 50, 2},
		{[]float64{1, 2, 3, 4}, 75, 3},
	} {
		if got := Percentile(tc.v, tc.p); got != tc.want {
			t.Errorf("Percentile(%v, %g) = %g, want %g", tc.v, tc.p, got, tc.want)
		}
	}
}
