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

// arenaLabels maps each verdict Arena-Hard-Auto scores, the five and their
// mirrored spellings, to A's score and its weight.
var arenaLabels = map[string]struct {
	score  float64
	weight int
}{
	"A>>B": {1, StrongWeight}, "A>B": {1, 1}, "A=B": {0.5, 1}, "B>A": {0, 1}, "B>>A": {0, StrongWeight},
	"B<<A": {1, StrongWeight}, "B<A": {1, 1}, "B=A": {0.5, 1}, "A<B": {0, 1}, "A<<B": {0, StrongWeight},
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

// label returns the game's verdict, if it is one Arena-Hard-Auto scores.
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

// String formats the score as Arena-Hard-Auto's leaderboard does:
// "69.7 (-2.1, +1.9)"; "no verdicts" when no game was scored.
func (s ArenaScore) String() string {
	if s.Battles == 0 {
		return "no verdicts"
	}
	return fmt.Sprintf("%.1f (%s, %s)", round1(s.Score), signed(s.Lower-s.Score), signed(s.Upper-s.Score))
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

func signed(x float64) string {
	x = round1(x)
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
// verdict makes StrongWeight battles; a game without a scored verdict
// makes none.
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
				score, fromModel = 1-score, mirrorLabel(label)
			}
			s.Verdicts[canonicalLabel(fromModel)]++
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

// mirrorLabel swaps the roles of A and B in a label: the first game's
// verdict said from the model's side.
func mirrorLabel(l string) string {
	return strings.NewReplacer("A", "B", "B", "A").Replace(l)
}

// canonicalLabel writes a label as one of the five (B<A -> A>B).
func canonicalLabel(l string) string {
	v := arenaLabels[l]
	switch {
	case v.score == 0.5:
		return LabelTie
	case v.score == 1 && v.weight > 1:
		return LabelAMuchBetter
	case v.score == 1:
		return LabelABetter
	case v.weight > 1:
		return LabelBMuchBetter
	}
	return LabelBBetter
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

// ArenaHardScores scores each model of the judgments against the baseline:
// the Bradley-Terry win probability from all its battles, and a percentile
// bootstrap interval from opt.Rounds resamples of its battles (Arena-Hard
// resamples battles, not questions), seeded by opt.Seed. Models are
// sorted by score, best first.
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
	var out []ArenaScore
	for _, m := range models {
		s := ArenaScore{Model: m, Confidence: opt.Confidence, Rounds: opt.Rounds, Verdicts: map[string]int{
			LabelAMuchBetter: 0, LabelABetter: 0, LabelTie: 0, LabelBBetter: 0, LabelBMuchBetter: 0,
		}}
		bs := modelBattles(byModel[m], &s)
		if len(bs) > 0 {
			s.Score = 100 * winProbability(bs)
			lo, hi := bootstrapWinProbability(bs, opt)
			s.Lower, s.Upper = 100*lo, 100*hi
		}
		out = append(out, s)
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

// bootstrapWinProbability returns the percentile interval of the win
// probability over resamples of the battles.
func bootstrapWinProbability(bs []battle, opt ArenaOptions) (lo, hi float64) {
	rng := rand.New(rand.NewPCG(opt.Seed, 0xa7e4a_4a7d))
	probs := make([]float64, opt.Rounds)
	sample := make([]battle, len(bs))
	for r := range probs {
		for i := range sample {
			sample[i] = bs[rng.IntN(len(bs))]
		}
		probs[r] = winProbability(sample)
	}
	slices.Sort(probs)
	alpha := (1 - opt.Confidence) / 2
	return quantile(probs, alpha), quantile(probs, 1-alpha)
}
