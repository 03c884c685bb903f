package eval

import (
	"math"
	"strconv"
	"strings"
)

// evalNumber evaluates a normalized answer as a real number. It understands
// decimals, + - * / ^, \cdot, \times, \div, parentheses and braces, \frac,
// \sqrt (with an optional index), \pi, implicit products (3\sqrt{2}, 2\pi)
// and mixed numbers (1\frac{4}{5}). Anything else — a variable, an unknown
// command, a comma — makes it fail, and the answer is then compared as a
// string.
func evalNumber(s string) (float64, bool) {
	if s == "" {
		return 0, false
	}
	p := &exprParser{s: s}
	v, ok := p.expr()
	if !ok || p.i != len(p.s) || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// maxExprDepth bounds the parser's recursion.
const maxExprDepth = 100

type exprParser struct {
	s     string
	i     int
	depth int
}

// peekCommand returns the name of the command at the cursor, if any.
func (p *exprParser) peekCommand() string {
	if p.i < len(p.s) && p.s[p.i] == '\\' {
		name, _ := readCommand(p.s, p.i)
		return name
	}
	return ""
}

// eat consumes c if it is next.
func (p *exprParser) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// eatCommand consumes the command \name if it is next.
func (p *exprParser) eatCommand(name string) bool {
	if p.peekCommand() != name {
		return false
	}
	_, p.i = readCommand(p.s, p.i)
	return true
}

func (p *exprParser) expr() (float64, bool) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxExprDepth {
		return 0, false
	}
	v, ok := p.term()
	for ok {
		switch {
		case p.eat('+'):
			var w float64
			w, ok = p.term()
			v += w
		case p.eat('-'):
			var w float64
			w, ok = p.term()
			v -= w
		default:
			return v, true
		}
	}
	return 0, false
}

func (p *exprParser) term() (float64, bool) {
	v, ok := p.unary()
	for ok {
		switch {
		case p.eat('*') || p.eatCommand("cdot") || p.eatCommand("times"):
			var w float64
			w, ok = p.unary()
			v *= w
		case p.eat('/') || p.eatCommand("div"):
			var w float64
			w, ok = p.unary()
			if w == 0 {
				return 0, false
			}
			v /= w
		case p.startsFactor():
			var w float64
			w, ok = p.power()
			v *= w
		default:
			return v, true
		}
	}
	return 0, false
}

// startsFactor reports whether an implicit product continues here: 2\pi,
// 3\sqrt{2}, 2(1+x). A digit cannot start one (2.5.3 is not a number).
func (p *exprParser) startsFactor() bool {
	if p.i >= len(p.s) {
		return false
	}
	switch p.s[p.i] {
	case '(', '{':
		return true
	case '\\':
		switch p.peekCommand() {
		case "frac", "sqrt", "pi":
			return true
		}
	}
	return false
}

func (p *exprParser) unary() (float64, bool) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxExprDepth {
		return 0, false
	}
	switch {
	case p.eat('-'):
		v, ok := p.unary()
		return -v, ok
	case p.eat('+'):
		return p.unary()
	}
	return p.power()
}

func (p *exprParser) power() (float64, bool) {
	base, ok := p.primary()
	if !ok {
		return 0, false
	}
	if !p.eat('^') {
		return base, true
	}
	var exp float64
	if p.i < len(p.s) && p.s[p.i] == '{' {
		exp, ok = p.group('{', '}')
	} else if p.i < len(p.s) && isDigit(p.s[p.i]) {
		// x^23 means x^2 3 in TeX; take one digit.
		exp, ok = float64(p.s[p.i]-'0'), true
		p.i++
	} else {
		exp, ok = p.unary()
	}
	if !ok {
		return 0, false
	}
	return math.Pow(base, exp), true
}

// group parses open expr close.
func (p *exprParser) group(open, close byte) (float64, bool) {
	if !p.eat(open) {
		return 0, false
	}
	v, ok := p.expr()
	if !ok || !p.eat(close) {
		return 0, false
	}
	return v, true
}

func (p *exprParser) primary() (float64, bool) {
	if p.i >= len(p.s) {
		return 0, false
	}
	switch c := p.s[p.i]; {
	case isDigit(c) || c == '.':
		return p.number()
	case c == '(':
		return p.group('(', ')')
	case c == '{':
		return p.group('{', '}')
	case c == '\\':
		switch p.peekCommand() {
		case "pi":
			p.eatCommand("pi")
			return math.Pi, true
		case "frac":
			p.eatCommand("frac")
			num, ok := p.group('{', '}')
			if !ok {
				return 0, false
			}
			den, ok := p.group('{', '}')
			if !ok || den == 0 {
				return 0, false
			}
			return num / den, true
		case "sqrt":
			p.eatCommand("sqrt")
			index := 2.0
			if p.i < len(p.s) && p.s[p.i] == '[' {
				var ok bool
				if index, ok = p.group('[', ']'); !ok || index == 0 {
					return 0, false
				}
			}
			v, ok := p.group('{', '}')
			if !ok {
				return 0, false
			}
			if v < 0 {
				if index != math.Trunc(index) || int64(index)%2 == 0 {
					return 0, false
				}
				return -math.Pow(-v, 1/index), true
			}
			return math.Pow(v, 1/index), true
		}
	}
	return 0, false
}

// number parses a decimal literal; an integer directly followed by a
// fraction of integers is a mixed number (1\frac{4}{5} = 9/5).
func (p *exprParser) number() (float64, bool) {
	start := p.i
	for p.i < len(p.s) && isDigit(p.s[p.i]) {
		p.i++
	}
	integer := true
	if p.i < len(p.s) && p.s[p.i] == '.' {
		integer = false
		p.i++
		for p.i < len(p.s) && isDigit(p.s[p.i]) {
			p.i++
		}
	}
	lit := p.s[start:p.i]
	if lit == "." {
		return 0, false
	}
	v, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return 0, false
	}
	if integer {
		if num, den, end, ok := intFraction(p.s, p.i); ok {
			p.i = end
			return v + num/den, true
		}
	}
	return v, true
}

// intFraction reads \frac{a}{b} at s[i] with a and b plain integers.
func intFraction(s string, i int) (num, den float64, end int, ok bool) {
	if !strings.HasPrefix(s[i:], `\frac{`) {
		return 0, 0, i, false
	}
	j := i + len(`\frac`)
	a, j, ok := readGroup(s, j)
	if !ok || !allDigits(a) {
		return 0, 0, i, false
	}
	b, j, ok := readGroup(s, j)
	if !ok || !allDigits(b) {
		return 0, 0, i, false
	}
	x, _ := strconv.ParseFloat(a, 64)
	y, _ := strconv.ParseFloat(b, 64)
	if y == 0 {
		return 0, 0, i, false
	}
	return x, y, j, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// closeEnough compares numbers with a relative tolerance of 1e-6.
func closeEnough(a, b float64) bool {
	if a == b {
		return true
	}
	d := math.Abs(a - b)
	return d <= 1e-6*math.Max(math.Abs(a), math.Abs(b)) || d <= 1e-12
}
