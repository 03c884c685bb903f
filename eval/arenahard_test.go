package eval

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest"
)

func TestParseArenaVerdict(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"A is right.\n\nMy final verdict: [[A>B]]", "A>B", nil},
		{"[[B>>A]]", "B>>A", nil},
		{"[[A=B]] as I said, [[A=B]]", "A=B", nil},
		{"mirrored: [[B<<A]]", "B<<A", nil},
		{"first [[A>B]], then [[B>A]]", "", ErrAmbiguousVerdict},
		{"no label here", "", ErrNoVerdict},
		{"[[C]] is not an Arena-Hard label", "", ErrNoVerdict},
		{"[A>B] single brackets", "", ErrNoVerdict},
	}
	for _, tt := range tests {
		got, err := ParseArenaVerdict(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("ParseArenaVerdict(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func label(s string) *string { return &s }

// game returns a game with the verdict s ("" for null).
func game(s string) *ArenaGame {
	if s == "" {
		return &ArenaGame{}
	}
	return &ArenaGame{Score: label(s)}
}

func judgment(id string, g1, g2 string) ArenaJudgment {
	return ArenaJudgment{QuestionID: id, Model: "m", Games: []*ArenaGame{game(g1), game(g2)}}
}

func TestArenaHardScoresByHand(t *testing.T) {
	// Game 1 shows the baseline as A, game 2 the model. The model's
	// battles: q1: B>A (a win), A>>B (3 wins); q2: A=B (a tie), B>A (a
	// loss); q3: A>>B (3 losses), null; q4: an unknown label (null), A=B
	// (a tie); q5: B>>A (3 wins), A>B (a win). Points: 4 + 0.5 + 0 + 0.5
	// + 4 = 9 of 14 battles: 64.29%.
	js := []ArenaJudgment{
		judgment("q1", "B>A", "A>>B"),
		judgment("q2", "A=B", "B>A"),
		judgment("q3", "A>>B", ""),
		judgment("q4", "A>C", "A=B"),
		judgment("q5", "B>>A", "A>B"),
	}
	got := ArenaHardScores(js, ArenaOptions{Seed: 7})
	if len(got) != 1 {
		t.Fatalf("%d scores, want 1", len(got))
	}
	s := got[0]
	if !near(s.Score, 100*9.0/14, 1e-9) {
		t.Errorf("score %v, want %v", s.Score, 100*9.0/14)
	}
	if s.Questions != 5 || s.Games != 8 || s.NullGames != 2 || s.Battles != 14 || s.Rounds != 100 || s.Confidence != 0.95 {
		t.Errorf("counts %+v", s)
	}
	// From the model's side (A = the model): q1 A>B, A>>B; q2 A=B, B>A;
	// q3 B>>A; q4 A=B; q5 A>>B, A>B.
	wantVerdicts := map[string]int{"A>B": 2, "A>>B": 2, "A=B": 2, "B>A": 1, "B>>A": 1}
	if s.Verdicts == nil {
		t.Fatal("no verdicts")
	}
	if !reflect.DeepEqual(s.Verdicts, wantVerdicts) {
		t.Errorf("verdicts %v, want %v", s.Verdicts, wantVerdicts)
	}
	if s.Lower > s.Score || s.Upper < s.Score || s.Lower < 0 || s.Upper > 100 || s.Upper-s.Lower < 1 {
		t.Errorf("interval [%v, %v] around %v", s.Lower, s.Upper, s.Score)
	}
}

func TestArenaHardMirroredLabelsMakeNoBattles(t *testing.T) {
	// v0.1's show_result.py scores A>>B, A>B, A=B, B>A and B>>A alone: the
	// mirrored spellings are null games. Left: q1 game 2 A>B (a win), q2
	// game 1 B>A (a win), q3 game 2 B>>A (3 losses): 2 points of 5.
	js := []ArenaJudgment{
		judgment("q1", "B<A", "A>B"),
		judgment("q2", "B>A", "B=A"),
		judgment("q3", "A<<B", "B>>A"),
		judgment("q4", "B<<A", "A<B"),
	}
	s := ArenaHardScores(js, ArenaOptions{})[0]
	if s.Battles != 5 || s.Games != 3 || s.NullGames != 5 || s.Questions != 3 || !near(s.Score, 40, 1e-9) {
		t.Errorf("score %+v, want 40 from 5 battles of 3 games, 5 null games", s)
	}
	want := map[string]int{"A>>B": 0, "A>B": 2, "A=B": 0, "B>A": 0, "B>>A": 1}
	if !reflect.DeepEqual(s.Verdicts, want) {
		t.Errorf("verdicts %v, want %v", s.Verdicts, want)
	}
}

func TestBootstrapSharesPooled(t *testing.T) {
	// The battles of every model are resampled together, as v0.1 samples
	// its whole table: a model's count varies from one resample to the
	// next. The pool is m: 1, 0, 0.5; n: 1, 0. Round 1 draws 0 1 2 3 4
	// (m 0.5, n 0.5); round 2 draws 0 0 1 3 4 (m 2/3, n 0.5); round 3
	// draws 3 3 3 3 3 (n 1; m is absent and has no share).
	pool := []pooledBattle{{0, 1}, {0, 0}, {0, 0.5}, {1, 1}, {1, 0}}
	draws := []int{0, 1, 2, 3, 4, 0, 0, 1, 3, 4, 3, 3, 3, 3, 3}
	k := 0
	shares := bootstrapShares(pool, 2, 3, func(n int) int {
		if n != 5 {
			t.Errorf("draw from %d, want the pool of 5", n)
		}
		k++
		return draws[k-1]
	})
	if !reflect.DeepEqual(shares, [][]float64{{0.5, 2.0 / 3}, {0.5, 0.5, 1}}) {
		t.Fatalf("shares %v", shares)
	}
	// Percentiles of the ratings (logits 0 and ln 2), NumPy's linear
	// interpolation: 2.5% at 0.025 of the way, 97.5% at 0.975, as win
	// probabilities 1/(1+2^-0.025) and 1/(1+2^-0.975).
	if got, want := ratingPercentile(shares[0], 0.025), 1/(1+math.Pow(2, -0.025)); !near(got, want, 1e-12) {
		t.Errorf("2.5%%: %v, want %v", got, want)
	}
	if got, want := ratingPercentile(shares[0], 0.975), 1/(1+math.Pow(2, -0.975)); !near(got, want, 1e-12) {
		t.Errorf("97.5%%: %v, want %v", got, want)
	}
	// n's 1 is an infinite rating: between 0.5 and 1 the interpolation is
	// of the probabilities.
	if got := ratingPercentile(shares[1], 0.975); !near(got, 0.5+0.5*0.95, 1e-12) {
		t.Errorf("97.5%% of n: %v, want 0.975", got)
	}
}

func TestArenaHardBootstrapSeeded(t *testing.T) {
	var js []ArenaJudgment
	labels := []string{"A>B", "B>A", "A=B", "B>>A", "A>>B", "B>A"}
	for i := range 60 {
		js = append(js, judgment(string(rune('a'+i%26))+string(rune('a'+i/26)), labels[i%6], labels[(i+2)%6]))
	}
	a := ArenaHardScores(js, ArenaOptions{Seed: 1})
	b := ArenaHardScores(js, ArenaOptions{Seed: 1})
	c := ArenaHardScores(js, ArenaOptions{Seed: 2})
	if !reflect.DeepEqual(a, b) {
		t.Errorf("same seed, different results: %+v, %+v", a, b)
	}
	if a[0].Lower == c[0].Lower && a[0].Upper == c[0].Upper {
		t.Errorf("seeds 1 and 2 gave the same interval [%v, %v]", a[0].Lower, a[0].Upper)
	}
	if a[0].Score != c[0].Score {
		t.Errorf("the score depends on the seed: %v, %v", a[0].Score, c[0].Score)
	}
	wide := ArenaHardScores(js, ArenaOptions{Seed: 1, Rounds: 400, Confidence: 0.99})[0]
	if wide.Rounds != 400 || wide.Upper-wide.Lower <= a[0].Upper-a[0].Lower {
		t.Errorf("99%% interval [%v, %v] not wider than 95%% [%v, %v]", wide.Lower, wide.Upper, a[0].Lower, a[0].Upper)
	}
}

func TestArenaHardScoresExtremesAndModels(t *testing.T) {
	js := []ArenaJudgment{
		judgment("q1", "B>>A", "A>>B"), // m wins everything
		{QuestionID: "q1", Model: "weak", Games: []*ArenaGame{game("A>B"), game("B>A")}},
		{QuestionID: "q1", Model: "silent", Games: []*ArenaGame{game(""), nil}},
	}
	got := ArenaHardScores(js, ArenaOptions{})
	if len(got) != 3 || got[0].Model != "m" || got[1].Model != "weak" || got[2].Model != "silent" {
		t.Fatalf("models in order: %+v", got)
	}
	if got[0].Score != 100 || got[0].String() != "100.0 (+0.0, +0.0)" {
		t.Errorf("all wins: %v", got[0])
	}
	if got[1].Score != 0 || got[1].String() != "0.0 (+0.0, +0.0)" {
		t.Errorf("all losses: %v", got[1])
	}
	if got[2].Questions != 0 || got[2].NullGames != 2 || got[2].Battles != 0 || got[2].String() != "no verdicts" || len(got[2].Verdicts) != 5 {
		t.Errorf("no verdict: %+v", got[2])
	}
}

func TestArenaScoreString(t *testing.T) {
	s := ArenaScore{Score: 69.73, Lower: 67.6, Upper: 71.6, Battles: 1000}
	if got := s.String(); got != "69.7 (-2.1, +1.9)" {
		t.Errorf("String() = %q", got)
	}
	// v0.1 rounds the score and the bounds to two decimals first: 69.74
	// and 67.59, 2.15 apart (2.1499999999999915 in binary), rounds to
	// -2.1, where the unrounded -2.1549 would give -2.2.
	s = ArenaScore{Score: 69.7449, Lower: 67.59, Upper: 71.6, Battles: 1000}
	if got := s.String(); got != "69.7 (-2.1, +1.9)" {
		t.Errorf("String() = %q, want v0.1's rounding", got)
	}
}

func TestReadArenaJudgments(t *testing.T) {
	data := `{"question_id": "q1", "model": "m", "judge": "gpt-4-1106-preview", "games": [{"user_prompt": "u1", "judgment": "text", "score": "A>B"}, {"user_prompt": "u2", "judgment": "more", "score": null}]}

{"uid": "q2", "category": "arena-hard-v0.1", "judge": "j", "model": "m", "baseline": "gpt-4-0314", "games": [{"score": "B>>A", "judgment": {"answer": "x"}, "prompt": [{"role": "user", "content": "p"}]}, null]}
`
	js, err := ReadArenaJudgments([]byte(data), "m.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if len(js) != 2 || js[0].ID() != "q1" || js[1].ID() != "q2" || js[1].Games[1] != nil || *js[1].Games[0].Score != "B>>A" ||
		*js[0].Games[0].Score != "A>B" || js[0].Games[1].Score != nil || js[0].Games[0].UserPrompt != "u1" {
		t.Fatalf("read %+v", js)
	}
	s := ArenaHardScores(js, ArenaOptions{})[0]
	// q1: game 1 A>B is a loss for the model; q2: game 1 B>>A, 3 wins.
	if s.Battles != 4 || !near(s.Score, 75, 1e-9) || s.NullGames != 2 {
		t.Errorf("score %+v", s)
	}
	for _, tt := range []struct{ data, want string }{
		{"{\"model\": \"m\", \"games\": [null, null]}\n", `m.jsonl:1: no "question_id" or "uid"`},
		{"{\"question_id\": \"q\", \"games\": [null, null]}\n", `m.jsonl:1: field "model": missing or empty`},
		{"\n{\"question_id\": \"q\", \"model\": \"m\", \"games\": [null]}\n", `m.jsonl:2: field "games": want 2 games`},
		{"{\"question_id\": \"q\", \"model\": \"m\", \"games\": [{\"score\": 3}, null]}\n", `m.jsonl:1: field "games.score": want string, got number`},
		{"{oops\n", `m.jsonl:1: invalid character`},
	} {
		if _, err := ReadArenaJudgments([]byte(tt.data), "m.jsonl"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.data, err, tt.want)
		}
	}
}

func TestArenaPromptFormat(t *testing.T) {
	p, err := NewArenaPromptFormat("Judge well.", "Q: {question_1}\n[A] {answer_1}\n[B] {answer_2}\n{{literal}}")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := p.Messages("why?", "because", "no {idea}")
	if err != nil {
		t.Fatal(err)
	}
	want := []tpo.Message{{Role: tpo.RoleSystem, Content: "Judge well."}, {Role: tpo.RoleUser, Content: "Q: why?\n[A] because\n[B] no {idea}\n{literal}"}}
	if !reflect.DeepEqual(msgs, want) {
		t.Errorf("messages %+v, want %+v", msgs, want)
	}
	v2, err := NewArenaPromptFormat("", "{QUESTION}|{ANSWER_A}|{ANSWER_B}")
	if err != nil {
		t.Fatal(err)
	}
	if msgs, _ := v2.Messages("q", "a", "b"); len(msgs) != 1 || msgs[0].Content != "q|a|b" {
		t.Errorf("later format: %+v", msgs)
	}
	for tmpl, want := range map[string]string{
		"{question}":        "unknown field {question}",
		"{answer_1":         "unclosed field",
		"x } y":             "single '}'",
		"{answer_1:>10}":    "unknown field {answer_1:>10}",
		"{question_1} {0} ": "unknown field {0}",
	} {
		if _, err := NewArenaPromptFormat("s", tmpl); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", tmpl, err, want)
		}
	}
}

func TestArenaPromptTemplate(t *testing.T) {
	p, err := ParseArenaTemplate(`{{define "system"}}sys{{end}}{{define "user"}}{{.Question}}/{{.AnswerA}}/{{.AnswerB}}{{end}}`)
	if err != nil {
		t.Fatal(err)
	}
	if msgs, _ := p.Messages("q", "a", "b"); len(msgs) != 2 || msgs[0].Content != "sys" || msgs[1].Content != "q/a/b" {
		t.Errorf("messages %+v", msgs)
	}
	for tmpl, want := range map[string]string{
		`{{define "user"}}x{{end}}`:                                      `no {{define "system"}}`,
		`{{define "system"}}s{{end}}{{define "user"}}{{.Answer}}{{end}}`: "user template",
		`{{define "system"}}`:                                            "unexpected EOF",
	} {
		if _, err := ParseArenaTemplate(tmpl); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", tmpl, err, want)
		}
	}
	// tpo's own prompt asks for the five labels and quotes both answers.
	msgs, err := DefaultArenaPrompt().Messages("What is 2+2?", "four", "five")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"[[A>>B]]", "[[A>B]]", "[[A=B]]", "[[B>A]]", "[[B>>A]]"} {
		if !strings.Contains(msgs[0].Content, l) {
			t.Errorf("system prompt lacks %s", l)
		}
	}
	if !strings.Contains(msgs[1].Content, "What is 2+2?") || strings.Index(msgs[1].Content, "four") > strings.Index(msgs[1].Content, "five") {
		t.Errorf("user prompt:\n%s", msgs[1].Content)
	}
}

var arenaAnswers = regexp.MustCompile(`(?s)<assistant_a_answer>\n(.*?)\n</assistant_a_answer>.*<assistant_b_answer>\n(.*?)\n</assistant_b_answer>`)

func TestArenaJudgeRun(t *testing.T) {
	// The judge prefers "good" answers strongly, says nothing about
	// "mute" ones until reminded, and hedges about "hedge" ones.
	var mu sync.Mutex
	var reminders int
	pol := &tpotest.Policy{
		Respond: func(_ int, req tpo.GenerateRequest, _ int) string {
			m := arenaAnswers.FindStringSubmatch(req.Messages[1].Content)
			if m == nil {
				t.Errorf("prompt without answers:\n%s", req.Messages[1].Content)
				return ""
			}
			a, b := m[1], m[2]
			if len(req.Messages) > 2 {
				mu.Lock()
				reminders++
				mu.Unlock()
				return "Fine: [[A=B]]"
			}
			switch {
			case strings.Contains(a+b, "mute"):
				return "Hmm."
			case strings.Contains(a+b, "hedge"):
				return "[[A>B]] or maybe [[B>A]]"
			case strings.Contains(a, "good"):
				return "[[A>>B]]"
			case strings.Contains(b, "good"):
				return "[[B>>A]]"
			}
			return "[[A=B]]"
		},
		Err: func(_ int, req tpo.GenerateRequest) error {
			if strings.Contains(req.Messages[1].Content, "broken") {
				return errors.New("server down")
			}
			return nil
		},
	}
	items := []ArenaItem{
		{ID: "1", Question: "q1", Answer: "good answer", Baseline: "plain"},
		{ID: "2", Question: "q2", Answer: "mute answer", Baseline: "plain"},
		{ID: "3", Question: "q3", Answer: "hedge answer", Baseline: "plain"},
		{ID: "4", Question: "q4", Answer: "broken answer", Baseline: "plain"},
	}
	j := &ArenaJudge{Model: pol, ModelName: "m", JudgeName: "judge"}
	got := map[string]ArenaJudgment{}
	err := j.Run(context.Background(), items, 3, func(a ArenaJudgment) error {
		got[a.ID()] = a
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	score := func(id string, g int) string {
		if s := got[id].Games[g].Score; s != nil {
			return *s
		}
		return "null"
	}
	// Game 1 shows the baseline first: the good answer is B there.
	for _, c := range []struct {
		id, g1, g2 string
	}{{"1", "B>>A", "A>>B"}, {"2", "A=B", "A=B"}, {"3", "null", "null"}, {"4", "null", "null"}} {
		if score(c.id, 0) != c.g1 || score(c.id, 1) != c.g2 {
			t.Errorf("item %s: games %s, %s; want %s, %s", c.id, score(c.id, 0), score(c.id, 1), c.g1, c.g2)
		}
	}
	if reminders != 2 {
		t.Errorf("%d reminders, want 2 (the mute item's games; not the hedging ones)", reminders)
	}
	if !got["4"].Failed() || got["1"].Failed() || got["4"].Games[0].Error == "" {
		t.Errorf("failures: %+v", got["4"].Games[0])
	}
	if a := got["1"]; a.Model != "m" || a.Judge != "judge" || !strings.Contains(a.Games[0].UserPrompt, "plain\n</assistant_a_answer>") {
		t.Errorf("judgment %+v", a)
	}
	prompts, err := j.UserPrompts(items[0])
	if err != nil || prompts[0] != got["1"].Games[0].UserPrompt || prompts[1] != got["1"].Games[1].UserPrompt {
		t.Errorf("UserPrompts do not match the games' prompts: %v", err)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestArenaPromptGolden keeps tpo's Arena-Hard judge prompt in
// testdata/arenahard_prompt.golden, so that a change to it is reviewed.
func TestArenaPromptGolden(t *testing.T) {
	msgs, err := DefaultArenaPrompt().Messages("What is 2+2?", "4", "Four, since 2+2=4.")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "=== %s\n%s\n", m.Role, m.Content)
	}
	golden := filepath.Join("testdata", "arenahard_prompt.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./eval -run ArenaPromptGolden -update)", err)
	}
	if b.String() != string(want) {
		t.Errorf("the prompt differs from %s (go test ./eval -update if meant):\n%s", golden, b.String())
	}
}

func TestArenaJudgeFollowUpAsV01(t *testing.T) {
	// With Arena-Hard-Auto's own configuration, a reply without a label is
	// followed by v0.1's own words, and the judgment keeps every reply,
	// each after a newline, as v0.1's gen_judgment.py writes it.
	var followUps []string
	pol := &tpotest.Policy{Respond: func(_ int, req tpo.GenerateRequest, _ int) string {
		if len(req.Messages) > 2 {
			followUps = append(followUps, req.Messages[len(req.Messages)-1].Content)
			return "My final verdict is [[B>A]]"
		}
		return "Let me think."
	}}
	v01, err := NewArenaPromptFormat("sys", "{question_1}|{answer_1}|{answer_2}")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		prompt    *ArenaPrompt
		score     string
		judgment  string
		followUps []string
	}{
		{"v0.1: two attempts", v01, "B>A", `"\nLet me think.\nMy final verdict is [[B>A]]"`, []string{ArenaV01Continue}},
		{"number_of_judgment_attempts: 1", v01.WithAttempts(1), "", `"\nLet me think."`, nil},
		{"tpo's prompt: its own reminder", DefaultArenaPrompt(), "B>A", `"\nLet me think.\nMy final verdict is [[B>A]]"`, []string{arenaReminder}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			followUps = nil
			j := &ArenaJudge{Model: pol, Prompt: tt.prompt}
			g := j.game(context.Background(), "q", "a", "b")
			got := ""
			if g.Score != nil {
				got = *g.Score
			}
			if got != tt.score || string(g.Judgment) != tt.judgment || !reflect.DeepEqual(followUps, tt.followUps) {
				t.Errorf("score %q, judgment %s, follow-ups %q; want %q, %s, %q", got, g.Judgment, followUps, tt.score, tt.judgment, tt.followUps)
			}
		})
	}
}
