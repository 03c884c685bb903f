package eval

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func pref(p float64) *float64 { return &p }

// handAnnotations are seven annotations whose figures are worked out by
// hand in TestAlpacaEvalMetrics.
func handAnnotations() []Annotation {
	return []Annotation{
		{Instruction: "a", Output1: "base", Output2: "ab", Preference: pref(2)},
		{Instruction: "b", Output1: "base", Output2: "héllo", Preference: pref(1)},
		{Instruction: "c", Output1: "base", Output2: "", Preference: pref(1.5)},
		{Instruction: "d", Output1: "base", Output2: "four", Preference: pref(1.75)},
		{Instruction: "e", Output1: "base", Output2: "x", Preference: nil},
		{Instruction: "f", Output1: "base", Output2: "twelve chars", Preference: pref(0)},
		{Instruction: "g", Output1: "base", Output2: "1234567", Preference: pref(2.5)},
	}
}

func TestAlpacaEvalMetrics(t *testing.T) {
	// Preferences 2, 1, 1.5, 1.75 and 0 (an old draw: 1.5) count; null and
	// 2.5 do not. Minus 1: 1, 0, 0.5, 0.75, 0.5, whose mean is 0.55. The
	// squared deviations sum to 0.2025 + 0.3025 + 0.0025 + 0.04 + 0.0025 =
	// 0.55, so the standard error is sqrt(0.55/4)/sqrt(5). Wins: 1 and 0.75;
	// the baseline's: 0; draws: the two 0.5. Discrete: (2 + 2/2)/5.
	// Lengths of output_2 in code points: 2+5+0+4+1+12+7 = 31, over 7
	// annotations: 4.43, truncated to 4.
	got := AlpacaEvalMetrics(handAnnotations())
	want := AlpacaMetrics{
		WinRate: 55, StandardError: 100 * math.Sqrt(0.55/4) / math.Sqrt(5),
		NWins: 2, NWinsBase: 1, NDraws: 2, NTotal: 5, DiscreteWinRate: 60, AvgLength: 4, NotPreferences: 2,
	}
	if !near(got.WinRate, want.WinRate, 1e-12) || !near(got.StandardError, want.StandardError, 1e-12) ||
		!near(got.DiscreteWinRate, want.DiscreteWinRate, 1e-12) {
		t.Errorf("rates = %v, %v, %v; want %v, %v, %v", got.WinRate, got.StandardError, got.DiscreteWinRate,
			want.WinRate, want.StandardError, want.DiscreteWinRate)
	}
	got.WinRate, got.StandardError, got.DiscreteWinRate = want.WinRate, want.StandardError, want.DiscreteWinRate
	if got != want {
		t.Errorf("metrics = %+v, want %+v", got, want)
	}
}

func TestAlpacaEvalMetricsEdges(t *testing.T) {
	tests := []struct {
		name string
		ps   []*float64
		want AlpacaMetrics
	}{
		{"none", nil, AlpacaMetrics{}},
		{"one win: no standard error", []*float64{pref(2)}, AlpacaMetrics{WinRate: 100, NWins: 1, NTotal: 1, DiscreteWinRate: 100}},
		{"weighted: 1.4 loses, 1.6 wins", []*float64{pref(1.4), pref(1.6)},
			AlpacaMetrics{WinRate: 50, StandardError: 10, NWins: 1, NWinsBase: 1, NTotal: 2, DiscreteWinRate: 50}},
		{"only nulls", []*float64{nil, nil}, AlpacaMetrics{NotPreferences: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var anns []Annotation
			for _, p := range tt.ps {
				anns = append(anns, Annotation{Instruction: "q", Preference: p})
			}
			got := AlpacaEvalMetrics(anns)
			// 1.4 and 1.6: deviations 0.1 each, sample sd sqrt(0.02) =
			// 0.1414, over sqrt(2): 0.1.
			if !near(got.StandardError, tt.want.StandardError, 1e-9) || !near(got.WinRate, tt.want.WinRate, 1e-9) {
				t.Errorf("win rate %v, standard error %v; want %v, %v", got.WinRate, got.StandardError, tt.want.WinRate, tt.want.StandardError)
			}
			got.StandardError, got.WinRate = tt.want.StandardError, tt.want.WinRate
			if got != tt.want {
				t.Errorf("metrics = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadAnnotationsFormats(t *testing.T) {
	anns := handAnnotations()
	arr, err := json.MarshalIndent(anns, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	for _, a := range anns {
		b, _ := json.Marshal(a)
		lines.Write(b)
		lines.WriteString("\n\n") // blank lines are skipped
	}
	for name, data := range map[string]string{"annotations.json": string(arr), "annotations.jsonl": lines.String()} {
		got, err := ReadAnnotations([]byte(data), name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, anns) {
			t.Errorf("%s: read %+v, want %+v", name, got, anns)
		}
	}
	// AlpacaEval's own files: pandas' JSON, with escaped slashes and
	// fields tpo does not know.
	official := `[
  {
    "dataset":"helpful_base",
    "instruction":"Why?",
    "output_1":"Because \/ so.",
    "generator_1":"gpt4_1106_preview",
    "output_2":"No.",
    "generator_2":"m",
    "annotator":"weighted_alpaca_eval_gpt4_turbo",
    "preference":1.000039552,
    "time_per_example":0.5
  }
]`
	got, err := ReadAnnotations([]byte(official), "annotations.json")
	if err != nil || len(got) != 1 || got[0].Output1 != "Because / so." || *got[0].Preference != 1.000039552 || got[0].Generator2 != "m" {
		t.Errorf("official file: %+v, %v", got, err)
	}
}

func TestReadAnnotationsErrors(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"array: wrong type", "[\n{\"instruction\": \"a\", \"preference\": 2},\n{\"instruction\": \"b\",\n \"preference\": \"x\"}\n]",
			`a.json:4 (element 1): field "preference": want float64, got string`},
		{"array: no instruction", "[{\"preference\": 2}]", `a.json:1 (element 0): field "instruction": missing or empty`},
		{"array: not closed", "[{\"instruction\": \"a\"}", `a.json:1: `},
		{"lines: bad JSON", "{\"instruction\": \"a\"}\n{oops}\n", `a.json:2: invalid character 'o'`},
		{"lines: wrong type", "{\"instruction\": \"a\", \"output_2\": 5}\n", `a.json:1: field "output_2": want string, got number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadAnnotations([]byte(tt.data), "a.json")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// lcAnnotations returns n annotations of equal lengths whose preferences
// are pref(i), with ids in AlpacaEval's order.
func lcAnnotations(n int, pref func(i int) float64) []Annotation {
	anns := make([]Annotation, n)
	for i := range anns {
		p := 1 + pref(i)
		anns[i] = Annotation{ID: strconv.Itoa(i), Instruction: "q" + strconv.Itoa(i), Output1: "same", Output2: "size",
			Generator1: "base", Generator2: "m", Preference: &p}
	}
	return anns
}

func TestLengthControlledMeanWithoutDifficulty(t *testing.T) {
	// Equal lengths and no difficulty: only the constant term is left, and
	// the fit gives the mean preference. The pattern 1, 0, 1, 0.5 repeats
	// every 4 rows, so every fold of 5 sees the same mean, 0.625: the
	// least penalty wins the cross-validation.
	pattern := []float64{1, 0, 1, 0.5}
	anns := lcAnnotations(100, func(i int) float64 { return pattern[i%4] })
	res, err := LengthControlled(anns, LCData{Difficulty: make([]float64, 100)})
	if err != nil {
		t.Fatal(err)
	}
	if res.GLM != GLMLengthControlledNoReg || !near(res.WinRate, 62.5, 0.01) || res.StandardError > 1e-6 || res.C != 1e4 {
		t.Errorf("LC = %+v, want 62.5%% with no spread, noreg, C = 1e4", res)
	}
}

func TestLengthControlledDifficulty(t *testing.T) {
	// Fractional preferences that the GLM fits exactly: sigmoid(0.5 d +
	// 0.2) for difficulties -1, 0, 1. At C = 1e4 the penalty moves the
	// weights by about 1e-4, so the LC is the mean of sigmoid(-0.3),
	// sigmoid(0.2) and sigmoid(0.7): (0.425557 + 0.549834 + 0.668188)/3.
	diffs := []float64{-1, 0, 1}
	n := 300
	difficulty := make([]float64, n)
	for i := range difficulty {
		difficulty[i] = diffs[i%3]
	}
	anns := lcAnnotations(n, func(i int) float64 { return sigmoid(0.5*difficulty[i] + 0.2) })
	res, err := LengthControlled(anns, LCData{Difficulty: difficulty})
	if err != nil {
		t.Fatal(err)
	}
	want := 100 * (sigmoid(-0.3) + sigmoid(0.2) + sigmoid(0.7)) / 3
	if !near(want, 54.7860, 1e-3) || !near(res.WinRate, want, 0.01) {
		t.Errorf("LC = %v, want %v", res.WinRate, want)
	}
	if !near(res.Weights[1], 0.5, 0.01) || !near(res.Weights[2], 0.2, 0.01) || math.Abs(res.Weights[0]) > 0.01 {
		t.Errorf("weights = %v, want [0 0.5 0.2]", res.Weights)
	}
}

func TestLengthControlledRemovesLength(t *testing.T) {
	// The model's answer is 50 characters longer than the baseline's 7
	// times in 10, and shorter by 50 the other times; the longer answer is
	// preferred with probability 0.9 either way. The raw win rate is 0.7 *
	// 0.9 + 0.3 * 0.1 = 66%; at equal lengths the two are even: the LC is
	// 50%, and the length weight is -logit(0.9)/tanh(50/sd).
	base := strings.Repeat("b", 100)
	var anns []Annotation
	for i := range 200 {
		out2, p := strings.Repeat("m", 150), 1.9
		if i%10 >= 7 {
			out2, p = strings.Repeat("m", 50), 1.1
		}
		anns = append(anns, Annotation{Instruction: "q", Output1: base, Output2: out2, Generator1: "b", Generator2: "m", Preference: pref(p)})
	}
	res, err := LengthControlled(anns, LCData{Difficulty: make([]float64, len(anns))})
	if err != nil {
		t.Fatal(err)
	}
	if raw := AlpacaEvalMetrics(anns).WinRate; !near(raw, 66, 1e-9) {
		t.Errorf("raw win rate %v, want 66", raw)
	}
	deltas := make([]float64, len(anns))
	for i, a := range anns {
		deltas[i] = float64(len(a.Output1) - len(a.Output2))
	}
	wantLength := -math.Log(9) / math.Tanh(50/sampleStd(deltas))
	if !near(res.WinRate, 50, 0.01) || !near(res.Weights[0], wantLength, 0.01) {
		t.Errorf("LC %v, length weight %v; want 50, %v", res.WinRate, res.Weights[0], wantLength)
	}
}

func TestLengthControlledGamedBaselines(t *testing.T) {
	// The gamed rows' weight is 0.1 each: two of them with preference 0
	// weigh as much as 0.2 of the model's single annotation of preference 1.
	// The fit of the constant term alone (lengths equal, no difficulty)
	// gives the model's row alone, since not_gamed_baseline is 0 on the
	// gamed rows: LC = sigmoid(w3) with w3 large, so above 99%.
	gamed := weightedRows{
		X: [][]float64{{0, 0, 0}, {0, 0, 0}},
		Y: []float64{0, 0},
		W: []float64{gamedWeight, gamedWeight},
	}
	anns := lcAnnotations(5, func(int) float64 { return 1 })
	res, err := LengthControlled(anns, LCData{Difficulty: make([]float64, 5), Gamed: gamed})
	if err != nil {
		t.Fatal(err)
	}
	if res.GLM != GLMLengthControlled || res.WinRate < 99 {
		t.Errorf("LC = %+v", res)
	}
}

func TestLengthControlledChecks(t *testing.T) {
	anns := lcAnnotations(3, func(int) float64 { return 1 })
	if _, err := LengthControlled(anns, LCData{Difficulty: make([]float64, 4)}); err == nil ||
		!strings.Contains(err.Error(), "each of the 4 instructions") {
		t.Errorf("count: %v", err)
	}
	anns[1].ID, anns[2].ID = "2", "1"
	if _, err := LengthControlled(anns, LCData{Difficulty: make([]float64, 3)}); err == nil ||
		!strings.Contains(err.Error(), `annotation 1 has id "2"`) {
		t.Errorf("order: %v", err)
	}
	same := lcAnnotations(3, func(int) float64 { return 0.3 })
	for i := range same {
		same[i].Generator2 = same[i].Generator1
	}
	if res, err := LengthControlled(same, LCData{Difficulty: make([]float64, 3)}); err != nil || res.WinRate != 50 {
		t.Errorf("baseline against itself: %+v, %v; want 50", res, err)
	}
}

func TestLengthAdjustedEstimate(t *testing.T) {
	// Equal lengths: the estimate is the mean preference, as the LC
	// without difficulty is.
	pattern := []float64{1, 0, 1, 0.5}
	anns := lcAnnotations(100, func(i int) float64 { return pattern[i%4] })
	if got := LengthAdjustedEstimate(anns); !near(got, 62.5, 0.01) {
		t.Errorf("estimate = %v, want 62.5", got)
	}
	if got := LengthAdjustedEstimate(nil); got != 0 {
		t.Errorf("estimate of nothing = %v", got)
	}
}

func TestFitL1LogisticOptimality(t *testing.T) {
	// At the optimum of |b|_1 + c L(b): for a non-zero weight the gradient
	// of c L is -sign(b_j); for a zero weight it lies in [-1, 1].
	rng := rand.New(rand.NewPCG(3, 4))
	var d weightedRows
	for range 80 {
		x := []float64{rng.NormFloat64(), rng.NormFloat64(), 1}
		d.X = append(d.X, x)
		d.Y = append(d.Y, sigmoid(1.5*x[0]+0.05*x[1]-0.3+0.5*rng.NormFloat64()))
		d.W = append(d.W, 0.1+rng.Float64())
	}
	for _, c := range []float64{0.01, 0.1, 1, 100} {
		beta, ok := fitL1Logistic(d, c)
		if !ok {
			t.Fatalf("C=%v: not converged", c)
		}
		grad, _ := d.gradHess(beta, c)
		for j, b := range beta {
			switch {
			case b > 0 && !near(grad[j], -1, 1e-5), b < 0 && !near(grad[j], 1, 1e-5), b == 0 && math.Abs(grad[j]) > 1+1e-6:
				t.Errorf("C=%v: weight %d = %v with gradient %v: not optimal", c, j, b, grad[j])
			}
		}
		if c == 0.01 && maxAbs(beta) != 0 {
			t.Errorf("C=0.01: weights %v, want all zero under so strong a penalty", beta)
		}
	}
}

func TestReadLCData(t *testing.T) {
	difficulty := ",instruction_difficulty\n1,-0.5\n0,1.25\n2,0\n"
	d, err := ReadLCData(csvFiles("instruction_difficulty.csv", difficulty))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Difficulty, []float64{1.25, -0.5, 0}) || d.GLM() != GLMLengthControlledNoReg {
		t.Errorf("difficulty = %v, GLM %s", d.Difficulty, d.GLM())
	}
	gamed := "index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline,generator_2\n" +
		"0,0.25,0.5,1.5,False,gpt4_1106_preview_verbose\n" +
		"1,,0.1,2.5,False,gpt4_1106_preview_verbose\n" +
		"0,0.75,-1,1.5,False,gpt4_1106_preview_concise\n"
	d, err = ReadLCData(csvFiles("df_gamed.csv", gamed, "instruction_difficulty.csv", difficulty))
	if err != nil {
		t.Fatal(err)
	}
	want := weightedRows{
		X: [][]float64{{math.Tanh(0.5), 1.5, 0}, {math.Tanh(-1), 1.5, 0}},
		Y: []float64{0.25, 0.75},
		W: []float64{0.1, 0.1},
	}
	if !reflect.DeepEqual(d.Gamed, want) || !reflect.DeepEqual(d.Difficulty, []float64{1.5, 2.5}) || d.GLM() != GLMLengthControlled {
		t.Errorf("gamed = %+v, difficulty %v", d.Gamed, d.Difficulty)
	}
	for _, tt := range []struct{ file, data, want string }{
		{"instruction_difficulty.csv", "index,instruction_difficulty\n0,x\n", `instruction_difficulty.csv:2: column "instruction_difficulty": want a number, got "x"`},
		{"instruction_difficulty.csv", "index,instruction_difficulty\n0,1\n2,1\n", "index 2 out of 0..1"},
		{"instruction_difficulty.csv", "index,other\n0,1\n", `no column "instruction_difficulty"`},
		{"df_gamed.csv", "index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline\n0,1.5,0,0,False\n", `df_gamed.csv:2: column "preference": 1.5 is outside [0, 1]`},
		{"other.csv", "a,b\n1,2\n", `other.csv: no column "index"`},
	} {
		_, err := ReadLCData(csvFiles(tt.file, tt.data))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %q: error %v, want %q", tt.file, tt.data, err, tt.want)
		}
	}
}

// csvFiles pairs file names with contents: name, data, name, data...
func csvFiles(kv ...string) map[string]io.Reader {
	m := map[string]io.Reader{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = strings.NewReader(kv[i+1])
	}
	return m
}

func TestReadAlpacaEvalLeaderboardAnnotations(t *testing.T) {
	// Three annotations of AlpacaEval's own annotations.json for alpaca-7b
	// by weighted_alpaca_eval_gpt4_turbo (see testdata/README.md): a
	// raw_completion object, a null one (with null price and time), and
	// preferences 1.0000001827, 1.5 and 1.9830850877.
	anns, err := ReadAnnotationsFile("testdata/alpacaeval_annotations_alpaca-7b.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(anns) != 3 || anns[0].Generator1 != "gpt4_1106_preview" || anns[0].Generator2 != "alpaca-7b" ||
		anns[0].Annotator != "weighted_alpaca_eval_gpt4_turbo" || anns[1].Dataset != "koala" {
		t.Fatalf("read %+v", anns)
	}
	if !strings.HasPrefix(string(anns[0].RawCompletion), `{"finish_reason":"length","index":0,"logprobs":{`) || anns[1].RawCompletion != nil {
		t.Errorf("raw completions %s and %s, want the first object compact and null dropped", anns[0].RawCompletion, anns[1].RawCompletion)
	}
	// Minus 1: 1.827e-7, 0.5 and 0.9830850877, whose mean is
	// 1.4830852704/3; one win, one draw, one of the baseline's wins; the
	// model's outputs are 147, 4 and 3 characters long: 154/3, truncated.
	ps := []float64{1.827e-7, 0.5, 0.9830850877}
	got := AlpacaEvalMetrics(anns)
	if !near(got.WinRate, 100*1.4830852704/3, 1e-9) || !near(got.StandardError, 100*sampleStd(ps)/math.Sqrt(3), 1e-9) {
		t.Errorf("win rate %v (standard error %v), want %v (%v)", got.WinRate, got.StandardError, 100*1.4830852704/3, 100*sampleStd(ps)/math.Sqrt(3))
	}
	got.WinRate, got.StandardError = 0, 0
	if want := (AlpacaMetrics{NWins: 1, NWinsBase: 1, NDraws: 1, NTotal: 3, DiscreteWinRate: 50, AvgLength: 51}); got != want {
		t.Errorf("metrics %+v, want %+v", got, want)
	}
}

func TestReadAnnotationsLenient(t *testing.T) {
	// What tpo only shows may be any JSON value; what it computes with
	// must be a string (or null) and a number (or null).
	data := `[{"instruction": "q", "output_1": null, "output_2": "yes", "generator_1": 7, "generator_2": ["m"],
	  "dataset": null, "annotator": {"name": "j"}, "preference": null, "raw_completion": [1, 2],
	  "time_per_example": "n/a", "price_per_example": {}}]`
	anns, err := ReadAnnotations([]byte(data), "a.json")
	if err != nil {
		t.Fatal(err)
	}
	want := Annotation{Instruction: "q", Output2: "yes", Generator1: "7", Generator2: `["m"]`, Annotator: `{"name":"j"}`,
		RawCompletion: json.RawMessage(`[1,2]`)}
	if !reflect.DeepEqual(anns, []Annotation{want}) {
		t.Errorf("read %+v, want %+v", anns, want)
	}
}

func TestAlpacaEvalMetricsMatchLeaderboard(t *testing.T) {
	// All 805 annotations of gpt4_gamed by weighted_alpaca_eval_gpt4_turbo,
	// without output_1 and raw_completion, which no figure here reads (see
	// testdata/README.md), and the row of gpt4_gamed in AlpacaEval's
	// weighted_alpaca_eval_gpt4_turbo_leaderboard.csv at the same commit.
	// The rates agree to the last bit or a unit or two in the last place:
	// NumPy's summation order is followed, but not every row of the CSV
	// was computed with the same NumPy.
	f, err := os.Open("testdata/alpacaeval_annotations_gpt4_gamed_trimmed.json.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	anns, err := ReadAnnotations(data, "gpt4_gamed")
	if err != nil {
		t.Fatal(err)
	}
	got := AlpacaEvalMetrics(anns)
	// win_rate,standard_error,n_wins,n_wins_base,n_draws,n_total,discrete_win_rate,mode,avg_length
	// 3.7383373713788814,0.6278799633668313,32,771,2,805,4.099378881987578,community,68
	want := AlpacaMetrics{WinRate: 3.7383373713788814, StandardError: 0.6278799633668313, NWins: 32, NWinsBase: 771,
		NDraws: 2, NTotal: 805, DiscreteWinRate: 4.099378881987578, AvgLength: 68}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"win_rate", got.WinRate, want.WinRate}, {"standard_error", got.StandardError, want.StandardError},
		{"discrete_win_rate", got.DiscreteWinRate, want.DiscreteWinRate}} {
		if math.Abs(c.got-c.want) > 4*ulp(c.want) {
			t.Errorf("%s = %v, leaderboard %v", c.name, c.got, c.want)
		}
	}
	got.WinRate, got.StandardError, got.DiscreteWinRate = want.WinRate, want.StandardError, want.DiscreteWinRate
	if got != want {
		t.Errorf("metrics %+v, leaderboard %+v", got, want)
	}
}

// ulp is the distance from x to the next float64.
func ulp(x float64) float64 { return math.Nextafter(x, math.Inf(1)) - x }

func TestNumpySum(t *testing.T) {
	// Ten values: eight partial sums, added in pairs, then the last two
	// one by one. ((1e16+1) + (1+1)) + ((-1e16+1) + (1+1)) loses the two
	// 1s that meet 1e16 (its neighbours are 2 apart): 1e16+2 - 1e16+2 = 4,
	// then 5 and 6. Added in order, four 1s are lost: 5.
	xs := []float64{1e16, 1, 1, 1, -1e16, 1, 1, 1, 1, 1}
	if got := numpySum(xs); got != 6 {
		t.Errorf("numpySum = %v, want 6", got)
	}
	if got := numpySum(xs[:5]); got != 0 {
		t.Errorf("fewer than eight, in order: %v, want 0", got)
	}
	// Past 128 values the sum splits at half, rounded down to a multiple
	// of 8: 136 values are 64 + 72.
	long := make([]float64, 136)
	for i := range long {
		long[i] = float64(i%7) * 0.1
	}
	if got, want := numpySum(long), numpySum(long[:64])+numpySum(long[64:]); got != want {
		t.Errorf("numpySum of 136 = %v, want %v", got, want)
	}
}

func TestLengthControlledPublishedWeights(t *testing.T) {
	// AlpacaEval's published weights (baseline_gpt4_1106_preview.csv: a
	// row per model, pandas' index first) give its own LC for a model on
	// its leaderboard: the mean over the instructions of
	// sigmoid(Δnot_gamed + Δdifficulty * d), Δ the model's weights less
	// the baseline's, as its predict_winrate computes it. Difficulties
	// 0, 1 and -1, m's weights (-1.5, 0.5, 0.25) against the baseline's
	// zeros: sigmoid(0.25), sigmoid(0.75), sigmoid(-0.25).
	weights := ",np.tanh(std_delta_len),instruction_difficulty,not_gamed_baseline.astype(float)\n" +
		"gpt4_1106_preview,0.0000000000000000,0.0000000000000000,0.0000000000000000\n" +
		"m,-1.5,0.5,0.25\n"
	data, err := ReadLCData(csvFiles("baseline_gpt4_1106_preview.csv", weights, "instruction_difficulty.csv", ",instruction_difficulty\n0,0\n1,1\n2,-1\n"))
	if err != nil {
		t.Fatal(err)
	}
	anns := lcAnnotations(3, func(int) float64 { return 1 })
	for i := range anns {
		anns[i].Generator1, anns[i].Generator2 = "gpt4_1106_preview", "m"
	}
	res, err := LengthControlled(anns, data)
	if err != nil {
		t.Fatal(err)
	}
	preds := []float64{sigmoid(0.25), sigmoid(0.75), sigmoid(-0.25)}
	if res.GLM != GLMLengthControlled || res.Source != LCPublishedWeights || res.Weights != [3]float64{-1.5, 0.5, 0.25} ||
		!near(res.WinRate, 100*(preds[0]+preds[1]+preds[2])/3, 1e-12) || !near(res.StandardError, 100*sampleStd(preds)/math.Sqrt(3), 1e-12) {
		t.Errorf("LC %+v, want %v from the published weights", res, 100*(preds[0]+preds[1]+preds[2])/3)
	}
	// A model the weights do not name is fitted (here without the gamed
	// baselines' annotations: length_controlled_noreg).
	for i := range anns {
		anns[i].Generator2 = "new-model"
	}
	if res, err := LengthControlled(anns, data); err != nil || res.Source != LCFitted || res.GLM != GLMLengthControlledNoReg {
		t.Errorf("unpublished model: %+v, %v", res, err)
	}
	// The weights alone give no difficulties.
	if _, err := ReadLCData(csvFiles("w.csv", weights)); err == nil || !strings.Contains(err.Error(), "no instruction difficulties") {
		t.Errorf("weights alone: %v", err)
	}
}
