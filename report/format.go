package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Text limits keep a report small when model output is long.
const (
	maxErrorBytes   = 500
	maxExampleBytes = 2000
)

// FormatScore formats a score or mean: four significant digits, no
// exponent for ordinary magnitudes. The web UI shows numbers the same way.
func FormatScore(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	if v == 0 {
		return "0"
	}
	if a := math.Abs(v); a >= 1e-3 && a < 1e6 {
		s := strconv.FormatFloat(v, 'f', max(0, 3-int(math.Floor(math.Log10(a)))), 64)
		if strings.Contains(s, ".") {
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		}
		if s == "-0" {
			s = "0"
		}
		return s
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// FormatGain formats a gain with an explicit sign.
func FormatGain(v float64) string {
	s := FormatScore(v)
	if v > 0 && !strings.HasPrefix(s, "+") {
		return "+" + s
	}
	return s
}

// pct formats a share in [0, 1] as a percentage.
func pct(v float64) string { return strconv.FormatFloat(100*v, 'f', 1, 64) + "%" }

// ratio formats part of whole as a percentage; "–" when whole is 0.
func ratio(part, whole int) string {
	if whole == 0 {
		return "–"
	}
	return pct(float64(part) / float64(whole))
}

// ms formats a duration in milliseconds.
func ms(v float64) string {
	if v >= 10000 {
		return strconv.FormatFloat(v/1000, 'f', 1, 64) + " s"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
}

// count formats a per-item mean of counts.
func count(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("… [%d more bytes]", len(s)-cut)
}

// depthText shows D, which best of N does not have.
func depthText(s Summary) string {
	if s.Mode == "bon" {
		return "–"
	}
	return strconv.Itoa(s.Depth)
}

// unparsedShare is the share of update samples without a block, over all steps.
func unparsedShare(s Summary) string {
	var n, u int
	for _, p := range s.Parse {
		n += p.Samples
		u += p.Unparsed
	}
	return ratio(u, n)
}

func num(v float64) string    { return FormatScore(v) }
func signed(v float64) string { return FormatGain(v) }
