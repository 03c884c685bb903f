package eval

import (
	"regexp"
	"strings"
)

// Equivalent reports whether a predicted answer means the same as a
// reference answer. Both are normalized (see Normalize) and then compared:
// equal strings match; numbers match within a relative tolerance of 1e-6
// after evaluating simple arithmetic (0.5 = \frac{1}{2}, 2\sqrt{2} =
// \sqrt{8}); tuples and intervals match elementwise with the same brackets;
// \{...\} sets and unions of intervals match in any order; matrices match
// entrywise; answers with \pm match the list of both signs. Comma lists
// without brackets match in order; use EquivalentFor to compare them as
// sets when the problem asks for all solutions.
func Equivalent(pred, ref string) bool {
	return equivalent(pred, ref, false)
}

// EquivalentFor is Equivalent for an answer to problem: when the problem
// asks for all solutions or values (see AsksForAll), comma-separated lists
// are compared as unordered sets.
func EquivalentFor(problem, pred, ref string) bool {
	return equivalent(pred, ref, AsksForAll(problem))
}

var asksForAll = regexp.MustCompile(`(?i)separated\s+by\s+commas|\ball\s+(?:of\s+)?(?:the\s+)?(?:(?:possible|real|integer|complex|distinct|positive|negative)\s+)*(?:solutions|values|roots|zeros|zeroes|numbers|integers)\b|\b(?:find|enter|list)\s+the\s+(?:solutions|roots|zeros|zeroes)\b`)

// AsksForAll reports whether a problem asks for every solution (or value,
// root, ...), so that the order of a comma-separated answer does not matter.
func AsksForAll(problem string) bool {
	return asksForAll.MatchString(problem)
}

func equivalent(pred, ref string, unordered bool) bool {
	p, r := strings.TrimSpace(pred), strings.TrimSpace(ref)
	if p == "" || r == "" {
		return false
	}
	if p == r {
		return true
	}
	budget := maxEquivSteps
	return equalNorm(Normalize(p), Normalize(r), unordered, 0, &budget)
}

// maxEquivDepth bounds the recursion through nested structures, and
// maxEquivSteps the number of element comparisons one call may make, so that
// adversarial input cannot make matching exponential.
// Answers longer than maxStructLen (after normalization) are compared only
// as strings: real final answers are short.
const (
	maxEquivDepth = 12
	maxEquivSteps = 256
	maxStructLen  = 500
)

// equalNorm compares two normalized answers.
func equalNorm(p, r string, unordered bool, depth int, budget *int) bool {
	if p == r {
		return p != ""
	}
	*budget--
	if p == "" || r == "" || depth > maxEquivDepth || *budget < 0 || len(p) > maxStructLen || len(r) > maxStructLen {
		return false
	}
	depth++
	// elem compares elements of lists; matchSets and matchLists normalize
	// each element once.
	elem := func(a, b string) bool { return equalNorm(a, b, unordered, depth, budget) }

	// a \pm b stands for the two answers a+b and a-b.
	if (strings.Contains(p, `\pm`) || strings.Contains(r, `\pm`)) && !isWrapped(p) && !isWrapped(r) {
		ps, rs := expandPM(p), expandPM(r)
		if len(ps) > 1 || len(rs) > 1 {
			return matchSets(ps, rs, elem)
		}
	}
	// Matrices compare entrywise.
	pm, pok := parseMatrix(p)
	rm, rok := parseMatrix(r)
	if pok || rok {
		if !pok || !rok || len(pm) != len(rm) {
			return false
		}
		for i := range pm {
			if len(pm[i]) != len(rm[i]) {
				return false
			}
			for j := range pm[i] {
				if !elem(Normalize(pm[i][j]), Normalize(rm[i][j])) {
					return false
				}
			}
		}
		return true
	}
	// Unions of intervals compare as sets of intervals.
	pu, ru := splitTop(p, `\cup`), splitTop(r, `\cup`)
	if len(pu) > 1 || len(ru) > 1 {
		return matchSets(pu, ru, elem)
	}
	// A parenthesized single expression is the expression: (5) = 5.
	p, r = unparen(p), unparen(r)
	// Bracketed: sets, tuples, intervals.
	po, pin, pc, pw := wrapped(p)
	ro, rin, rc, rw := wrapped(r)
	if pw && po == `\{` || rw && ro == `\{` {
		if !(pw && po == `\{` && rw && ro == `\{`) {
			// A set against a bare list: compare the elements.
			if !(pw && po == `\{` && !rw || rw && ro == `\{` && !pw) {
				return false
			}
			if pw {
				return matchSets(setElems(pin), setElems(r), elem)
			}
			return matchSets(setElems(p), setElems(rin), elem)
		}
		return matchSets(setElems(pin), setElems(rin), elem)
	}
	if pw || rw {
		if !pw || !rw || po != ro || pc != rc {
			return false
		}
		return matchLists(splitTop(pin, ","), splitTop(rin, ","), elem)
	}
	// Bare comma lists.
	pl, rl := splitTop(p, ","), splitTop(r, ",")
	if len(pl) > 1 || len(rl) > 1 {
		if unordered {
			return matchSets(setElems(p), setElems(r), elem)
		}
		return matchLists(pl, rl, elem)
	}
	// Numbers.
	if a, ok := evalNumber(p); ok {
		if b, ok := evalNumber(r); ok {
			return closeEnough(a, b)
		}
	}
	return false
}

// normalizeAll normalizes every element of xs in place and returns xs.
func normalizeAll(xs []string) []string {
	for i, x := range xs {
		xs[i] = Normalize(x)
	}
	return xs
}

// matchLists compares two lists in order.
func matchLists(a, b []string, eq func(x, y string) bool) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = normalizeAll(a), normalizeAll(b)
	for i := range a {
		if !eq(a[i], b[i]) {
			return false
		}
	}
	return true
}

// matchSets compares two lists as multisets: every element of a is matched
// to a distinct equivalent element of b.
func matchSets(a, b []string, eq func(x, y string) bool) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = normalizeAll(a), normalizeAll(b)
	used := make([]bool, len(b))
outer:
	for _, x := range a {
		for j, y := range b {
			if !used[j] && eq(x, y) {
				used[j] = true
				continue outer
			}
		}
		return false
	}
	return true
}

// splitTop splits s at sep where sep is outside all brackets.
func splitTop(s, sep string) []string {
	var parts []string
	depth, last := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			if depth == 0 && strings.HasPrefix(s[i:], sep) {
				parts = append(parts, s[last:i])
				last = i + len(sep)
				i = last - 1
				continue
			}
			if i+1 < len(s) && (s[i+1] == '{' || s[i+1] == '}') {
				if s[i+1] == '{' {
					depth++
				} else {
					depth--
				}
			}
			i++
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth--
		case depth == 0 && strings.HasPrefix(s[i:], sep):
			parts = append(parts, s[last:i])
			last = i + len(sep)
			i = last - 1
		}
	}
	return append(parts, s[last:])
}

// wrapped splits s into its outer brackets and content when one bracket
// pair spans all of s: "(", "[" or "\{" opening and ")", "]" or "\}"
// closing (intervals mix them).
func wrapped(s string) (open, inner, close string, ok bool) {
	var start int
	switch {
	case strings.HasPrefix(s, `\{`):
		open, start = `\{`, 2
	case strings.HasPrefix(s, "(") || strings.HasPrefix(s, "["):
		open, start = s[:1], 1
	default:
		return "", "", "", false
	}
	depth := 1
	for i := start; i < len(s); i++ {
		c := s[i]
		closing := ""
		switch {
		case c == '\\' && i+1 < len(s):
			switch s[i+1] {
			case '{':
				depth++
			case '}':
				depth--
				closing = `\}`
			}
			i++
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth--
			closing = s[i : i+1]
		}
		if depth == 0 {
			end := i + 1
			if end != len(s) || closing == "" || closing == "}" {
				return "", "", "", false
			}
			if (open == `\{`) != (closing == `\}`) {
				return "", "", "", false
			}
			return open, s[start : end-len(closing)], closing, true
		}
	}
	return "", "", "", false
}

// unparen removes parentheses around a single expression: (5) -> 5.
func unparen(s string) string {
	for range maxEquivDepth {
		o, in, c, ok := wrapped(s)
		if !ok || o != "(" || c != ")" || len(splitTop(in, ",")) != 1 {
			return s
		}
		s = in
	}
	return s
}

// expandPM expands every \pm (and \mp) in s into both signs.
func expandPM(s string) []string {
	out := []string{s}
	for range 3 {
		var next []string
		done := true
		for _, x := range out {
			i := strings.Index(x, `\pm`)
			name := `\pm`
			if j := strings.Index(x, `\mp`); j >= 0 && (i < 0 || j < i) {
				i, name = j, `\mp`
			}
			if i < 0 {
				next = append(next, x)
				continue
			}
			done = false
			rest := x[i+len(name):]
			next = append(next, x[:i]+"+"+rest, x[:i]+"-"+rest)
		}
		out = next
		if done {
			break
		}
	}
	// A bare list of \pm answers ("1\pm\sqrt{2},3") expands elementwise.
	var flat []string
	for _, x := range out {
		flat = append(flat, splitTop(x, ",")...)
	}
	return flat
}

// setElems splits a comma list into its elements, expanding \pm.
func setElems(s string) []string {
	var out []string
	for _, x := range splitTop(s, ",") {
		if strings.Contains(x, `\pm`) || strings.Contains(x, `\mp`) {
			out = append(out, expandPM(x)...)
		} else {
			out = append(out, x)
		}
	}
	return out
}

// isWrapped reports whether one bracket pair spans all of s.
func isWrapped(s string) bool {
	_, _, _, ok := wrapped(s)
	return ok
}

// parseMatrix reads \begin{pmatrix}a&b\\c&d\end{pmatrix} into rows of cells.
func parseMatrix(s string) ([][]string, bool) {
	const begin, end = `\begin{pmatrix}`, `\end{pmatrix}`
	if !strings.HasPrefix(s, begin) || !strings.HasSuffix(s, end) || len(s) < len(begin)+len(end) {
		return nil, false
	}
	body := strings.TrimSuffix(s[len(begin):len(s)-len(end)], `\\`)
	var rows [][]string
	for _, row := range strings.Split(body, `\\`) {
		rows = append(rows, strings.Split(row, "&"))
	}
	return rows, true
}
