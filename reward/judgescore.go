package reward

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The judge's fixed scale.
const (
	JudgeMin = 1
	JudgeMax = 10
)

// TokenLogprob is one generated token with its log probability and the
// most likely tokens at its position (OpenAI's logprobs.content entries).
type TokenLogprob struct {
	Token   string
	Logprob float64
	Top     []TopLogprob
}

// TopLogprob is one of the most likely tokens at a position.
type TopLogprob struct {
	Token   string
	Logprob float64
}

// ExpectedJudgeScore returns the judge's expected score from the logprobs of
// its reply, and false when they do not give one.
//
// The score is read at the first position whose generated token is a number
// (only digits, ignoring surrounding spaces). If the number the reply spells
// there, with the digit tokens right after it, is not in 1..10, there is no
// score. Otherwise every top-logprob token at that position that is a
// number in 1..10 contributes its probability to its value, and the score is
// the probability-weighted mean of those values (the probabilities are
// renormalized over them).
//
// Tokenizers that split numbers into digits write 10 as "1" then "0", so a
// "1" token is ambiguous. When the generated token is "1", the top logprobs
// of the next position (which follow that "1") split its probability between
// 10 (next token "0") and 1. When "10" is itself among the candidates, "1"
// means 1. Otherwise the probability of "1" goes to 10 if the other
// candidates average above 5.5, and to 1 if not: a judge torn between 9 and
// "1" is torn between 9 and 10.
func ExpectedJudgeScore(lps []TokenLogprob) (float64, bool) {
	k := -1
	for i, lp := range lps {
		if isNumberToken(strings.TrimSpace(lp.Token)) {
			k = i
			break
		}
	}
	if k < 0 || len(lps[k].Top) == 0 {
		return 0, false
	}
	// The number the reply itself spells.
	spelled := strings.TrimSpace(lps[k].Token)
	for j := k + 1; j < len(lps) && isNumberToken(lps[j].Token); j++ {
		spelled += lps[j].Token
	}
	if v, ok := scaleValue(spelled); !ok || v == 0 {
		return 0, false
	}

	var mass [JudgeMax + 1]float64
	var ambiguous float64
	hasTen := false
	for _, t := range lps[k].Top {
		if strings.TrimSpace(t.Token) == "10" {
			hasTen = true
		}
	}
	chosenOne := strings.TrimSpace(lps[k].Token) == "1"
	for _, t := range lps[k].Top {
		v, ok := scaleValue(strings.TrimSpace(t.Token))
		if !ok {
			continue
		}
		p := math.Exp(min(t.Logprob, 0)) // a log probability above 0 is malformed: count it as certain
		if math.IsNaN(p) {
			continue
		}
		switch {
		case v != 1:
			mass[v] += p
		case chosenOne && k+1 < len(lps):
			q := zeroNext(lps[k+1])
			mass[10] += p * q
			mass[1] += p * (1 - q)
		case chosenOne || hasTen:
			mass[1] += p
		default:
			ambiguous += p
		}
	}
	if ambiguous > 0 {
		var sum, weighted float64
		for v := JudgeMin; v <= JudgeMax; v++ {
			sum += mass[v]
			weighted += float64(v) * mass[v]
		}
		if sum > 0 && weighted/sum > 5.5 {
			mass[10] += ambiguous
		} else {
			mass[1] += ambiguous
		}
	}
	var sum, weighted float64
	for v := JudgeMin; v <= JudgeMax; v++ {
		sum += mass[v]
		weighted += float64(v) * mass[v]
	}
	if !(sum > 0) {
		return 0, false
	}
	// Rounding can put the mean a hair outside the scale.
	return min(max(weighted/sum, JudgeMin), JudgeMax), true
}

// zeroNext returns the probability that the token at lp is "0", from its
// top logprobs, or from the generated token when there are none.
func zeroNext(lp TokenLogprob) float64 {
	if len(lp.Top) == 0 {
		if lp.Token == "0" {
			return 1
		}
		return 0
	}
	var q float64
	for _, t := range lp.Top {
		if t.Token == "0" {
			q += math.Exp(min(t.Logprob, 0))
		}
	}
	return min(q, 1)
}

// isNumberToken reports whether s is made of ASCII digits only.
func isNumberToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// scaleValue parses a token that is a whole number. ok reports whether it
// is a number at all; v is 0 when it is one outside 1..10.
func scaleValue(s string) (v int, ok bool) {
	if !isNumberToken(s) {
		return 0, false
	}
	if len(s) > 3 {
		return 0, true
	}
	n, _ := strconv.Atoi(s)
	if n < JudgeMin || n > JudgeMax {
		return 0, true
	}
	return n, true
}

var (
	// scoreLabel finds "Score: 7", "score = 7.5", "**Score:** 7".
	scoreLabel = regexp.MustCompile(`(?i)\bscore\b\W{0,6}?(\d+(?:\.\d+)?)`)
	// firstNumber finds the first number anywhere.
	firstNumber = regexp.MustCompile(`\d+(?:\.\d+)?`)
)

// errNoScore is wrapped by ParseJudgeScore's errors.
var errNoScore = errors.New("no score from 1 to 10")

// ParseJudgeScore reads the score from the text of a judge's reply: the
// number after the word "score" if there is one, else the first number in
// the reply. The number must lie in 1..10; it may have a decimal part.
func ParseJudgeScore(reply string) (float64, error) {
	m := scoreLabel.FindStringSubmatch(reply)
	var s string
	if m != nil {
		s = m[1]
	} else {
		s = firstNumber.FindString(reply)
	}
	if s == "" {
		return 0, fmt.Errorf("%w in the reply %q", errNoScore, clip(reply, 300))
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < JudgeMin || v > JudgeMax {
		return 0, fmt.Errorf("%w in the reply %q (read %s)", errNoScore, clip(reply, 300), s)
	}
	return v, nil
}

// JudgeScore returns the score of a judge's reply: ExpectedJudgeScore from
// its logprobs when they give one, else ParseJudgeScore of its text.
// fromLogprobs reports which.
func JudgeScore(reply string, lps []TokenLogprob) (score float64, fromLogprobs bool, err error) {
	if v, ok := ExpectedJudgeScore(lps); ok {
		return v, true, nil
	}
	v, err := ParseJudgeScore(reply)
	return v, false, err
}

// clip shortens s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
