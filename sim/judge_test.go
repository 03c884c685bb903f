package sim

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/reward"
)

// judgePrompt renders the judge's current default prompt for a response, as
// reward.Judge sends it.
func judgePrompt(t *testing.T, query, response string) []chatMessage {
	t.Helper()
	j, err := reward.NewJudge(reward.JudgeOptions{Options: httpx.Options{URLs: []string{"http://unused/v1"}}, Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := j.Prompt([]tpo.Message{{Role: tpo.RoleUser, Content: query}}, response)
	if err != nil {
		t.Fatal(err)
	}
	var out []chatMessage
	for _, m := range ms {
		out = append(out, chatMessage{Role: string(m.Role), Content: m.Content})
	}
	return out
}

func conversationText(ms []chatMessage) string {
	var b strings.Builder
	for _, m := range ms {
		b.WriteString(m.Role + "\n" + m.Content + "\n")
	}
	return b.String()
}

func TestIsGradingRequest(t *testing.T) {
	resp := "[q=1.250 id=9f3a07c2] The answer is clear."
	tests := []struct {
		name string
		text string
		want bool
	}{
		{"default judge template", conversationText(judgePrompt(t, "Explain TCP slow start.", resp)), true},
		{"judge reminder", "That reply has no grade I can read. Reply with the grade alone: one whole number from 1 to 10.", true},
		{"scale of", "Rate the following response on a scale of 1 to 10.\n\n" + resp, true},
		{"dash", "Score this answer (1-10):\n" + resp, true},
		{"en dash", "Give it a grade, 1–10.\n" + resp, true},
		{"between", "Please give a score between 1 and 10 to the reply below.\n" + resp, true},
		{"out of", "How would you rate it out of 10?\n" + resp, true},
		{"grading template", "Grading rubric. Answer with a number from 1 to 10 only.", true},
		{"no grade word", "Count from 1 to 10 in French.", false},
		{"no scale", "What is a grade school? Score a goal.", false},
		{"other scale", "Rate it from 1 to 5.", false},
		{"far apart", "Grade the essay." + strings.Repeat(" filler", 100) + " Count from 1 to 10.", false},
		{"ten to one", "Score it 10 to 1.", false},
		{"marker digits", "[q=1.10 id=10] [q=1 id=10aa] score", false},
		{"plain prompt", "Explain TCP slow start.", false},
	}
	for _, tt := range tests {
		if got := isGradingRequest(tt.text); got != tt.want {
			t.Errorf("%s: isGradingRequest(%.80q) = %v, want %v", tt.name, tt.text, got, tt.want)
		}
	}
}

// TestTPOPromptsAreNotGrading renders every TPO template with simulated
// texts: none of them may look like a grading request, or the simulator
// would answer a critique with a grade.
func TestTPOPromptsAreNotGrading(t *testing.T) {
	ts := tpo.DefaultTemplates()
	d := tpo.PromptData{
		Query: "Explain TCP slow start.", Chosen: "[q=1.000 id=aa] words", Rejected: "[q=0.000 id=bb] words",
		Loss: "[critique c=cc of=aa,bb] words", Gradient: "[instr from=cc] words", Tag: "0123456789ab",
		Role: "a chosen response to a user query",
	}
	for _, name := range tpo.TemplateNames {
		text, err := ts.Render(name, d)
		if err != nil {
			t.Fatal(err)
		}
		if isGradingRequest(text) {
			t.Errorf("%s reads as a grading request:\n%s", name, text)
		}
	}
}

func TestClassify(t *testing.T) {
	grading := "Grade the reply from 1 to 10. "
	tests := []struct {
		text string
		want kind
	}{
		{"Explain TCP slow start.", kindSample},
		{"[q=1 id=aa] [q=2 id=bb]", kindCritique},
		{"[critique c=cc of=aa] [q=1 id=aa]", kindInstructions},
		{"[instr from=cc] [critique c=cc of=aa] [q=1 id=aa]", kindUpdate},
		{grading + "[q=1 id=aa]", kindGrade},
		{grading + "[q=1 id=aa] [q=2 id=bb]", kindGrade},
		{grading + "no marker at all", kindGrade},
	}
	for _, tt := range tests {
		if got := classify(tt.text, ParseMarkers(tt.text)); got != tt.want {
			t.Errorf("classify(%q) = %v, want %v", tt.text, got, tt.want)
		}
	}
}

func TestMeanGrade(t *testing.T) {
	prev := 0.0
	for r := -8.0; r <= 8; r += 0.25 {
		g := MeanGrade(r)
		if g <= prev || g <= 1 || g >= 10 {
			t.Fatalf("MeanGrade(%v) = %v after %v: want strictly rising within (1, 10)", r, g, prev)
		}
		prev = g
	}
	for _, tt := range []struct{ r, want float64 }{{1, 5.5}, {0, 4.40}, {2, 6.60}, {3, 7.58}, {6, 9.32}, {-2, 2.64}} {
		if got := MeanGrade(tt.r); math.Abs(got-tt.want) > 0.01 {
			t.Errorf("MeanGrade(%v) = %v, want %v", tt.r, got, tt.want)
		}
	}
}

func TestPickGrade(t *testing.T) {
	p := gradeProbs(6.8)
	if g := pickGrade(p, 0, nil); g != 7 {
		t.Errorf("temperature 0 picks %d, want 7", g)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	counts := map[int]int{}
	for range 2000 {
		counts[pickGrade(p, 1, rng)]++
	}
	if counts[7] < counts[6] || counts[6] < counts[5] || len(counts) < 3 {
		t.Errorf("temperature 1 draws %v: want 7 most often, and spread", counts)
	}
	for g := range counts {
		if g < 1 || g > 10 {
			t.Errorf("drew grade %d", g)
		}
	}
}

// gradeResponse is a chat completion as a judge reads it.
type gradeResponse struct {
	Choices []struct {
		Message      struct{ Content string } `json:"message"`
		FinishReason string                   `json:"finish_reason"`
		Logprobs     *choiceLogprobs          `json:"logprobs"`
	} `json:"choices"`
	Usage usage `json:"usage"`
}

func gradeRequest(t *testing.T, url string, body map[string]any) (gradeResponse, map[string]json.RawMessage) {
	t.Helper()
	resp, data := post(t, nil, url+EndpointChat, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	var gr gradeResponse
	if err := json.Unmarshal(data, &gr); err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Choices []map[string]json.RawMessage `json:"choices"`
	}
	json.Unmarshal(data, &raw)
	return gr, raw.Choices[0]
}

func TestGradeWireFormat(t *testing.T) {
	_, ts := newTest(t, Options{Seed: 1, RewardNoise: -1})
	ms := judgePrompt(t, "Explain TCP slow start.", "[q=1.200 id=aa] filler words")
	want := strconv.Itoa(int(math.Round(MeanGrade(1.2)))) // 6

	tests := []struct {
		name    string
		extra   map[string]any
		entries int // top_logprobs entries, -1 for no logprobs
	}{
		{"no logprobs", nil, -1},
		{"logprobs without top", map[string]any{"logprobs": true}, 0},
		{"top 5", map[string]any{"logprobs": true, "top_logprobs": 5}, 5},
		{"top 20", map[string]any{"logprobs": true, "top_logprobs": 20}, 20},
		{"max_tokens 1", map[string]any{"logprobs": true, "top_logprobs": 20, "max_tokens": 1}, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := map[string]any{"model": "sim-policy", "messages": ms, "temperature": 0, "max_tokens": 8, "n": 3}
			for k, v := range tt.extra {
				body[k] = v
			}
			gr, raw := gradeRequest(t, ts.URL, body)
			if len(gr.Choices) != 3 || gr.Usage.CompletionTokens != 3 {
				t.Fatalf("%d choices, %d completion tokens; want 3 and 3", len(gr.Choices), gr.Usage.CompletionTokens)
			}
			for _, c := range gr.Choices {
				if c.Message.Content != want || c.FinishReason != "stop" {
					t.Errorf("reply %q (%s), want the grade %s (stop) in every choice at temperature 0", c.Message.Content, c.FinishReason, want)
				}
			}
			lp := gr.Choices[0].Logprobs
			if tt.entries < 0 {
				if lp != nil || string(raw["logprobs"]) != "null" {
					t.Errorf("logprobs %s without asking for them", raw["logprobs"])
				}
				return
			}
			if lp == nil || len(lp.Content) != 1 {
				t.Fatalf("logprobs %s, want one token", raw["logprobs"])
			}
			tok := lp.Content[0]
			if tok.Token != want || string(rune(tok.Bytes[0])) != want[:1] || len(tok.TopLogprobs) != tt.entries {
				t.Fatalf("token %+v, want %s with %d top logprobs", tok, want, tt.entries)
			}
			sum := 0.0
			for i, e := range tok.TopLogprobs {
				if i > 0 && e.Logprob > tok.TopLogprobs[i-1].Logprob {
					t.Errorf("top logprobs not sorted: %+v", tok.TopLogprobs)
				}
				if len(e.Bytes) != len(e.Token) {
					t.Errorf("entry %+v: bytes do not spell the token", e)
				}
				sum += math.Exp(e.Logprob)
			}
			if sum > 1+1e-9 {
				t.Errorf("top logprobs sum to probability %v", sum)
			}
			if tt.entries > 0 && (tok.TopLogprobs[0].Token != want || tok.TopLogprobs[0].Logprob != tok.Logprob) {
				t.Errorf("most likely token %+v, want the grade written, %s", tok.TopLogprobs[0], want)
			}
		})
	}
}

// TestJudgeOnSim grades responses of rising q with tpo's own judge: its
// scores rise with them, finer than whole grades with logprobs, and are
// the nearest whole grades without.
func TestJudgeOnSim(t *testing.T) {
	_, ts := newTest(t, Options{Seed: 1, RewardNoise: -1})
	msgs := []tpo.Message{{Role: tpo.RoleUser, Content: "Explain TCP slow start."}}
	var responses []string
	var qs []float64
	for q := -3.0; q <= 3; q += 0.5 {
		qs = append(qs, q)
		responses = append(responses, ResponseMarker{Q: q, ID: hex8(uint64(len(qs)))}.Format()+" some filler words")
	}
	for _, disable := range []bool{false, true} {
		j, err := reward.NewJudge(reward.JudgeOptions{Options: httpx.Options{URLs: []string{ts.URL + "/v1"}}, Model: "sim-policy", DisableLogprobs: disable})
		if err != nil {
			t.Fatal(err)
		}
		res, err := j.Score(context.Background(), msgs, responses)
		scores := res.Values
		if err != nil {
			t.Fatalf("logprobs disabled %v: %v", disable, err)
		}
		for i, s := range scores {
			nearest := math.Round(MeanGrade(qs[i]))
			switch {
			case disable && s != nearest:
				t.Errorf("q %v: whole grade %v, want %v", qs[i], s, nearest)
			case !disable && (math.Abs(s-MeanGrade(qs[i])) > 0.5 || s == math.Round(s)):
				t.Errorf("q %v: expected grade %v, want a fraction near %v", qs[i], s, MeanGrade(qs[i]))
			case !disable && i > 0 && s <= scores[i-1]:
				t.Errorf("q %v: expected grade %v does not rise above %v", qs[i], s, scores[i-1])
			}
		}
	}
}

func TestGradeTemperature(t *testing.T) {
	_, ts := newTest(t, Options{Seed: 1})
	ms := judgePrompt(t, "Explain TCP slow start.", "[q=0.400 id=aa] filler words")
	gr, _ := gradeRequest(t, ts.URL, map[string]any{"messages": ms, "temperature": 1, "n": 40, "seed": 5})
	seen := map[string]bool{}
	for _, c := range gr.Choices {
		v, err := strconv.Atoi(c.Message.Content)
		if err != nil || v < 1 || v > 10 {
			t.Fatalf("reply %q is not a grade", c.Message.Content)
		}
		seen[c.Message.Content] = true
	}
	if len(seen) < 2 {
		t.Errorf("40 grades at temperature 1 are all %v", seen)
	}
	again, _ := gradeRequest(t, ts.URL, map[string]any{"messages": ms, "temperature": 1, "n": 40, "seed": 5})
	for i := range gr.Choices {
		if gr.Choices[i].Message.Content != again.Choices[i].Message.Content {
			t.Fatalf("the same seed gave different grades")
		}
	}
}

func FuzzGrade(f *testing.F) {
	for _, s := range []string{"Grade it from 1 to 10: [q=1.5 id=aa]", "score 1-10 [q=-99999 id=b]", "rate out of 10",
		"grade 1..10 [q=99999999 id=c] [critique c=d of=c]", "Explain TCP."} {
		f.Add(s, 0.0, 20)
	}
	f.Add("grade 1-10 [q=99999999999999999999999999 id=c]", 1e-300, 20)
	f.Add("grade 1-10 [q=-99999999999999999999999999 id=c]", 1.9, 3)
	g := generator{seed: "1", meanTokens: 20, sigma: 0.5, gain: 0.5, rewardNoise: 0.1}
	f.Fuzz(func(t *testing.T, conv string, temperature float64, top int) {
		temperature = math.Mod(math.Abs(temperature), 2)
		if math.IsNaN(temperature) {
			temperature = 0
		}
		top = ((top % 21) + 21) % 21
		c := g.generate(genRequest{conv: conv, childSeed: 3, temperature: temperature, maxTokens: 8, topLogprobs: top})
		if !isGradingRequest(conv) {
			return
		}
		v, err := strconv.Atoi(c.Text)
		if err != nil || v < 1 || v > 10 || c.Tokens != 1 || c.Logprobs == nil {
			t.Fatalf("grading %q: reply %+v", conv, c)
		}
		tok := c.Logprobs.Content[0]
		if len(tok.TopLogprobs) != top || math.IsNaN(tok.Logprob) || math.IsInf(tok.Logprob, 0) || tok.Logprob > 0 {
			t.Fatalf("grading %q: logprobs %+v", conv, tok)
		}
		if _, err := json.Marshal(c.Logprobs); err != nil { // no infinite logprob
			t.Fatalf("grading %q: %v", conv, err)
		}
	})
}
