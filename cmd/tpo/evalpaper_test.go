package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tpoproject/tpo/eval"
	"github.com/tpoproject/tpo/tpotest"
)

// alpacaFigures is the JSON line of tpo eval alpaca, as a script reads it.
type alpacaFiguresJSON struct {
	Command         string   `json:"command"`
	WinRate         float64  `json:"win_rate"`
	StandardError   float64  `json:"standard_error"`
	NWins           int      `json:"n_wins"`
	NWinsBase       int      `json:"n_wins_base"`
	NDraws          int      `json:"n_draws"`
	NTotal          int      `json:"n_total"`
	DiscreteWinRate float64  `json:"discrete_win_rate"`
	AvgLength       int      `json:"avg_length"`
	LCWinRate       *float64 `json:"length_controlled_winrate"`
	LCStandardError *float64 `json:"lc_standard_error"`
	LCGLM           string   `json:"lc_glm"`
	NoregEstimate   *float64 `json:"lc_noreg_estimate"`
	NoregSE         *float64 `json:"lc_noreg_estimate_standard_error"`
	LengthAdjusted  *float64 `json:"length_adjusted_estimate"`
	Annotations     int      `json:"annotations"`
	Generator       string   `json:"generator"`
	Baseline        string   `json:"baseline"`
	Judged          int      `json:"judged"`
	Reused          int      `json:"reused"`
	RequestErrors   int      `json:"request_errors"`
}

func TestEvalAlpacaAnnotations(t *testing.T) {
	dir := t.TempDir()
	// Preferences 2, 1, 1.5, 1.75 (minus 1: 1, 0, 0.5, 0.75): win rate
	// 56.25%; wins 2, baseline wins 1, draws 1; discrete (2 + 0.5)/4 =
	// 62.5%; the model's outputs are 3, 1, 2 and 4 characters: 2.5,
	// truncated to 2. The standard error: deviations 0.4375, -0.5625,
	// -0.0625, 0.1875, squares summing to 0.546875, over 3, square root,
	// over 2.
	rows := []kv{
		{"instruction": "i0", "output_1": "b", "generator_1": "base", "output_2": "abc", "generator_2": "m", "preference": 2},
		{"instruction": "i1", "output_1": "b", "generator_1": "base", "output_2": "a", "generator_2": "m", "preference": 1},
		{"instruction": "i2", "output_1": "b", "generator_1": "base", "output_2": "ab", "generator_2": "m", "preference": 1.5},
		{"instruction": "i3", "output_1": "b", "generator_1": "base", "output_2": "abcd", "generator_2": "m", "preference": 1.75},
	}
	arr, _ := json.MarshalIndent(rows, "", "  ")
	files := map[string]string{"annotations.json": string(arr), "annotations.jsonl": jsonLines(t, rows[0], rows[1], rows[2], rows[3])}
	wantSE := 100 * math.Sqrt(0.546875/3) / 2
	for name, text := range files {
		path := writeTemp(t, dir, name, text)
		code, stdout, stderr := cli(t, "", "eval", "alpaca", "--annotations", path, "--json")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, stderr)
		}
		var got alpacaFiguresJSON
		lastJSON(t, stdout, &got)
		if got.Command != "alpaca" || !near(got.WinRate, 56.25) || !near(got.StandardError, wantSE) || got.NWins != 2 || got.NWinsBase != 1 ||
			got.NDraws != 1 || got.NTotal != 4 || !near(got.DiscreteWinRate, 62.5) || got.AvgLength != 2 || got.Annotations != 4 ||
			got.Generator != "m" || got.Baseline != "base" || got.LCWinRate != nil || got.LengthAdjusted == nil {
			t.Errorf("%s: %+v", name, got)
		}
	}
	// AlpacaEval's own file, raw_completion objects and nulls included
	// (eval/testdata/README.md): one win, one draw, one loss.
	code, stdout, stderr := cli(t, "", "eval", "alpaca", "--annotations", "../../eval/testdata/alpacaeval_annotations_alpaca-7b.json", "--json")
	var official alpacaFiguresJSON
	lastJSON(t, stdout, &official)
	if code != 0 || official.NTotal != 3 || official.NWins != 1 || official.NDraws != 1 || official.Generator != "alpaca-7b" || official.Baseline != "gpt4_1106_preview" {
		t.Errorf("AlpacaEval's annotations: exit %d, %+v\n%s", code, official, stderr)
	}

	path := filepath.Join(dir, "annotations.json")
	code, stdout, _ = cli(t, "", "eval", "alpaca", "--annotations", path)
	for _, s := range []string{"AlpacaEval: m against base, 4 annotations\n", "  win rate: 56.2% (standard error 21.35)\n",
		"  length-adjusted win rate: ", "(an estimate, not AlpacaEval's LC: its GLM without the instruction-difficulty term; give --lc-weights for the LC)",
		"  wins 2, draws 1, baseline wins 1, of 4; discrete win rate 62.5%\n", "  average length: 2 characters\n"} {
		if code != 0 || !strings.Contains(stdout, s) {
			t.Errorf("report lacks %q:\n%s", s, stdout)
		}
	}
	if strings.Contains(stdout, "length-controlled") {
		t.Errorf("the estimate is called length-controlled:\n%s", stdout)
	}

	// With AlpacaEval's instruction difficulties alone, its
	// length_controlled_noreg GLM (here all difficulties are 0 and the
	// lengths differ: a GLM of the length alone, predicted at equal
	// lengths): an estimate, not the leaderboard's LC, and named so.
	weights := filepath.Join(dir, "weights")
	if err := os.Mkdir(weights, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTemp(t, weights, "instruction_difficulty.csv", ",instruction_difficulty\n0,0\n1,0\n2,0\n3,0\n")
	code, stdout, stderr = cli(t, "", "eval", "alpaca", "--annotations", path, "--lc-weights", weights, "--json")
	var got alpacaFiguresJSON
	lastJSON(t, stdout, &got)
	if code != 0 || got.LCWinRate != nil || got.LCStandardError != nil || got.NoregEstimate == nil || got.NoregSE == nil ||
		got.LCGLM != eval.GLMLengthControlledNoReg || got.LengthAdjusted != nil || strings.Contains(stdout, `"length_controlled_winrate"`) {
		t.Errorf("with instruction_difficulty.csv: exit %d, %+v\n%s%s", code, got, stdout, stderr)
	}
	code, stdout, _ = cli(t, "", "eval", "alpaca", "--annotations", path, "--lc-weights", filepath.Join(weights, "instruction_difficulty.csv"))
	if code != 0 || strings.Contains(stdout, "length-controlled win rate") ||
		!strings.Contains(stdout, "  length-controlled estimate: ") || !strings.Contains(stdout, "not AlpacaEval's LC: its length_controlled_noreg GLM") {
		t.Errorf("report with the noreg estimate: exit %d\n%s", code, stdout)
	}
	// With df_gamed.csv too, the leaderboard's GLM, length_controlled_v1:
	// the LC, under AlpacaEval's name.
	writeTemp(t, weights, "df_gamed.csv", "index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline\n"+
		"0,0.2,1,0,False\n1,0.3,-1,0,False\n2,0.4,1,0,False\n3,0.1,0.5,0,False\n")
	code, stdout, stderr = cli(t, "", "eval", "alpaca", "--annotations", path, "--lc-weights", weights, "--json")
	got = alpacaFiguresJSON{}
	lastJSON(t, stdout, &got)
	if code != 0 || got.LCWinRate == nil || got.LCStandardError == nil || got.NoregEstimate != nil || got.LCGLM != eval.GLMLengthControlled {
		t.Errorf("with df_gamed.csv: exit %d, %+v\n%s", code, got, stderr)
	}
	code, stdout, _ = cli(t, "", "eval", "alpaca", "--annotations", path, "--lc-weights", weights)
	if code != 0 || !strings.Contains(stdout, "  length-controlled win rate: ") || !strings.Contains(stdout, "AlpacaEval's length_controlled_v1 GLM") {
		t.Errorf("report with the LC: exit %d\n%s", code, stdout)
	}
	// With AlpacaEval's published weights naming the model, its own LC:
	// all difficulties are 0, so sigmoid(0.5 - 0) for every instruction.
	writeTemp(t, weights, "baseline_gpt4_1106_preview.csv", ",np.tanh(std_delta_len),instruction_difficulty,not_gamed_baseline.astype(float)\n"+
		"base,0,0,0\nm,-1,0.3,0.5\n")
	code, stdout, stderr = cli(t, "", "eval", "alpaca", "--annotations", path, "--lc-weights", weights, "--json")
	var published struct {
		alpacaFiguresJSON
		Source string `json:"lc_weights_source"`
	}
	lastJSON(t, stdout, &published)
	if code != 0 || published.LCWinRate == nil || !near(*published.LCWinRate, 100/(1+math.Exp(-0.5))) || published.Source != "published" {
		t.Errorf("with the published weights: exit %d, %+v\n%s", code, published, stderr)
	}
	code, stdout, _ = cli(t, "", "eval", "alpaca", "--annotations", path, "--lc-weights", weights)
	if code != 0 || !strings.Contains(stdout, "  length-controlled win rate: 62.2% (standard error 0.00; AlpacaEval's own: its published length_controlled_v1 weights for m)") {
		t.Errorf("report with the published LC: exit %d\n%s", code, stdout)
	}
	// Difficulties for 5 instructions, annotations of 4: the other figures
	// are reported, the LC's absence is said, and the exit status is 1.
	five := writeTemp(t, dir, "five.csv", "index,instruction_difficulty\n0,0\n1,0\n2,0\n3,0\n4,1\n")
	code, stdout, stderr = cli(t, "", "eval", "alpaca", "--annotations", path, "--lc-weights", five)
	if code != 1 || !strings.Contains(stdout, "win rate: 56.2%") ||
		!strings.Contains(stderr, "no length-controlled win rate: the length-controlled win rate needs an annotation for each of the 5 instructions of AlpacaEval, in its order; there are 4") {
		t.Errorf("LC impossible: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"eval", "alpaca"}, 2, "give either --annotations FILE"},
		{[]string{"eval", "alpaca", "--annotations", path, "--results", path}, 2, "give either --annotations FILE"},
		{[]string{"eval", "alpaca", "--annotations", filepath.Join(dir, "none.json")}, 2, "--annotations: open "},
		{[]string{"eval", "alpaca", "--annotations", writeTemp(t, dir, "bad.json", "[{\"instruction\": \"x\", \"preference\": \"high\"}]")}, 1,
			`bad.json:1 (element 0): field "preference": want float64, got string`},
		{[]string{"eval", "alpaca", "--annotations", path, "--lc-weights", writeTemp(t, dir, "w.csv", "a,b\n")}, 1, `w.csv: no column "index" (columns: "a", "b")`},
		{[]string{"eval", "alpaca", "--results", path}, 2, "give --judge-url URL"},
	} {
		t.Setenv("TPO_JUDGE_URL", "")
		code, _, stderr := cli(t, "", tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", tt.args[2:], code, stderr, tt.code, tt.msg)
		}
	}
}

func TestEvalAlpacaJudge(t *testing.T) {
	dir := t.TempDir()
	data := writeTemp(t, dir, "alpaca_eval.jsonl", jsonLines(t,
		kv{"id": "0", "prompt": "Name a color.", "dataset": "helpful_base"},
		kv{"id": "1", "prompt": "Name a fruit.", "dataset": "koala"},
		kv{"id": "2", "prompt": "Name a tree.", "dataset": "oasst"},
		kv{"id": "3", "prompt": "Name a bird.", "dataset": "oasst"},
	))
	base := writeTemp(t, dir, "gpt4.jsonl", jsonLines(t,
		kv{"id": "0", "model": "gpt4_1106_preview", "answer": "Red."},
		kv{"id": "1", "model": "gpt4_1106_preview", "answer": "A ripe mango, sweet."},
		kv{"id": "2", "model": "gpt4_1106_preview", "answer": "Oak."},
		kv{"id": "3", "model": "gpt4_1106_preview", "answer": "Robin."},
	))
	// The lengths decide: 0 and 2 are won, 1 lost; 3 has no answer.
	res := writeTemp(t, dir, "llama-tpo.jsonl", jsonLines(t,
		kv{"id": "2", "response": "The English oak."},
		kv{"id": "0", "response": "Cerulean blue."},
		kv{"id": "1", "response": "Fig."},
	))
	judge := &lengthJudge{orders: map[string]int{}}
	var calls atomic.Int64
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Models: []string{"judge-7b"}, Respond: func(r tpotest.ChatRequestRecord, i int) string {
		calls.Add(1)
		return judge.respond(r, i)
	}})
	out := filepath.Join(dir, "annotations.json")
	args := []string{"eval", "alpaca", "--results", res, "--data", data, "--baseline", base, "--judge-url", srv.URL(), "--out", out, "--json"}
	code, stdout, stderr := cli(t, "", args...)
	if code != 0 || !strings.Contains(stderr, "warning: 1 question of --data has no answer in the results; it is not judged, and the figures are over the others: 3") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got alpacaFiguresJSON
	lastJSON(t, stdout, &got)
	if got.NTotal != 3 || got.NWins != 2 || got.NWinsBase != 1 || !near(got.WinRate, 200.0/3) || got.Generator != "llama-tpo" ||
		got.Baseline != "gpt4_1106_preview" || got.Judged != 3 || got.Reused != 0 || calls.Load() != 6 {
		t.Errorf("%+v, %d calls", got, calls.Load())
	}
	// The annotations: AlpacaEval's format, a JSON array in the order of
	// the instructions.
	anns, err := eval.ReadAnnotationsFile(out)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(out)
	if len(anns) != 3 || raw[0] != '[' {
		t.Fatalf("annotations:\n%s", raw)
	}
	want := []struct {
		id, instr, dataset, out1, out2 string
		pref                           float64
	}{{"0", "Name a color.", "helpful_base", "Red.", "Cerulean blue.", 2}, {"1", "Name a fruit.", "koala", "A ripe mango, sweet.", "Fig.", 1}, {"2", "Name a tree.", "oasst", "Oak.", "The English oak.", 2}}
	for i, w := range want {
		a := anns[i]
		if a.ID != w.id || a.Instruction != w.instr || a.Dataset != w.dataset || a.Output1 != w.out1 || a.Output2 != w.out2 ||
			a.Generator1 != "gpt4_1106_preview" || a.Generator2 != "llama-tpo" || a.Annotator != "tpo-judge:judge-7b" || a.Preference == nil || *a.Preference != w.pref {
			t.Errorf("annotation %d: %+v", i, a)
		}
	}
	// The same command again judges nothing, and the annotations score
	// the same with --annotations: one code path.
	code, stdout, _ = cli(t, "", args...)
	var again alpacaFiguresJSON
	lastJSON(t, stdout, &again)
	if code != 0 || again.Judged != 0 || again.Reused != 3 || calls.Load() != 6 || again.WinRate != got.WinRate {
		t.Errorf("again: exit %d, %+v, %d calls", code, again, calls.Load())
	}
	code, stdout, _ = cli(t, "", "eval", "alpaca", "--annotations", out, "--json")
	var scored alpacaFiguresJSON
	lastJSON(t, stdout, &scored)
	if code != 0 || scored.WinRate != got.WinRate || scored.StandardError != got.StandardError || scored.NTotal != 3 {
		t.Errorf("--annotations of the written file: %+v", scored)
	}
	// JSON Lines output, kept as the items come.
	outl := filepath.Join(dir, "annotations.jsonl")
	if code, _, stderr := cli(t, "", "eval", "alpaca", "--results", res, "--data", data, "--baseline", base, "--judge-url", srv.URL(), "--out", outl); code != 0 {
		t.Fatalf("jsonl: exit %d: %s", code, stderr)
	}
	if lines, _ := eval.ReadAnnotationsFile(outl); len(lines) != 3 || lines[1].ID != "1" {
		t.Errorf("JSON Lines annotations: %+v", lines)
	}
}

var (
	arenaARe = regexp.MustCompile(`(?s)<assistant_a_answer>\n(.*?)\n</assistant_a_answer>|\[A\] (.*?)\n`)
	arenaBRe = regexp.MustCompile(`(?s)<assistant_b_answer>\n(.*?)\n</assistant_b_answer>|\[B\] (.*?)$`)
)

// arenaJudge is a fake Arena-Hard judge that prefers the longer answer,
// much so when it is twice as long.
func arenaJudge(req tpotest.ChatRequestRecord, _ int) string {
	user := req.Messages[len(req.Messages)-1].Content
	ma, mb := arenaARe.FindStringSubmatch(user), arenaBRe.FindStringSubmatch(user)
	if ma == nil || mb == nil {
		return "I cannot see the answers."
	}
	a, b := len(ma[1]+ma[2]), len(mb[1]+mb[2])
	switch {
	case a >= 2*b:
		return "A is far more complete. [[A>>B]]"
	case a > b:
		return "[[A>B]]"
	case b >= 2*a:
		return "[[B>>A]]"
	case b > a:
		return "[[B>A]]"
	}
	return "[[A=B]]"
}

type arenaJSON struct {
	Command string `json:"command"`
	Scores  []struct {
		Model     string         `json:"model"`
		Score     float64        `json:"score"`
		Lower     float64        `json:"lower"`
		Upper     float64        `json:"upper"`
		Display   string         `json:"display"`
		Questions int            `json:"questions"`
		Games     int            `json:"games"`
		NullGames int            `json:"null_games"`
		Battles   int            `json:"battles"`
		Verdicts  map[string]int `json:"verdicts"`
	} `json:"scores"`
	Judge         string `json:"judge"`
	Judged        int    `json:"judged"`
	Reused        int    `json:"reused"`
	RequestErrors int    `json:"request_errors"`
}

func TestEvalArenaHardJudgments(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "model_judgment", "gpt-4-1106-preview")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	g := func(s string) kv {
		if s == "" {
			return kv{"user_prompt": "u", "judgment": "j", "score": nil}
		}
		return kv{"user_prompt": "u", "judgment": "j", "score": s}
	}
	// The model: q1 B>A then A>>B (4 wins), q2 A=B then B>A (a tie, a
	// loss), q3 A>>B then null (3 losses), q4 B<A and B=A, which v0.1
	// does not score: 4.5 points of 9 battles, 50%. The other model wins
	// every game: 100%.
	m := writeTemp(t, dir, "llama-tpo.jsonl", jsonLines(t,
		kv{"question_id": "q1", "model": "llama-tpo", "judge": "gpt-4-1106-preview", "games": []kv{g("B>A"), g("A>>B")}},
		kv{"question_id": "q2", "model": "llama-tpo", "judge": "gpt-4-1106-preview", "games": []kv{g("A=B"), g("B>A")}},
		kv{"question_id": "q3", "model": "llama-tpo", "judge": "gpt-4-1106-preview", "games": []kv{g("A>>B"), g("")}},
		kv{"question_id": "q4", "model": "llama-tpo", "judge": "gpt-4-1106-preview", "games": []kv{g("B<A"), g("B=A")}},
	))
	writeTemp(t, dir, "strong.jsonl", jsonLines(t,
		kv{"uid": "q1", "model": "strong", "judge": "gpt-4-1106-preview", "games": []kv{g("B>>A"), g("A>B")}},
	))
	code, stdout, stderr := cli(t, "", "eval", "arena-hard", "--judgments", m, "--json", "--seed", "3")
	var got arenaJSON
	lastJSON(t, stdout, &got)
	if code != 0 || len(got.Scores) != 1 || got.Judge != "gpt-4-1106-preview" {
		t.Fatalf("exit %d: %+v\n%s", code, got, stderr)
	}
	s := got.Scores[0]
	if s.Model != "llama-tpo" || !near(s.Score, 50) || s.Questions != 3 || s.Games != 5 || s.NullGames != 3 || s.Battles != 9 ||
		s.Lower > 50 || s.Upper < 50 || !strings.HasPrefix(s.Display, "50.0 (-") {
		t.Errorf("score %+v", s)
	}
	if s.Verdicts["A>B"] != 1 || s.Verdicts["A>>B"] != 1 || s.Verdicts["A=B"] != 1 || s.Verdicts["B>A"] != 1 || s.Verdicts["B>>A"] != 1 {
		t.Errorf("verdicts %v", s.Verdicts)
	}
	// The same seed gives the same interval.
	_, again, _ := cli(t, "", "eval", "arena-hard", "--judgments", m, "--json", "--seed", "3")
	if again != stdout {
		t.Errorf("same seed, different output:\n%s\n%s", stdout, again)
	}
	// A directory: every model, best first.
	code, stdout, _ = cli(t, "", "eval", "arena-hard", "--judgments", dir)
	for _, w := range []string{"Arena-Hard-Auto v0.1, judge gpt-4-1106-preview\n", "strong     100.0 (+0.0, +0.0)   1          2      0           4\n", "llama-tpo  50.0 (-",
		"verdicts of llama-tpo (A = the model, B = the baseline): A>>B 1, A>B 1, A=B 1, B>A 1, B>>A 1\n"} {
		if code != 0 || !strings.Contains(stdout, w) {
			t.Errorf("report lacks %q:\n%s", w, stdout)
		}
	}
	if i, j := strings.Index(stdout, "strong "), strings.Index(stdout, "llama-tpo "); i > j {
		t.Errorf("not best first:\n%s", stdout)
	}
	bad := writeTemp(t, t.TempDir(), "bad.jsonl", jsonLines(t, kv{"question_id": "q1", "model": "m", "games": []kv{g("A>B")}}))
	if code, _, stderr := cli(t, "", "eval", "arena-hard", "--judgments", bad); code != 1 ||
		!strings.Contains(stderr, `bad.jsonl:1: field "games": want 2 games (baseline first, then the model first), got 1`) {
		t.Errorf("bad file: exit %d, %s", code, stderr)
	}
	silent := writeTemp(t, t.TempDir(), "silent.jsonl", jsonLines(t, kv{"question_id": "q1", "model": "silent", "games": []kv{g(""), g("")}}))
	if code, stdout, stderr := cli(t, "", "eval", "arena-hard", "--judgments", silent); code != 1 || !strings.Contains(stdout, "silent  no verdicts ") ||
		!strings.Contains(stderr, "no game of silent got a verdict Arena-Hard scores") {
		t.Errorf("no verdicts: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := cli(t, "", "eval", "arena-hard", "--judgments", t.TempDir()); code != 2 || !strings.Contains(stderr, "no .jsonl files") {
		t.Errorf("empty directory: exit %d, %s", code, stderr)
	}
}

func TestEvalArenaHardJudge(t *testing.T) {
	dir := t.TempDir()
	data := writeTemp(t, dir, "question.jsonl", jsonLines(t,
		kv{"id": "q1", "prompt": "Explain DNS.", "question_id": "q1"},
		kv{"id": "q2", "prompt": "Explain TCP.", "question_id": "q2"},
	))
	base := writeTemp(t, dir, "baseline_gpt-4-0314.jsonl", jsonLines(t,
		kv{"question_id": "q1", "model": "gpt-4-0314", "answer": "Names to addresses."},
		kv{"question_id": "q2", "model": "gpt-4-0314", "answer": "A reliable stream protocol over IP, with ordering."},
	))
	res := writeTemp(t, dir, "tpo.jsonl", jsonLines(t,
		kv{"id": "q1", "response": "DNS maps names to addresses, through a hierarchy of servers."},
		kv{"id": "q2", "response": "Reliable bytes."},
	))
	var calls atomic.Int64
	var system atomic.Value
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Models: []string{"judge-70b"}, Respond: func(r tpotest.ChatRequestRecord, i int) string {
		calls.Add(1)
		if r.Messages[0].Role == "system" {
			system.Store(r.Messages[0].Content)
		}
		return arenaJudge(r, i)
	}})
	out := filepath.Join(dir, "judgments.jsonl")
	args := []string{"eval", "arena-hard", "--results", res, "--data", data, "--baseline", base, "--judge-url", srv.URL(), "--out", out, "--json"}
	code, stdout, stderr := cli(t, "", args...)
	var got arenaJSON
	lastJSON(t, stdout, &got)
	// q1: the model's answer is over twice as long: B>>A, then A>>B (6
	// wins); q2: over twice as short: A>>B, then B>>A (6 losses): 50%.
	if code != 0 || len(got.Scores) != 1 || got.Scores[0].Model != "tpo" || !near(got.Scores[0].Score, 50) || got.Scores[0].Battles != 12 ||
		got.Judge != "judge-70b" || got.Judged != 2 || calls.Load() != 4 {
		t.Fatalf("exit %d: %+v, %d calls\n%s", code, got, calls.Load(), stderr)
	}
	if s, _ := system.Load().(string); !strings.Contains(s, "[[A>>B]] Assistant A is significantly better") {
		t.Errorf("not tpo's prompt: %q", s)
	}
	// The judgments are in Arena-Hard's format: they score the same.
	js, err := eval.ReadArenaJudgments(mustRead(t, out), out)
	if err != nil || len(js) != 2 || js[0].QuestionID != "q1" || js[0].Model != "tpo" || js[0].Judge != "judge-70b" ||
		*js[0].Games[0].Score != "B>>A" || *js[0].Games[1].Score != "A>>B" || !strings.Contains(js[0].Games[0].UserPrompt, "Names to addresses.\n</assistant_a_answer>") {
		t.Fatalf("judgments %+v, %v", js, err)
	}
	code, stdout, _ = cli(t, "", "eval", "arena-hard", "--judgments", out, "--json")
	var scored arenaJSON
	lastJSON(t, stdout, &scored)
	if code != 0 || scored.Scores[0].Score != got.Scores[0].Score || scored.Scores[0].Display != got.Scores[0].Display {
		t.Errorf("--judgments of the written file: %+v", scored)
	}
	// Again: nothing to judge.
	code, stdout, _ = cli(t, "", args...)
	lastJSON(t, stdout, &got)
	if code != 0 || got.Judged != 0 || got.Reused != 2 || calls.Load() != 4 {
		t.Errorf("again: %+v, %d calls", got, calls.Load())
	}
	// Arena-Hard's own configuration, used unchanged: the judged answers
	// get new prompts, so they are judged again.
	cfg := writeTemp(t, dir, "judge_config.yaml", `name: a judge configuration in Arena-Hard-Auto's form
judge_model: judge-70b
system_prompt: "Compare two answers. Say [[A>>B]], [[A>B]], [[A=B]], [[B>A]] or [[B>>A]]."
prompt_template: ["Question: {question_1}\n[A] {answer_1}\n[B] {answer_2}"]
regex_pattern: \[\[([AB<>=]+)\]\]
`)
	code, stdout, stderr = cli(t, "", append(args, "--judge-template", cfg)...)
	lastJSON(t, stdout, &got)
	if code != 0 || got.Judged != 2 || calls.Load() != 8 || !near(got.Scores[0].Score, 50) {
		t.Errorf("with the configuration: exit %d, %+v, %d calls\n%s", code, got, calls.Load(), stderr)
	}
	if s, _ := system.Load().(string); s != "Compare two answers. Say [[A>>B]], [[A>B]], [[A=B]], [[B>A]] or [[B>>A]]." {
		t.Errorf("system prompt %q", s)
	}
	for _, tt := range []struct{ file, text, msg string }{
		{"t.tmpl", `{{define "user"}}x{{end}}`, `no {{define "system"}}`},
		{"c.yaml", "system_prompt: s\n", "no prompt_template"},
		{"d.yaml", "prompt_template: ['{question}']\n", "unknown field {question}"},
		{"e.yaml", "prompt_template: [a, b]\n", "e.yaml:1: prompt_template: want a string, or a list of one string"},
	} {
		p := writeTemp(t, dir, tt.file, tt.text)
		if code, _, stderr := cli(t, "", append(args, "--judge-template", p)...); code != 2 || !strings.Contains(stderr, tt.msg) {
			t.Errorf("%s: exit %d, %s", tt.file, code, stderr)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/tpo -run %s -update)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test ./cmd/tpo -run %s -update if meant):\n%s", path, t.Name(), got)
	}
}

// TestEvalPaperReportsGolden keeps the readable reports of tpo eval alpaca
// and tpo eval arena-hard on fixed inputs in golden files.
func TestEvalPaperReportsGolden(t *testing.T) {
	dir := t.TempDir()
	var anns []any
	prefs := []float64{2, 1, 1.5, 1.75, 1.25, 2, 1, 1, 2, 1.5}
	for i, p := range prefs {
		anns = append(anns, kv{"instruction": fmt.Sprintf("i%d", i), "output_1": strings.Repeat("b", 10+i),
			"generator_1": "gpt4_1106_preview", "output_2": strings.Repeat("m", 5+3*i), "generator_2": "llama-tpo",
			"annotator": "weighted_alpaca_eval_gpt4_turbo", "preference": p})
	}
	path := writeTemp(t, dir, "annotations.jsonl", jsonLines(t, anns...))
	code, alpaca, stderr := cli(t, "", "eval", "alpaca", "--annotations", path)
	if code != 0 {
		t.Fatalf("alpaca: exit %d: %s", code, stderr)
	}
	labels := [][2]string{{"B>A", "A>>B"}, {"A=B", "B>A"}, {"A>>B", "A>B"}, {"B>>A", "A>B"}, {"A>B", "A=B"}, {"B>A", "B>A"}}
	var js []any
	for i, l := range labels {
		js = append(js, kv{"question_id": fmt.Sprintf("q%d", i), "model": "llama-tpo", "judge": "gpt-4-1106-preview",
			"games": []kv{{"user_prompt": "u", "judgment": "j", "score": l[0]}, {"user_prompt": "u", "judgment": "j", "score": l[1]}}})
	}
	path = writeTemp(t, dir, "llama-tpo.jsonl", jsonLines(t, js...))
	code, arena, stderr := cli(t, "", "eval", "arena-hard", "--judgments", path, "--seed", "1")
	if code != 0 {
		t.Fatalf("arena-hard: exit %d: %s", code, stderr)
	}
	checkGolden(t, "eval_paper_reports.golden", "$ tpo eval alpaca --annotations annotations.jsonl\n"+alpaca+
		"\n$ tpo eval arena-hard --judgments llama-tpo.jsonl --seed 1\n"+arena)
}

func TestEvalArenaHardJudgeFollowUp(t *testing.T) {
	// A judge that gives its verdict only when asked to continue, in
	// Arena-Hard-Auto v0.1's words: with v0.1's configuration (two
	// attempts) every game gets A=B; with number_of_judgment_attempts: 1
	// no game does, and the judge is asked once per game.
	dir := t.TempDir()
	data := writeTemp(t, dir, "question.jsonl", jsonLines(t, kv{"id": "q1", "prompt": "Explain DNS.", "question_id": "q1"}))
	base := writeTemp(t, dir, "base.jsonl", jsonLines(t, kv{"question_id": "q1", "model": "gpt-4-0314", "answer": "Names."}))
	res := writeTemp(t, dir, "tpo.jsonl", jsonLines(t, kv{"id": "q1", "response": "Names to addresses."}))
	var calls atomic.Int64
	srv := tpotest.NewChatServer(t, tpotest.ChatOptions{Models: []string{"j"}, Respond: func(r tpotest.ChatRequestRecord, _ int) string {
		calls.Add(1)
		if last := r.Messages[len(r.Messages)-1]; last.Content == eval.ArenaV01Continue {
			return "My final verdict is tie: [[A=B]]"
		}
		return "Both answers are short."
	}})
	for _, tt := range []struct {
		attempts      string
		calls         int64
		battles, code int
	}{{"", 4, 2, 0}, {"number_of_judgment_attempts: 1\n", 2, 0, 1}} {
		calls.Store(0)
		cfg := writeTemp(t, dir, "judge_config.yaml", "system_prompt: Judge.\nprompt_template: [\"{question_1} {answer_1} {answer_2}\"]\n"+tt.attempts)
		code, stdout, stderr := cli(t, "", "eval", "arena-hard", "--results", res, "--data", data, "--baseline", base, "--judge-url", srv.URL(),
			"--judge-template", cfg, "--json")
		var got arenaJSON
		lastJSON(t, stdout, &got)
		if code != tt.code || calls.Load() != tt.calls || len(got.Scores) != 1 || got.Scores[0].Battles != tt.battles {
			t.Errorf("%q: exit %d, %d calls, %+v; want exit %d, %d calls, %d battles\n%s", tt.attempts, code, calls.Load(), got.Scores, tt.code, tt.calls, tt.battles, stderr)
		}
	}
}
