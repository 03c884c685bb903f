package eval

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The five verdicts of Arena-Hard-Auto's judge on one game, with the answer
// shown as A first: A much better, better, a tie, B better, B much better.
const (
	LabelAMuchBetter = "A>>B"
	LabelABetter     = "A>B"
	LabelTie         = "A=B"
	LabelBBetter     = "B>A"
	LabelBMuchBetter = "B>>A"
)

// StrongWeight is how many times a strong verdict (A>>B, B>>A) counts.
const StrongWeight = 3

// arenaLabels maps each verdict Arena-Hard-Auto v0.1 scores to A's score
// and its weight. v0.1's show_result.py (get_battles_from_judgment) scores
// these five alone: a game whose score is anything else, a mirrored
// spelling such as B<A or B=A included, or null, makes no battle.
var arenaLabels = map[string]struct {
	score  float64
	weight int
}{
	LabelAMuchBetter: {1, StrongWeight}, LabelABetter: {1, 1}, LabelTie: {0.5, 1}, LabelBBetter: {0, 1}, LabelBMuchBetter: {0, StrongWeight},
}

// mirroredLabels says each of the five verdicts with A and B swapped.
var mirroredLabels = map[string]string{
	LabelAMuchBetter: LabelBMuchBetter, LabelABetter: LabelBBetter, LabelTie: LabelTie,
	LabelBBetter: LabelABetter, LabelBMuchBetter: LabelAMuchBetter,
}

// ErrAmbiguousVerdict is returned by ParseArenaVerdict when a reply gives
// different verdicts: Arena-Hard-Auto v0.1 scores such a game as null, and
// does not ask again.
var ErrAmbiguousVerdict = errors.New("the judge's reply gives different verdicts")

// arenaVerdict matches a verdict in double brackets, as Arena-Hard-Auto's
// pattern \[\[([AB<>=]+)\]\] does.
var arenaVerdict = regexp.MustCompile(`\[\[([AB<>=]+)\]\]`)

// ParseArenaVerdict reads an Arena-Hard judge's verdict, one of the five
// labels in double brackets ([[A>B]]), as Arena-Hard-Auto v0.1 does: the
// same label may appear several times, different ones make the reply
// ambiguous (ErrAmbiguousVerdict), and none is ErrNoVerdict.
func ParseArenaVerdict(reply string) (string, error) {
	var found []string
	for _, m := range arenaVerdict.FindAllStringSubmatch(reply, -1) {
		if !slices.Contains(found, m[1]) {
			found = append(found, m[1])
		}
	}
	switch len(found) {
	case 0:
		return "", ErrNoVerdict
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w: %s", ErrAmbiguousVerdict, strings.Join(found, ", "))
}

// ArenaJudgment is one line of an Arena-Hard-Auto judgment file
// (model_judgment/JUDGE/MODEL.jsonl): the judge's two games on a question
// between the baseline and the model. In the first game the baseline's
// answer is shown as A, in the second the model's. Both the v0.1 format
// (question_id; a game's judgment a string, with its user_prompt) and the
// later one (uid, category, baseline; a game's judgment an object, with its
// prompt) are read.
type ArenaJudgment struct {
	QuestionID string       `json:"question_id,omitempty"`
	UID        string       `json:"uid,omitempty"`
	Category   string       `json:"category,omitempty"`
	Model      string       `json:"model"`
	Judge      string       `json:"judge,omitempty"`
	Baseline   string       `json:"baseline,omitempty"`
	Games      []*ArenaGame `json:"games"`
}

// ID is the question's id: question_id, or uid.
func (j ArenaJudgment) ID() string {
	if j.QuestionID != "" {
		return j.QuestionID
	}
	return j.UID
}

// ArenaGame is one game of an ArenaJudgment. Score is the verdict label,
// nil (null) when the judge gave none that could be read.
type ArenaGame struct {
	UserPrompt string          `json:"user_prompt,omitempty"`
	Prompt     json.RawMessage `json:"prompt,omitempty"`
	Judgment   json.RawMessage `json:"judgment,omitempty"`
	Score      *string         `json:"score"`
	// Error is tpo's addition: why the game's request failed, so that
	// running the judging again redoes it.
	Error string `json:"error,omitempty"`
}

// label returns the game's verdict, if it is one Arena-Hard-Auto v0.1
// scores.
func (g *ArenaGame) label() (string, bool) {
	if g == nil || g.Score == nil {
		return "", false
	}
	_, ok := arenaLabels[*g.Score]
	return *g.Score, ok
}

// ReadArenaJudgments reads an Arena-Hard-Auto judgment file: JSON Lines of
// ArenaJudgment. Errors name the file and line.
func ReadArenaJudgments(data []byte, name string) ([]ArenaJudgment, error) {
	var out []ArenaJudgment
	err := eachJSONLine(bytes.NewReader(data), name, func(line []byte, where string) error {
		var j ArenaJudgment
		if err := json.Unmarshal(line, &j); err != nil {
			return fmt.Errorf("%s: %w", where, describeJSONError(err))
		}
		switch {
		case j.ID() == "":
			return fmt.Errorf(`%s: no "question_id" or "uid"`, where)
		case j.Model == "":
			return fmt.Errorf(`%s: field "model": missing or empty`, where)
		case len(j.Games) != 2:
			return fmt.Errorf(`%s: field "games": want 2 games (baseline first, then the model first), got %d`, where, len(j.Games))
		}
		out = append(out, j)
		return nil
	})
	return out, err
}

// ArenaOptions tunes ArenaHardScores. The zero value is Arena-Hard-Auto's
// setting: 100 bootstrap rounds, a 95% interval.
type ArenaOptions struct {
	Rounds     int
	Seed       uint64
	Confidence float64
}

// ArenaScore is a model's Arena-Hard score: its Bradley-Terry probability of
// beating the baseline, in percent, with a bootstrap interval.
type ArenaScore struct {
	Model string `json:"model"`
	// Score is the win probability against the baseline, in percent;
	// Lower and Upper bound its interval at level Confidence.
	Score      float64 `json:"score"`
	Lower      float64 `json:"lower"`
	Upper      float64 `json:"upper"`
	Confidence float64 `json:"confidence"`
	Rounds     int     `json:"rounds"`
	// Questions counts the questions with at least one scored game;
	// Games the scored games, NullGames those without a verdict Arena-Hard
	// scores (left out); Battles the games with strong verdicts counted
	// StrongWeight times.
	Questions int `json:"questions"`
	Games     int `json:"games"`
	NullGames int `json:"null_games"`
	Battles   int `json:"battles"`
	// Verdicts counts the games by verdict (each of the five, 0 included),
	// from the model's side: the labels of the second game, and the
	// mirrored labels of the first.
	Verdicts map[string]int `json:"verdicts"`
}

// String formats the score as Arena-Hard-Auto v0.1's show_result.py prints
// it: the score and the bounds rounded to two decimals first, then the
// score and the bounds' distances from it to one: "69.7 (-2.1, +1.9)";
// "no verdicts" when no game was scored.
func (s ArenaScore) String() string {
	if s.Battles == 0 {
		return "no verdicts"
	}
	score, lo, hi := pyRound(s.Score, 2), pyRound(s.Lower, 2), pyRound(s.Upper, 2)
	return fmt.Sprintf("%.1f (%s, %s)", pyRound(score, 1), signed(lo-score), signed(hi-score))
}

// pyRound rounds x to n decimals as Python's round does: to the nearest
// decimal of the exact binary value, ties to even.
func pyRound(x float64, n int) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', n, 64), 64)
	return v
}

func signed(x float64) string {
	x = pyRound(x, 1)
	if x == 0 {
		x = 0 // no "-0.0"
	}
	return fmt.Sprintf("%+.1f", x)
}

// battle is one weighted battle's outcome for the model: 1 a win, 0 a
// loss, 0.5 a tie.
type battle = float64

// modelBattles turns a model's judgments into battles, as Arena-Hard-Auto
// v0.1 does: in the first game the model is B, in the second A; a strong
// verdict makes StrongWeight battles; a game without one of the five
// verdicts makes none.
func modelBattles(js []ArenaJudgment, s *ArenaScore) []battle {
	var bs []battle
	for _, j := range js {
		scored := false
		for g, game := range j.Games {
			label, ok := game.label()
			if !ok {
				s.NullGames++
				continue
			}
			v := arenaLabels[label]
			score, fromModel := v.score, label
			if g == 0 {
				score, fromModel = 1-score, mirroredLabels[label]
			}
			s.Verdicts[fromModel]++
			s.Games++
			scored = true
			for range v.weight {
				bs = append(bs, score)
			}
		}
		if scored {
			s.Questions++
		}
	}
	s.Battles = len(bs)
	return bs
}

// winProbability is the maximum-likelihood Bradley-Terry probability that
// the model beats the baseline, given battles against the baseline alone
// (a tie counting as half a win and half a loss, as Arena-Hard-Auto's
// logistic regression counts it). With one opponent the likelihood's
// maximum is where the modelled probability equals the share of points
// won, so that is the score; all wins and all losses give 1 and 0, where
// the fitted ratings diverge.
func winProbability(bs []battle) float64 {
	if len(bs) == 0 {
		return math.NaN()
	}
	return mean(bs)
}

// ArenaHardScores scores each model of the judgments against the baseline
// as Arena-Hard-Auto v0.1's show_result.py does: the Bradley-Terry win
// probability from all its battles, and a percentile interval from
// opt.Rounds bootstrap resamples of the battles of all the models together
// (as v0.1 resamples its whole table of battles), the percentiles taken
// of the ratings and turned into win probabilities. The resamples are
// drawn with tpo's generator, seeded by opt.Seed, not NumPy's: the
// interval is v0.1's up to the bootstrap's randomness. Models are sorted
// by score, best first.
func ArenaHardScores(js []ArenaJudgment, opt ArenaOptions) []ArenaScore {
	if opt.Rounds <= 0 {
		opt.Rounds = 100
	}
	if opt.Confidence <= 0 || opt.Confidence >= 1 {
		opt.Confidence = 0.95
	}
	byModel := map[string][]ArenaJudgment{}
	var models []string
	for _, j := range js {
		if _, ok := byModel[j.Model]; !ok {
			models = append(models, j.Model)
		}
		byModel[j.Model] = append(byModel[j.Model], j)
	}
	out := make([]ArenaScore, len(models))
	var pool []pooledBattle
	for i, m := range models {
		s := ArenaScore{Model: m, Confidence: opt.Confidence, Rounds: opt.Rounds, Verdicts: map[string]int{
			LabelAMuchBetter: 0, LabelABetter: 0, LabelTie: 0, LabelBBetter: 0, LabelBMuchBetter: 0,
		}}
		bs := modelBattles(byModel[m], &s)
		if len(bs) > 0 {
			s.Score = 100 * winProbability(bs)
		}
		for _, b := range bs {
			pool = append(pool, pooledBattle{model: i, outcome: b})
		}
		out[i] = s
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0xa7e4a_4a7d))
	shares := bootstrapShares(pool, len(models), opt.Rounds, rng.IntN)
	alpha := (1 - opt.Confidence) / 2
	for i := range out {
		if out[i].Battles > 0 {
			out[i].Lower = 100 * ratingPercentile(shares[i], alpha)
			out[i].Upper = 100 * ratingPercentile(shares[i], 1-alpha)
		}
	}
	slices.SortStableFunc(out, func(a, b ArenaScore) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	return out
}

// pooledBattle is a battle in the table of every model's battles.
type pooledBattle struct {
	model   int
	outcome battle
}

// bootstrapShares resamples the pool rounds times, each time as many
// battles as it holds, drawn with replacement by draw(n) (an index in
// [0, n)), and returns for each model its share of points in each resample
// that holds any of its battles (v0.1 has no rating for a model absent
// from a resample).
func bootstrapShares(pool []pooledBattle, models, rounds int, draw func(n int) int) [][]float64 {
	shares := make([][]float64, models)
	if len(pool) == 0 {
		return shares
	}
	points := make([]float64, models)
	counts := make([]int, models)
	for range rounds {
		clear(points)
		clear(counts)
		for range pool {
			b := pool[draw(len(pool))]
			points[b.model] += b.outcome
			counts[b.model]++
		}
		for m := range shares {
			if counts[m] > 0 {
				shares[m] = append(shares[m], points[m]/float64(counts[m]))
			}
		}
	}
	return shares
}

// ratingPercentile is the q-quantile of the ratings of win probabilities
// ps, as a win probability: v0.1 takes NumPy's percentile (linear
// interpolation) of the Elo ratings, 400 log10(p/(1-p)) above the
// baseline's, and turns it back into a probability. The interpolation is
// in logit space, which is the same; where a neighbour is 0 or 1 (an
// infinite rating, where v0.1's fit stops at some large one) it is in
// probability space.
func ratingPercentile(ps []float64, q float64) float64 {
	if len(ps) == 0 {
		return math.NaN()
	}
	sorted := slices.Sorted(slices.Values(ps))
	pos := q * float64(len(sorted)-1)
	i := int(math.Floor(pos))
	if i >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	t := pos - float64(i)
	a, b := logit(sorted[i]), logit(sorted[i+1])
	if t == 0 || a == b {
		return sorted[i]
	}
	if math.IsInf(a, 0) || math.IsInf(b, 0) {
		return numpyLerp(sorted[i], sorted[i+1], t)
	}
	return sigmoid(numpyLerp(a, b, t))
}

// numpyLerp interpolates from a to b at t as NumPy's percentile does.
func numpyLerp(a, b, t float64) float64 {
	if t >= 0.5 {
		return b - (b-a)*(1-t)
	}
	return a + (b-a)*t
}

func logit(p float64) float64 { return math.Log(p / (1 - p)) }
