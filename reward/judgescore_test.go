package reward

import (
	"math"
	"strings"
	"testing"
)

// pos builds a logprobs position: the generated token, then alternating
// top tokens and probabilities.
func pos(token string, top ...any) TokenLogprob {
	lp := TokenLogprob{Token: token}
	for i := 0; i+1 < len(top); i += 2 {
		p := top[i+1].(float64)
		lp.Top = append(lp.Top, TopLogprob{Token: top[i].(string), Logprob: math.Log(p)})
		if top[i].(string) == token {
			lp.Logprob = math.Log(p)
		}
	}
	return lp
}

func TestExpectedJudgeScore(t *testing.T) {
	tests := []struct {
		name   string
		lps    []TokenLogprob
		want   float64
		wantOK bool
	}{
		{
			// 0.6*8 + 0.3*7 + 0.1*9
			name: "bare grade", want: 7.8, wantOK: true,
			lps: []TokenLogprob{pos("8", "8", 0.6, "7", 0.3, "9", 0.1)},
		},
		{
			// Position 0 holds a digit among its alternatives, but the
			// generated token is not a number: the grade is at position 2.
			// (0.5*7 + 0.25*6) / 0.75
			name: "after a label", want: 20.0 / 3, wantOK: true,
			lps: []TokenLogprob{
				pos("Score", "Score", 0.98, "9", 0.02),
				pos(":", ":", 1.0),
				pos(" 7", " 7", 0.5, " 6", 0.25, "Good", 0.25),
			},
		},
		{
			// The reply spells 10 as "1" "0": P("1") = 0.8 splits into
			// 10 (0.8*0.75) and 1 (0.8*0.25); 9 has 0.2.
			// 0.6*10 + 0.2*1 + 0.2*9 = 8
			name: "digit-split ten", want: 8, wantOK: true,
			lps: []TokenLogprob{
				pos("1", "1", 0.8, "9", 0.2),
				pos("0", "0", 0.75, "<|eot_id|>", 0.25),
			},
		},
		{
			// A "10" token exists, so "1" means 1: 0.5*10 + 0.3*9 + 0.2*1
			name: "single-token ten", want: 7.9, wantOK: true,
			lps: []TokenLogprob{pos("10", "10", 0.5, "9", 0.3, "1", 0.2)},
		},
		{
			// "1" is ambiguous; the others average (0.6*9+0.2*8)/0.8 = 8.75,
			// so it counts as 10: 5.4 + 1.6 + 2
			name: "ambiguous one near the top", want: 9, wantOK: true,
			lps: []TokenLogprob{pos("9", "9", 0.6, "8", 0.2, "1", 0.2)},
		},
		{
			// The others average 2.125, so "1" counts as 1: 1.4 + 0.2 + 0.3
			name: "ambiguous one near the bottom", want: 1.9, wantOK: true,
			lps: []TokenLogprob{pos("2", "2", 0.7, "1", 0.2, "3", 0.1)},
		},
		{
			// The generated "1" is the last token: it means 1. 0.9 + 0.2
			name: "one at the end", want: 1.1, wantOK: true,
			lps: []TokenLogprob{pos("1", "1", 0.9, "2", 0.1)},
		},
		{
			// " 7" and "7" are both 7: (0.4+0.4)*7 + 0.2*5
			name: "spaced duplicates", want: 6.6, wantOK: true,
			lps: []TokenLogprob{pos("7", "7", 0.4, " 7", 0.4, "5", 0.2)},
		},
		{
			name: "out of scale", wantOK: false,
			lps: []TokenLogprob{pos("12", "12", 0.9, "9", 0.1)},
		},
		{
			name: "spells twelve in digits", wantOK: false,
			lps: []TokenLogprob{pos("1", "1", 0.9, "9", 0.1), pos("2", "2", 1.0)},
		},
		{
			name: "zero", wantOK: false,
			lps: []TokenLogprob{pos("0", "0", 0.9, "1", 0.1)},
		},
		{
			name: "no number", wantOK: false,
			lps: []TokenLogprob{pos("Great", "Great", 0.9, "7", 0.1)},
		},
		{
			name: "no top logprobs", wantOK: false,
			lps: []TokenLogprob{{Token: "7", Logprob: -0.1}},
		},
		{name: "nothing", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ExpectedJudgeScore(tt.lps)
			if ok != tt.wantOK {
				t.Fatalf("ExpectedJudgeScore() ok = %v (score %v), want %v", ok, got, tt.wantOK)
			}
			if ok && math.Abs(got-tt.want) > 1e-9 {
				t.Fatalf("ExpectedJudgeScore() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseJudgeScore(t *testing.T) {
	tests := []struct {
		reply   string
		want    float64
		wantErr bool
	}{
		{"7", 7, false},
		{" 10\n", 10, false},
		{"Score: 8", 8, false},
		{"**Score:** 9/10", 9, false},
		{"score = 7.5", 7.5, false},
		{"I would rate this a 6 out of 10.", 6, false},
		{"Overall 3. The reply misses the point.", 3, false},
		{"0", 0, true},
		{"11", 0, true},
		{"Score: 12 (out of 10: 9)", 0, true},
		{"great answer", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseJudgeScore(tt.reply)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseJudgeScore(%q) = %v, want an error", tt.reply, got)
			} else if !strings.Contains(err.Error(), "no score from 1 to 10") {
				t.Errorf("ParseJudgeScore(%q) error %q does not say what is missing", tt.reply, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseJudgeScore(%q) = %v, %v; want %v", tt.reply, got, err, tt.want)
		}
	}
}

func TestJudgeScore(t *testing.T) {
	// Logprobs win when they give a score.
	v, fromLP, err := JudgeScore("8", []TokenLogprob{pos("8", "8", 0.5, "6", 0.5)})
	if err != nil || !fromLP || v != 7 {
		t.Errorf("with logprobs: got %v, %v, %v; want 7, true, nil", v, fromLP, err)
	}
	// Without logprobs the text decides.
	v, fromLP, err = JudgeScore("Score: 4", nil)
	if err != nil || fromLP || v != 4 {
		t.Errorf("without logprobs: got %v, %v, %v; want 4, false, nil", v, fromLP, err)
	}
	// Logprobs without a number fall back to the text.
	v, fromLP, err = JudgeScore("Score: 5", []TokenLogprob{pos("Score", "Score", 1.0)})
	if err != nil || fromLP || v != 5 {
		t.Errorf("useless logprobs: got %v, %v, %v; want 5, false, nil", v, fromLP, err)
	}
	// Neither gives a score: the error quotes the reply.
	_, _, err = JudgeScore("It is fine.", nil)
	if err == nil || !strings.Contains(err.Error(), `"It is fine."`) {
		t.Errorf("no score: err = %v, want one quoting the reply", err)
	}
}

func FuzzJudgeScore(f *testing.F) {
	f.Add("Score: 7", "7", " 7", -0.1, "6", -2.0, "0", -0.5)
	f.Add("10", "1", "1", -0.2, "9", -1.9, "0", -0.1)
	f.Add("9", "9", "9", -0.5, "1", -1.0, "", 0.0)
	f.Add("x", "", "", 0.0, "", 0.0, "", 0.0)
	f.Fuzz(func(t *testing.T, reply, tok, top1 string, lp1 float64, top2 string, lp2 float64, next string, lpNext float64) {
		lps := []TokenLogprob{
			{Token: tok, Logprob: lp1, Top: []TopLogprob{{top1, lp1}, {top2, lp2}}},
			{Token: next, Logprob: lpNext, Top: []TopLogprob{{next, lpNext}}},
		}
		v, fromLP, err := JudgeScore(reply, lps)
		if err != nil {
			return
		}
		if math.IsNaN(v) || v < JudgeMin || v > JudgeMax {
			t.Fatalf("JudgeScore(%q, %v) = %v (from logprobs: %v), outside 1..10", reply, lps, v, fromLP)
		}
	})
}
