package sim

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// kind is what a chat request asks for, judged by its markers.
type kind int

const (
	kindSample kind = iota
	kindCritique
	kindInstructions
	kindUpdate
	kindGrade
)

// classify tells what a prompt asks for: a grade when its text asks for
// one, else what its markers say.
func classify(text string, m Markers) kind {
	switch {
	case isGradingRequest(text):
		return kindGrade
	case len(m.Instructions) > 0:
		return kindUpdate
	case len(m.Critiques) > 0:
		return kindInstructions
	case len(m.Responses) > 0:
		return kindCritique
	}
	return kindSample
}

// hashOf hashes its parts, each length-prefixed so that ("ab","c") and
// ("a","bc") differ.
func hashOf(parts ...string) uint64 {
	h := fnv.New64a()
	var n [8]byte
	for _, p := range parts {
		binary.LittleEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return mix(h.Sum64())
}

// mix is the splitmix64 finalizer: it spreads the bits of x.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// tokenCount is the number of tokens of a text: about four bytes each.
func tokenCount(s string) int { return (len(s) + 3) / 4 }

// Reward is the score the simulated reward model gives a response text: the q
// of its first response marker plus a hash-based noise in [-noise, +noise),
// or a hash-based value in [-4, -2) when it has none.
func Reward(text string, noise float64) float64 {
	h := unit(hashOf("reward", text))
	rm := ParseMarkers(text)
	if len(rm.Responses) == 0 {
		return -4 + 2*h
	}
	return rm.Responses[0].Q + noise*(2*h-1)
}

// choice is one generated completion.
type choice struct {
	Text     string
	Tokens   int
	Finish   string          // "stop" or "length"
	Logprobs *choiceLogprobs // a grade's, when asked for
}

// genRequest is what generation depends on.
type genRequest struct {
	conv        string // the text of all messages
	childSeed   uint64
	temperature float64
	maxTokens   int // the cap on completion tokens, > 0
	// topLogprobs is the number of top logprobs asked for, or -1 when the
	// request did not ask for logprobs.
	topLogprobs int
}

// generator writes the simulated model's texts.
type generator struct {
	seed         string
	meanTokens   float64
	sigma        float64
	gain         float64
	plateau      float64
	unparsedRate float64
	rewardNoise  float64
}

// generate returns one choice for r; it is a pure function of the
// generator's settings and r.
func (g generator) generate(r genRequest) choice {
	rng := rand.New(rand.NewPCG(hashOf(g.seed, r.conv, "child"), r.childSeed))
	m := ParseMarkers(r.conv)
	id := hex8(hashOf(g.seed, r.conv, "id", string(binary.LittleEndian.AppendUint64(nil, r.childSeed))))
	var head, tail string
	k := classify(r.conv, m)
	if k == kindGrade {
		return g.grade(r, m, rng)
	}
	length := g.length(rng)
	switch k {
	case kindSample:
		head = ResponseMarker{Q: g.sampleQ(r, rng), ID: id}.Format()
	case kindCritique:
		ids := m.IDs()
		head = CritiqueMarker{Hash: CritiqueHash(ids), Of: ids}.Format()
	case kindInstructions:
		head = InstructionMarker{From: m.Critiques[len(m.Critiques)-1].Hash}.Format()
	case kindUpdate:
		var q float64
		from := m.Instructions[len(m.Instructions)-1].From
		best, ok := m.BestQ()
		switch {
		case !ok:
			q = g.sampleQ(r, rng)
		case derivesFrom(from, m.IDs()):
			q = g.updateQ(m, best, rng)
		default:
			mean, _ := m.MeanQ()
			q = round3(mean + 0.5*rng.NormFloat64())
		}
		head = ResponseMarker{Q: q, ID: id}.Format()
		if strings.Contains(r.conv, "improved_response") && rng.Float64() >= g.unparsedRate {
			head = "Following the feedback, here is the revised text.\n<improved_response>\n" + head
			tail = "\n</improved_response>"
		} else {
			head = "Here is a better answer. " + head
		}
	}
	// A short answer still has its marker and tags: only max_tokens cuts them.
	length = max(length, (len(head)+len(tail)+3)/4)
	text := fill(head, tail, 4*length, 4*r.maxTokens, rng)
	if length > r.maxTokens {
		return choice{Text: text, Tokens: r.maxTokens, Finish: "length"}
	}
	return choice{Text: text, Tokens: length, Finish: "stop"}
}

// grade answers a grading request: the grade alone, one token, drawn
// from the judge's distribution for the graded response (see MeanGrade).
func (g generator) grade(r genRequest, m Markers, rng *rand.Rand) choice {
	p := gradeProbs(MeanGrade(judgeReward(m, r.conv, g.rewardNoise)))
	v := pickGrade(p, r.temperature, rng)
	c := choice{Text: strconv.Itoa(v), Tokens: 1, Finish: "stop"}
	if r.topLogprobs >= 0 {
		c.Logprobs = gradeLogprobs(v, p, r.topLogprobs)
	}
	return c
}

// updateQ draws the q of an update that follows instructions derived from
// the responses of its prompt, best being their best q.
func (g generator) updateQ(m Markers, best float64, rng *rand.Rand) float64 {
	room := 1.0
	if g.plateau > 0 {
		worst, _ := m.WorstQ()
		room = 1 - (best-worst)/g.plateau
	}
	if room <= 0 {
		return round3(best + 0.2*rng.NormFloat64())
	}
	q := round3(best + g.gain*room*rng.ExpFloat64())
	if q <= best {
		q = best + 0.001
	}
	return q
}

// sampleQ draws the q of an initial sample: a mean per conversation plus
// noise that grows with the temperature.
func (g generator) sampleQ(r genRequest, rng *rand.Rand) float64 {
	base := rand.New(rand.NewPCG(hashOf(g.seed, r.conv, "base"), 1)).NormFloat64()
	return round3(base + 0.8*min(r.temperature, 2)*rng.NormFloat64())
}

// length draws a natural response length in tokens.
func (g generator) length(rng *rand.Rand) int {
	mu := math.Log(g.meanTokens) - g.sigma*g.sigma/2
	n := int(math.Round(math.Exp(mu + g.sigma*rng.NormFloat64())))
	return max(n, 1)
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

var fillerWords = strings.Fields(`the a of to and in that is for it as with be on by this
	are or an from at which can more will also when each other than these their
	answer response model point example result detail clear step reason case
	first second then because however therefore simple useful careful better
	question idea method value number list part way time well show give make`)

// fill returns the first min(size, limit) bytes of a text of exactly size
// bytes made of head, filler words and tail (head and tail cut when they
// alone are longer). Stopping at limit leaves the words before it unchanged,
// so a capped text is a prefix of the uncapped one.
func fill(head, tail string, size, limit int, rng *rand.Rand) string {
	limit = min(size, limit)
	var b strings.Builder
	b.Grow(limit + 16)
	b.WriteString(head)
	words := 0
	for b.Len()+len(tail) < size && b.Len() < limit {
		w := fillerWords[rng.IntN(len(fillerWords))]
		b.WriteByte(' ')
		if words%12 == 0 {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		} else {
			b.WriteString(w)
		}
		if words%12 == 11 {
			b.WriteByte('.')
		}
		words++
	}
	s := b.String()
	if len(s)+len(tail) >= size {
		s = s[:max(size-len(tail), 0)] + tail
	}
	return s[:min(len(s), limit)]
}

// Chat template markers of the simulated tokenizer.
const (
	turnStart = "<|im_start|>"
	turnEnd   = "<|im_end|>\n"
)

// render applies the simulated chat template.
func render(msgs []chatMessage, addGenerationPrompt bool) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(turnStart + m.Role + "\n" + m.Content + turnEnd)
	}
	if addGenerationPrompt {
		b.WriteString(turnStart + "assistant\n")
	}
	return b.String()
}

// lastAssistant returns the content of the last assistant turn of a rendered
// conversation, or the whole text when it has none.
func lastAssistant(text string) string {
	i := strings.LastIndex(text, turnStart+"assistant\n")
	if i < 0 {
		return text
	}
	s := text[i+len(turnStart+"assistant\n"):]
	if j := strings.Index(s, turnEnd); j >= 0 {
		s = s[:j]
	}
	return s
}

// Token ids encode up to four bytes each, as base-257 digits (byte+1) with
// the first byte least significant, so that they decode back to the text.
const vocabLimit = 257 * 257 * 257 * 257

func encodeTokens(s string) []int64 {
	ids := make([]int64, 0, tokenCount(s))
	for i := 0; i < len(s); i += 4 {
		var id int64
		for j := min(i+4, len(s)) - 1; j >= i; j-- {
			id = id*257 + int64(s[j]) + 1
		}
		ids = append(ids, id)
	}
	return ids
}

var errBadToken = errors.New("token id out of vocabulary")

func decodeTokens(ids []int64) (string, error) {
	b := make([]byte, 0, 4*len(ids))
	for _, id := range ids {
		if id <= 0 || id >= vocabLimit {
			return "", errBadToken
		}
		for id > 0 {
			d := id % 257
			if d == 0 {
				return "", errBadToken
			}
			b = append(b, byte(d-1))
			id /= 257
		}
	}
	return string(b), nil
}
