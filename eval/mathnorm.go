package eval

import (
	"regexp"
	"strings"
)

// Normalize rewrites a LaTeX answer into a canonical surface form, so that
// answers written differently compare equal as strings. It:
//   - unwraps \boxed{...}, math delimiters and $ signs;
//   - reads a doubled backslash before a command name as one (\\dfrac ->
//     \dfrac);
//   - turns \dfrac, \tfrac and \cfrac into \frac and braces the arguments of
//     \frac and \sqrt (\frac12 -> \frac{1}{2}, \sqrt2 -> \sqrt{2});
//   - drops \left, \right, spacing commands (\! \, \; \quad ...), degree
//     marks (^\circ), percent signs, \$, thousands separators (1,000 ->
//     1000, but not inside tuples) and a trailing period;
//   - drops units: a trailing \text{...}, \mbox{...} or \mathrm{...} after a
//     number (5\text{ cm} -> 5) and common unit words (5 cm -> 5);
//   - unwraps other text wrappers (\text{(C)} -> (C) -> C) and lowercases
//     answers made only of words (\text{Navin} -> navin);
//   - drops a single-variable assignment on the left (x = 5 -> 5,
//     x \in [a,b] -> [a,b]) when the right side has no free variables;
//   - removes whitespace, except where it separates a command name from a
//     following letter (\cot x).
//
// Normalize never fails; text it does not understand is passed through with
// only whitespace removed.
func Normalize(ans string) string {
	s := doubledCommand.ReplaceAllString(strings.TrimSpace(ans), `\$1`)
	for range 4 {
		inner, ok := wholeBox(s)
		if !ok {
			break
		}
		s = inner
	}
	s = cleanAnswer(s)
	s = unicodeMath.Replace(s)
	s = rewriteCommands(s)
	s = strings.ReplaceAll(s, "{bmatrix}", "{pmatrix}")
	s = degreeMark.ReplaceAllString(s, "")
	s = strings.ReplaceAll(s, "%", "")
	s = textConjunction.ReplaceAllString(s, ",")
	s = bareConjunction.ReplaceAllString(s, "$1,$2")
	for range 4 {
		t := trailingTextUnit.ReplaceAllString(s, "$1")
		if t == s {
			break
		}
		s = t
	}
	s = unwrapText(s)
	s = plainUnit.ReplaceAllString(s, "$1")
	s = squeezeSpace(s)
	s = braceArgs(s)
	s = infinity.ReplaceAllString(s, `$1\infty`)
	s = dropAssignment(s)
	s = braceSingle.ReplaceAllString(s, "$1$2")
	s = strings.TrimRight(s, ".")
	s = strings.TrimLeft(s, "=")
	if thousands.MatchString(s) {
		s = strings.ReplaceAll(s, ",", "")
	}
	if m := choice.FindStringSubmatch(s); m != nil {
		s = m[1]
	}
	if words.MatchString(s) {
		s = strings.ToLower(s)
	}
	if m := slashFraction.FindStringSubmatch(s); m != nil {
		s = m[1] + `\frac{` + m[2] + "}{" + m[3] + "}"
	}
	return s
}

var (
	unicodeMath = strings.NewReplacer(
		"−", "-", "–", "-", "∞", `\infty`, "°", `^\circ`, "π", `\pi`, "√", `\sqrt`,
		"×", `\times`, "·", `\cdot`, "≤", `\leq`, "≥", `\geq`, "≠", `\neq`, "±", `\pm`,
		"∪", `\cup`, "∈", `\in`, "\u00a0", " ", "infinity", `\infty`,
	)
	doubledCommand   = regexp.MustCompile(`\\\\([A-Za-z])`)
	degreeMark       = regexp.MustCompile(`\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree`)
	textConjunction  = regexp.MustCompile(`\s*\\(?:text|mbox|mathrm|textrm)\s*\{\s*(?:and|or)\s*\}\s*`)
	bareConjunction  = regexp.MustCompile(`([0-9})])\s+(?:and|or)\s+([-0-9\\(A-Za-z])`)
	trailingTextUnit = regexp.MustCompile(`^(.*[0-9}].*?)\s*\\(?:text|textrm|mbox|mathrm|rm)\s*\{\s*[A-Za-z][A-Za-z .]*\}\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*$`)
	plainUnit        = regexp.MustCompile(`^(-?[0-9.,]*[0-9]|\\frac\{[0-9]+\}\{[0-9]+\})\s*(?:units?|cm|centimeters?|mm|millimeters?|m|meters?|km|kilometers?|in|inch(?:es)?|ft|feet|foot|yards?|miles?|mph|degrees?|cents?|dollars?|hours?|minutes?|seconds?|days?|weeks?|months?|years?|pounds?|lbs?|ounces?|oz|kg|grams?|liters?|gallons?|percent|square\s+\w+|cubic\s+\w+|sq\s+\w+)(?:\s*\^\s*\{?\s*[23]\s*\}?)?$`)
	infinity         = regexp.MustCompile(`(^|[(\[,])\+\\infty`)
	braceSingle      = regexp.MustCompile(`([_^])\{([A-Za-z0-9])\}`)
	thousands        = regexp.MustCompile(`^-?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?$`)
	choice           = regexp.MustCompile(`^\(([A-E])\)$`)
	words            = regexp.MustCompile(`^[A-Za-z][A-Za-z ]*[A-Za-z]$`)
	slashFraction    = regexp.MustCompile(`^(-?)([0-9]+|[A-Za-z])/([0-9]+|[A-Za-z])$`)
	assignment       = regexp.MustCompile(`^(?:[A-Za-z]|\\[A-Za-z]+)(?:_[A-Za-z0-9]|_\{[A-Za-z0-9]+\})?(=|\\in)(.+)$`)
)

// wholeBox unwraps s when it is one \boxed{...} or \fbox{...}, possibly in $.
func wholeBox(s string) (string, bool) {
	t := strings.TrimSpace(strings.Trim(strings.TrimSpace(s), "$"))
	for _, c := range boxCommands {
		if !strings.HasPrefix(t, c) {
			continue
		}
		rest := strings.TrimLeft(t[len(c):], " ")
		if !strings.HasPrefix(rest, "{") {
			continue
		}
		inner, end, ok := readGroup(rest, 0)
		if ok && strings.TrimSpace(rest[end:]) == "" {
			return inner, true
		}
	}
	return s, false
}

// readCommand reads the command whose backslash is at s[i] and returns its
// name (letters, or one other character) and the index after it.
func readCommand(s string, i int) (string, int) {
	j := i + 1
	if j >= len(s) {
		return "", j
	}
	if !isLetter(s[j]) {
		return s[j : j+1], j + 1
	}
	for j < len(s) && isLetter(s[j]) {
		j++
	}
	return s[i+1 : j], j
}

// commandRewrites maps command names to their replacement; "" drops them.
var commandRewrites = map[string]string{
	"dfrac": `\frac`, "tfrac": `\frac`, "cfrac": `\frac`,
	"!": " ", ",": " ", ";": " ", ":": " ", " ": " ", "quad": " ", "qquad": " ",
	"displaystyle": "", "textstyle": "", "$": "", "%": "",
	"le": `\leq`, "ge": `\geq`, "ne": `\neq`, "leqslant": `\leq`, "geqslant": `\geq`,
	"inf": `\infty`, "varnothing": `\emptyset`, "lbrace": `\{`, "rbrace": `\}`,
}

// sizing commands are dropped with a following "." (an invisible delimiter).
var sizing = map[string]bool{
	"left": true, "right": true, "bigl": true, "bigr": true, "Bigl": true, "Bigr": true,
	"big": true, "Big": true, "bigg": true, "Bigg": true, "biggl": true, "biggr": true,
}

// rewriteCommands applies commandRewrites and drops sizing commands.
func rewriteCommands(s string) string {
	if !strings.Contains(s, `\`) && !strings.Contains(s, "~") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c == '~' {
			b.WriteByte(' ')
			i++
			continue
		}
		if c != '\\' {
			b.WriteByte(c)
			i++
			continue
		}
		name, j := readCommand(s, i)
		if sizing[name] {
			for j < len(s) && s[j] == ' ' {
				j++
			}
			if j < len(s) && s[j] == '.' {
				j++
			}
			i = j
			continue
		}
		if r, ok := commandRewrites[name]; ok {
			b.WriteString(r)
			if r != "" && isLetter(r[len(r)-1]) && j < len(s) && isLetter(s[j]) {
				b.WriteByte(' ')
			}
		} else {
			b.WriteString(s[i:j])
		}
		i = j
	}
	return b.String()
}

// textWrappers are unwrapped to their argument.
var textWrappers = map[string]bool{
	"text": true, "textrm": true, "textbf": true, "textit": true, "textsf": true, "texttt": true,
	"mbox": true, "mathrm": true, "mathbf": true, "mathit": true, "mathsf": true, "mathtt": true,
	"boldsymbol": true, "bm": true, "emph": true, "hbox": true,
}

// unwrapText replaces \text{X} and similar wrappers by X.
func unwrapText(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			i++
			continue
		}
		name, j := readCommand(s, i)
		if textWrappers[name] {
			k := j
			for k < len(s) && s[k] == ' ' {
				k++
			}
			if inner, end, ok := readGroup(s, k); ok {
				b.WriteString(unwrapText(inner))
				i = end
				continue
			}
		}
		b.WriteString(s[i:j])
		i = j
	}
	return b.String()
}

// squeezeSpace removes whitespace, keeping one space where it separates a
// command name from a following letter.
func squeezeSpace(s string) string {
	var b strings.Builder
	afterCommand := false // the last token written was a letter command
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			for i < len(s) && strings.IndexByte(" \t\n\r\f\v", s[i]) >= 0 {
				i++
			}
			if afterCommand && i < len(s) && isLetter(s[i]) {
				b.WriteByte(' ')
			}
			afterCommand = false
		case c == '\\':
			name, j := readCommand(s, i)
			b.WriteString(s[i:j])
			afterCommand = name != "" && isLetter(name[0])
			i = j
		default:
			b.WriteByte(c)
			afterCommand = false
			i++
		}
	}
	return b.String()
}

// braceArgs braces the arguments of \frac and \sqrt: \frac12 -> \frac{1}{2},
// \frac1b -> \frac{1}{b}, \sqrt2 -> \sqrt{2}, \frac\pi2 -> \frac{\pi}{2}.
func braceArgs(s string) string {
	if !strings.Contains(s, `\frac`) && !strings.Contains(s, `\sqrt`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c == '{' {
			if inner, end, ok := readGroup(s, i); ok {
				b.WriteByte('{')
				b.WriteString(braceArgs(inner))
				b.WriteByte('}')
				i = end
				continue
			}
		}
		if c != '\\' {
			b.WriteByte(c)
			i++
			continue
		}
		name, j := readCommand(s, i)
		b.WriteString(s[i:j])
		i = j
		args := 0
		switch name {
		case "frac":
			args = 2
		case "sqrt":
			args = 1
			if i < len(s) && s[i] == '[' {
				if k := strings.IndexByte(s[i:], ']'); k >= 0 {
					b.WriteString(s[i : i+k+1])
					i += k + 1
				}
			}
		}
		for range args {
			for i < len(s) && s[i] == ' ' {
				i++
			}
			if i >= len(s) {
				break
			}
			switch {
			case s[i] == '{':
				inner, end, ok := readGroup(s, i)
				if !ok {
					b.WriteString(s[i:])
					return b.String()
				}
				b.WriteByte('{')
				b.WriteString(braceArgs(inner))
				b.WriteByte('}')
				i = end
			case s[i] == '\\':
				_, end := readCommand(s, i)
				b.WriteByte('{')
				b.WriteString(s[i:end])
				b.WriteByte('}')
				i = end
			case isLetter(s[i]) || isDigit(s[i]):
				b.WriteByte('{')
				b.WriteByte(s[i])
				b.WriteByte('}')
				i++
			}
		}
	}
	return b.String()
}

// dropAssignment turns "x=5" into "5" and "x\in[a,b]" into "[a,b]" when the
// right side has a single "=" and no free variable letters.
func dropAssignment(s string) string {
	m := assignment.FindStringSubmatch(s)
	if m == nil {
		return s
	}
	rhs := m[2]
	if m[1] == `\in` && isLetter(rhs[0]) {
		return s // \infty, \int, ...: not \in
	}
	if strings.Contains(rhs, "=") || hasCommand(rhs, "in") {
		return s
	}
	if m[1] == "=" && hasFreeLetter(rhs) {
		return s
	}
	return rhs
}

// hasFreeLetter reports whether s has a letter outside command names and
// \begin/\end environment names.
func hasFreeLetter(s string) bool {
	for i := 0; i < len(s); {
		if s[i] == '\\' {
			name, j := readCommand(s, i)
			if (name == "begin" || name == "end") && j < len(s) && s[j] == '{' {
				if _, end, ok := readGroup(s, j); ok {
					j = end
				}
			}
			i = j
			continue
		}
		if isLetter(s[i]) {
			return true
		}
		i++
	}
	return false
}

// hasCommand reports whether s uses the command \name.
func hasCommand(s, name string) bool {
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			i++
			continue
		}
		n, j := readCommand(s, i)
		if n == name {
			return true
		}
		i = j
	}
	return false
}
