package sim

import (
	"cmp"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
)

// The simulated judge: a request that asks for a grade from 1 to 10 is
// answered with one, and with the distribution over the grade tokens when
// logprobs are asked for.

// The scale and the shape of the judge's distribution over it.
const (
	gradeMin, gradeMax = 1, 10
	// gradeReach is how far, in bytes, a word of grading may be from the
	// scale for a text to ask for a grade.
	gradeReach = 200
	// gradeCentre is the reward of a middling response, graded 5.5, and
	// gradeUnit the reward difference that moves the mean grade by about
	// 1.1 near it (see MeanGrade).
	gradeCentre = 1.0
	gradeUnit   = 2.0
	// gradeSpread is the standard deviation, in grades, of the judge's
	// distribution around its mean grade.
	gradeSpread = 0.7
	// otherMass is the probability the judge gives to tokens that are not
	// grades (listed in top_logprobs beyond the ten grades).
	otherMass = 0.01
	// maxTopLogprobs is the most top_logprobs a request may ask for, as
	// with vLLM's default --max-logprobs and OpenAI.
	maxTopLogprobs = 20
)

var (
	// gradeWordRE finds a word of grading: grade, score, rate, rating...
	gradeWordRE = regexp.MustCompile(`(?i)\b(?:grad|scor|rat)(?:e|es|ed|ing)\b`)
	// gradeScaleRE finds the scale: "1 to 10", "1-10", "1–10", "1..10",
	// "between 1 and 10", "out of 10".
	gradeScaleRE = regexp.MustCompile(`(?i)\b1\s*(?:-|–|—|\.\.|to|through)\s*10\b|\bbetween\s+1\s+and\s+10\b|\bout\s+of\s+10\b`)
)

// otherTokens fill top_logprobs beyond the ten grades, most likely first.
var otherTokens = []string{"The", "**", "Grade", "\n", " ", "I", "Score", "My", "A", "("}

// isGradingRequest reports whether text asks for a grade on a scale of 1
// to 10: it names the scale within gradeReach bytes of a word of grading.
func isGradingRequest(text string) bool {
	for _, loc := range gradeScaleRE.FindAllStringIndex(text, -1) {
		from, to := max(loc[0]-gradeReach, 0), min(loc[1]+gradeReach, len(text))
		if gradeWordRE.MatchString(text[from:to]) {
			return true
		}
	}
	return false
}

// judgeReward is the reward of the response a grading request shows: the
// last response marker of the conversation (the judge's templates put the
// response after the conversation it answers), q plus a noise in
// [-noise, +noise) hashed from the marker. Without one it is a hash-based
// value in [-4, -2), as Reward gives a text without a marker.
func judgeReward(m Markers, conv string, noise float64) float64 {
	if len(m.Responses) == 0 {
		return -4 + 2*unit(hashOf("reward", conv))
	}
	r := m.Responses[len(m.Responses)-1]
	return r.Q + noise*(2*unit(hashOf("reward", r.ID, strconv.FormatFloat(r.Q, 'f', 3, 64)))-1)
}

// MeanGrade is the centre of the simulated judge's distribution over the
// grades 1..10 for a response of reward r: 1 + 9/(1+exp(-(r-1)/2)). It
// rises with r (strictly, short of rewards so extreme that it rounds to 1
// or 10) and stays within 1..10: about 2.6 at r = -2, 4.4
// at 0, 5.5 at 1, 6.6 at 2, 7.6 at 3, 8.4 at 4 and 9.3 at 6, so a sample
// of an average prompt (r near 0) grades about 4 and TPO's updates, which
// raise r by about 1 a step, climb a grade a step.
func MeanGrade(r float64) float64 {
	return gradeMin + (gradeMax-gradeMin)/(1+math.Exp(-(r-gradeCentre)/gradeUnit))
}

// gradeProbs is the judge's distribution over the grades 1..10 (index
// grade-1): a Gaussian of standard deviation gradeSpread around mean,
// restricted to the grades, holding 1-otherMass in all.
func gradeProbs(mean float64) [gradeMax]float64 {
	var p [gradeMax]float64
	var sum float64
	for i := range p {
		d := (float64(i+gradeMin) - mean) / gradeSpread
		p[i] = math.Exp(-d * d / 2)
		sum += p[i]
	}
	for i := range p {
		p[i] *= (1 - otherMass) / sum
	}
	return p
}

// pickGrade is the grade the judge writes: the most likely one at
// temperature 0 (the nearest whole number to the mean grade, halves rounded
// up), else a draw from the distribution sharpened or flattened
// by the temperature.
func pickGrade(p [gradeMax]float64, temperature float64, rng *rand.Rand) int {
	best := 0
	for i := range p {
		if p[i] >= p[best] {
			best = i
		}
	}
	if temperature <= 0 {
		return best + gradeMin
	}
	var w [gradeMax]float64
	var sum float64
	for i := range p {
		w[i] = math.Exp(math.Log(p[i]) / temperature)
		sum += w[i]
	}
	if !(sum > 0) {
		return best + gradeMin
	}
	u := rng.Float64() * sum
	for i := range w {
		if u < w[i] {
			return i + gradeMin
		}
		u -= w[i]
	}
	return best + gradeMin
}

// topLogprob and tokenLogprob are OpenAI's logprobs.content entries.
type topLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

type tokenLogprob struct {
	Token       string       `json:"token"`
	Logprob     float64      `json:"logprob"`
	Bytes       []int        `json:"bytes"`
	TopLogprobs []topLogprob `json:"top_logprobs"`
}

// choiceLogprobs is a choice's logprobs object.
type choiceLogprobs struct {
	Content []tokenLogprob `json:"content"`
}

func tokenBytes(s string) []int {
	b := make([]int, len(s))
	for i := range len(s) {
		b[i] = int(s[i])
	}
	return b
}

// gradeLogprobs are the logprobs of a reply that is the single token of
// grade, with the top most likely tokens at its position, by probability:
// the ten grades, and a few tokens that are not grades sharing otherMass.
func gradeLogprobs(grade int, p [gradeMax]float64, top int) *choiceLogprobs {
	all := make([]topLogprob, 0, gradeMax+len(otherTokens))
	for i, pi := range p {
		tok := strconv.Itoa(i + gradeMin)
		all = append(all, topLogprob{Token: tok, Logprob: math.Log(pi), Bytes: tokenBytes(tok)})
	}
	rest := otherMass
	for _, tok := range otherTokens {
		rest /= 2
		all = append(all, topLogprob{Token: tok, Logprob: math.Log(rest), Bytes: tokenBytes(tok)})
	}
	slices.SortStableFunc(all, func(a, b topLogprob) int { return cmp.Compare(b.Logprob, a.Logprob) })
	tok := strconv.Itoa(grade)
	return &choiceLogprobs{Content: []tokenLogprob{{
		Token: tok, Logprob: math.Log(p[grade-gradeMin]), Bytes: tokenBytes(tok),
		TopLogprobs: all[:min(top, len(all))],
	}}}
}
