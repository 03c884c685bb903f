package ui

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// diffOp is the kind of a diff segment.
type diffOp int

const (
	opEqual diffOp = iota
	opDelete
	opInsert
)

// diffSeg is a run of text that both texts share, or that only the old
// (delete) or only the new (insert) text has.
type diffSeg struct {
	Op   diffOp
	Text string
}

func (s diffSeg) Equal() bool  { return s.Op == opEqual }
func (s diffSeg) Delete() bool { return s.Op == opDelete }
func (s diffSeg) Insert() bool { return s.Op == opInsert }

// maxDiffCells bounds the work of a word diff: the product of the numbers of
// differing tokens of the two texts (after their common prefix and suffix).
// Above it the differing middles are shown as one deletion and one
// insertion. The bound keeps the table under 4 MiB, and the length of any
// common subsequence under 2^16.
const maxDiffCells = 1 << 21

// splitWords cuts s into tokens: maximal runs of white space and maximal
// runs of anything else. Concatenated, the tokens give s back.
func splitWords(s string) []string {
	var toks []string
	start, space := 0, false
	for i, r := range s {
		sp := unicode.IsSpace(r)
		if i > start && sp != space {
			toks = append(toks, s[start:i])
			start = i
		}
		if i == start {
			space = sp
		}
	}
	if start < len(s) {
		toks = append(toks, s[start:])
	}
	return toks
}

// wordDiff returns the segments that turn a into b, word by word: the
// longest common subsequence of their tokens is kept. exact is false when
// the texts differ in too many tokens for an exact diff and their differing
// middles are given as a whole.
func wordDiff(a, b string) (segs []diffSeg, exact bool) {
	ta, tb := splitWords(a), splitWords(b)
	var out diffBuilder
	pre := 0
	for pre < len(ta) && pre < len(tb) && ta[pre] == tb[pre] {
		pre++
	}
	suf := 0
	for suf < len(ta)-pre && suf < len(tb)-pre && ta[len(ta)-1-suf] == tb[len(tb)-1-suf] {
		suf++
	}
	out.add(opEqual, ta[:pre]...)
	ma, mb := ta[pre:len(ta)-suf], tb[pre:len(tb)-suf]
	exact = true
	if n, m := len(ma), len(mb); n > 0 && m > 0 && (n+1) > maxDiffCells/(m+1) {
		out.add(opDelete, ma...)
		out.add(opInsert, mb...)
		exact = false
	} else {
		lcsDiff(&out, ma, mb)
	}
	out.add(opEqual, ta[len(ta)-suf:]...)
	return out.result(), exact
}

// lcsDiff adds the diff of a and b, whose table must fit maxDiffCells.
func lcsDiff(out *diffBuilder, a, b []string) {
	n, m := len(a), len(b)
	if n == 0 || m == 0 {
		out.add(opDelete, a...)
		out.add(opInsert, b...)
		return
	}
	// l[i*(m+1)+j] is the length of the longest common subsequence of
	// a[i:] and b[j:].
	w := m + 1
	l := make([]uint16, (n+1)*w)
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				l[i*w+j] = l[(i+1)*w+j+1] + 1
			} else {
				l[i*w+j] = max(l[(i+1)*w+j], l[i*w+j+1])
			}
		}
	}
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			out.add(opEqual, a[i])
			i, j = i+1, j+1
		case l[(i+1)*w+j] >= l[i*w+j+1]:
			out.add(opDelete, a[i])
			i++
		default:
			out.add(opInsert, b[j])
			j++
		}
	}
	out.add(opDelete, a[i:]...)
	out.add(opInsert, b[j:]...)
}

// diffBuilder collects segments, merging neighbours of the same kind.
type diffBuilder struct {
	ops  []diffOp
	toks [][]string
}

func (d *diffBuilder) add(op diffOp, toks ...string) {
	if len(toks) == 0 {
		return
	}
	if n := len(d.ops); n > 0 && d.ops[n-1] == op {
		d.toks[n-1] = append(d.toks[n-1], toks...)
		return
	}
	d.ops = append(d.ops, op)
	d.toks = append(d.toks, append([]string(nil), toks...))
}

func (d *diffBuilder) result() []diffSeg {
	segs := make([]diffSeg, len(d.ops))
	for i, op := range d.ops {
		segs[i] = diffSeg{Op: op, Text: strings.Join(d.toks[i], "")}
	}
	return segs
}

// diffStats counts the words a diff removes and adds.
func diffStats(segs []diffSeg) (removed, added int) {
	for _, s := range segs {
		n := len(strings.Fields(s.Text))
		switch s.Op {
		case opDelete:
			removed += n
		case opInsert:
			added += n
		}
	}
	return removed, added
}

// truncate cuts s to at most n bytes at a rune boundary, adding "…" when
// it cut anything.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
