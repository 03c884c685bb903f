package eval

import (
	"regexp"
	"strings"
)

// ExtractAnswer returns the final answer stated in a model's response to a
// math problem, and whether one was found.
//
// It takes the argument of the last well-formed \boxed{...} or \fbox{...}
// (nested braces allowed; "\boxed 5" without braces takes the following run
// of non-space characters). Without a box, it takes the last clearly marked
// final-answer statement: "Final answer: ...", "The final answer is ...",
// "The answer is ...", or a line starting "Answer:" or "**Answer:**". The
// answer is cut at the end of its line or sentence, and math delimiters ($,
// \( \), \[ \]) around it are removed. Without either, it falls back to the
// last math expression of the final line, or of a display that ends the
// response ("Answer $9$", "\[ 9 \]", "$$9$$", "\( 9 \)"), keeping the
// right side of its last "=". A response whose backslashes are all doubled
// (\\boxed{\\dfrac{1}{2}}) is read as if they were single. The result is
// not normalized; see Normalize.
func ExtractAnswer(response string) (string, bool) {
	a, src := FindAnswer(response)
	return a, src != NoAnswer
}

// AnswerSource says how FindAnswer found an answer.
type AnswerSource string

// The sources of an answer, from the most to the least explicit.
const (
	NoAnswer     AnswerSource = ""
	FromBox      AnswerSource = "boxed"
	FromMarker   AnswerSource = "marked"
	FromLastMath AnswerSource = "last_math"
)

// FindAnswer is ExtractAnswer, saying where the answer came from: a box,
// a final-answer statement, or the fall-back to the last math expression.
func FindAnswer(response string) (string, AnswerSource) {
	response = undouble(response)
	if a, ok := lastBoxed(response); ok {
		return a, FromBox
	}
	if a, ok := markedAnswer(response); ok {
		return a, FromMarker
	}
	if a, ok := lastMath(response); ok {
		return a, FromLastMath
	}
	return "", NoAnswer
}

var boxCommands = []string{`\boxed`, `\fbox`}

// maxBoxTries bounds how many box commands lastBoxed tries, from the end.
const maxBoxTries = 16

// lastBoxed returns the argument of the last well-formed box in s among the
// last maxBoxTries box commands.
func lastBoxed(s string) (string, bool) {
	end := len(s)
	for try := 0; end > 0 && try < maxBoxTries; try++ {
		// Find the last box command starting before end.
		at, cmd := -1, ""
		for _, c := range boxCommands {
			if i := strings.LastIndex(s[:end], c); i > at {
				at, cmd = i, c
			}
		}
		if at < 0 {
			return "", false
		}
		end = at
		if a, ok := boxArgument(s[at+len(cmd):]); ok {
			return a, true
		}
	}
	return "", false
}

// boxArgument reads the argument of a box command from rest, the text just
// after the command name.
func boxArgument(rest string) (string, bool) {
	if rest != "" && isLetter(rest[0]) {
		return "", false // another command, like \boxedfoo
	}
	rest = strings.TrimLeft(rest, " \t")
	if rest == "" {
		return "", false
	}
	var a string
	if rest[0] == '{' {
		inner, _, ok := readGroup(rest, 0)
		if !ok {
			return "", false
		}
		a = inner
	} else {
		n := strings.IndexAny(rest, " \t\r\n$")
		if n < 0 {
			n = len(rest)
		}
		a = rest[:n]
	}
	a = cleanAnswer(a)
	return a, a != ""
}

// readGroup reads the brace group that opens at s[i] == '{' and returns its
// content and the index just past the closing brace. Escaped braces (\{ \})
// do not count.
func readGroup(s string, i int) (string, int, bool) {
	if i >= len(s) || s[i] != '{' {
		return "", i, false
	}
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++ // skip the escaped character
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return s[i+1 : j], j + 1, true
			}
		}
	}
	return "", len(s), false
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }

// answerMarker finds statements of a final answer.
var answerMarker = regexp.MustCompile(`(?i)\bfinal\s+answer\b(?:\s*\*\*)?(?:\s*(?:is\b|:))?|\bthe\s+(?:correct\s+|final\s+)?answer\s+is\b:?|(?:^|\n)[ \t*#>_]*answer\s*(?:\*\*)?\s*:`)

// markedAnswer returns the answer after the last final-answer marker.
func markedAnswer(s string) (string, bool) {
	locs := answerMarker.FindAllStringIndex(s, -1)
	for k := len(locs) - 1; k >= 0; k-- {
		if a := answerAfter(s[locs[k][1]:]); a != "" {
			return a, true
		}
	}
	return "", false
}

// answerAfter reads the answer that follows a marker.
func answerAfter(rest string) string {
	rest = strings.TrimLeft(rest, " \t*:_")
	if strings.HasPrefix(rest, "\n") || strings.HasPrefix(rest, "\r") {
		// "Final Answer\n\n5": the answer is on the next non-empty line.
		rest = strings.TrimLeft(rest, " \t\r\n*:_")
	}
	if rest == "" {
		return ""
	}
	for _, d := range [][2]string{{"$$", "$$"}, {`\[`, `\]`}, {`\(`, `\)`}, {"$", "$"}} {
		if strings.HasPrefix(rest, d[0]) {
			body := rest[len(d[0]):]
			if j := indexUnescaped(body, d[1]); j >= 0 {
				return cleanAnswer(body[:j])
			}
		}
	}
	if i := strings.IndexAny(rest, "\r\n"); i >= 0 {
		rest = rest[:i]
	}
	return cleanAnswer(cutSentence(rest))
}

// cutSentence cuts s at the first sentence end (". " or "; ") or at a comma
// followed by a word, outside brackets and math.
func cutSentence(s string) string {
	depth := 0
	inMath := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
		case c == '$':
			inMath = !inMath
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth--
		case depth > 0 || inMath:
		case (c == '.' || c == ';' || c == '!' || c == '?') && (i+1 == len(s) || s[i+1] == ' ' || s[i+1] == '\t'):
			return s[:i]
		case c == ',' && i+3 < len(s) && s[i+1] == ' ' && isLetter(s[i+2]) && isLetter(s[i+3]):
			return s[:i]
		}
	}
	return s
}

// cleanAnswer trims an extracted answer: whitespace, markdown emphasis,
// math delimiters, trailing punctuation.
func cleanAnswer(a string) string {
	for {
		prev := a
		a = strings.TrimSpace(a)
		a = strings.Trim(a, "*")
		a = strings.TrimRight(a, ".,;")
		a = strings.TrimSpace(a)
		for _, d := range [][2]string{{"$$", "$$"}, {`\[`, `\]`}, {`\(`, `\)`}} {
			if len(a) >= len(d[0])+len(d[1]) && strings.HasPrefix(a, d[0]) && strings.HasSuffix(a, d[1]) {
				a = a[len(d[0]) : len(a)-len(d[1])]
			}
		}
		a = dropMathDollars(a)
		if a == prev {
			return a
		}
	}
}

// dropMathDollars removes $ signs that delimit math, keeping escaped \$.
func dropMathDollars(s string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			b.WriteByte(s[i])
			b.WriteByte(s[i+1])
			i++
		case s[i] != '$':
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// indexUnescaped is strings.Index that skips escaped characters (\$).
func indexUnescaped(s, sub string) int {
	for i := 0; i < len(s); i++ {
		if strings.HasPrefix(s[i:], sub) {
			return i
		}
		if s[i] == '\\' {
			i++
		}
	}
	return -1
}

// undouble halves the backslashes of a response in which every backslash
// is doubled (an answer escaped twice, as in a JSON string printed raw):
// \\boxed{\\dfrac{1}{2}} reads as \boxed{\dfrac{1}{2}}. A response with
// any single backslash is returned as it is, since \\ is also LaTeX's line
// break.
func undouble(s string) string {
	if !strings.Contains(s, `\\`) {
		return s
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		if i+1 >= len(s) || s[i+1] != '\\' {
			return s
		}
		i++
	}
	return strings.ReplaceAll(s, `\\`, `\`)
}

// mathDelims are the math delimiters the fall-back looks for, the longer
// opening first.
var mathDelims = [][2]string{{"$$", "$$"}, {`\[`, `\]`}, {`\(`, `\)`}, {"$", "$"}}

// lastMath returns the last math expression of the response's final line,
// or the content of a display that ends the response.
func lastMath(s string) (string, bool) {
	t := strings.TrimRight(s, " \t\r\n.!")
	if body, ok := endingDisplay(t); ok {
		return finalValue(body)
	}
	line := t[strings.LastIndexByte(t, '\n')+1:]
	if body, ok := lastInlineMath(line); ok {
		return finalValue(body)
	}
	return "", false
}

// endingDisplay returns the content of the $$...$$ or \[...\] display that
// t ends with.
func endingDisplay(t string) (string, bool) {
	for _, d := range mathDelims[:2] {
		if !strings.HasSuffix(t, d[1]) {
			continue
		}
		head := t[:len(t)-len(d[1])]
		if i := strings.LastIndex(head, d[0]); i >= 0 {
			return head[i+len(d[0]):], true
		}
	}
	return "", false
}

// lastInlineMath returns the content of the last complete math span of
// line: $...$, $$...$$, \(...\) or \[...\].
func lastInlineMath(line string) (string, bool) {
	body, found := "", false
	for i := 0; i < len(line); i++ {
		if line[i] == '\\' && (i+1 >= len(line) || (line[i+1] != '(' && line[i+1] != '[')) {
			i++ // an escaped character, such as \$
			continue
		}
		for _, d := range mathDelims {
			if !strings.HasPrefix(line[i:], d[0]) {
				continue
			}
			rest := line[i+len(d[0]):]
			j := indexUnescaped(rest, d[1])
			if j < 0 {
				return body, found
			}
			body, found = rest[:j], true
			i += len(d[0]) + j + len(d[1]) - 1
			break
		}
	}
	return body, found
}

// finalValue cleans a math expression found by the fall-back and keeps
// what follows its last "=" outside braces: "x = 2 + 3 = 5" gives "5".
func finalValue(expr string) (string, bool) {
	depth, cut := 0, -1
	for i := 0; i < len(expr); i++ {
		switch expr[i] {
		case '\\':
			// \{ and \} are braces too (a set); other escapes are skipped.
			if i+1 < len(expr) && expr[i+1] == '{' {
				depth++
			} else if i+1 < len(expr) && expr[i+1] == '}' {
				depth--
			}
			i++
		case '{', '(', '[':
			depth++
		case '}', ')', ']':
			depth--
		case '=':
			if depth == 0 {
				cut = i
			}
		}
	}
	if cut >= 0 {
		expr = expr[cut+1:]
	}
	a := cleanAnswer(expr)
	return a, a != ""
}
