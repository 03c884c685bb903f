package server

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

func testResult() tpo.Result {
	return tpo.Result{
		Response: "b", Score: 5, InitialBest: 3, Best: tpo.Ref{Step: 1, Index: 0},
		Steps: []tpo.Step{
			{Step: 0, Candidates: []tpo.Candidate{{Text: "a", Score: 1}, {Text: "c", Score: 3}, {Text: "a", Score: 1}, {Text: "d", Score: 3}}},
			{Step: 1, Candidates: []tpo.Candidate{{Text: "b", Score: 5}, {Text: "c", Score: 3}}, Notes: []string{"something odd"}},
		},
	}
}

func TestBestDistinct(t *testing.T) {
	tests := []struct {
		n    int
		want []string
	}{
		{1, []string{"b"}},
		{3, []string{"b", "c", "d"}}, // c and d tie: the earliest first
		{10, []string{"b", "c", "d", "a"}},
	}
	for _, tt := range tests {
		var got []string
		for _, c := range bestDistinct(testResult(), tt.n) {
			got = append(got, c.Text)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("bestDistinct(n=%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestSplitDeltas(t *testing.T) {
	tests := []struct {
		text string
		size int
	}{
		{"", 10},
		{"short", 10},
		{"the quick brown fox jumps over the lazy dog and keeps running far away", 16},
		{strings.Repeat("x", 100), 16},
		{strings.Repeat("héllo wörld ", 20), 7},
		{"日本語のテキストです", 4},
		{"🙂🙂🙂", 2}, // runes longer than the size
	}
	for _, tt := range tests {
		got := splitDeltas(tt.text, tt.size)
		if strings.Join(got, "") != tt.text {
			t.Errorf("splitDeltas(%q, %d) = %q: does not join back", tt.text, tt.size, got)
		}
		for _, d := range got {
			if d == "" || !utf8.ValidString(d) {
				t.Errorf("splitDeltas(%q, %d): bad piece %q", tt.text, tt.size, d)
			}
			if len(d) > tt.size && utf8.RuneCountInString(d) > 1 {
				t.Errorf("splitDeltas(%q, %d): piece %q longer than the size", tt.text, tt.size, d)
			}
		}
		if len(tt.text) > 2*tt.size && len(got) < 2 {
			t.Errorf("splitDeltas(%q, %d) = %d pieces, want several", tt.text, tt.size, len(got))
		}
	}
}

func FuzzSplitDeltas(f *testing.F) {
	f.Add("hello world, this is a test", 5)
	f.Add("日本語 🙂 text", 1)
	f.Fuzz(func(t *testing.T, s string, size int) {
		size = size%200 + 1
		if size < 1 {
			size = -size + 1
		}
		got := splitDeltas(s, size)
		if strings.Join(got, "") != s {
			t.Fatalf("splitDeltas(%q, %d) = %q: does not join back", s, size, got)
		}
	})
}

func TestProgressTracker(t *testing.T) {
	base := func(step int) tpo.EventBase { return tpo.EventBase{ItemID: "x", Step: step} }
	events := []tpo.Event{
		tpo.StepStarted{EventBase: base(0), Depth: 2},
		tpo.CandidatesScored{EventBase: base(0), Candidates: []tpo.Candidate{{Text: "a", Score: 1}, {Text: "b", Score: 2}}, Best: 2},
		tpo.StepFinished{EventBase: base(0)},
		tpo.StepStarted{EventBase: base(1), Depth: 2},
		tpo.Critique{EventBase: base(1), Text: "c"},
		tpo.Instructions{EventBase: base(1), Text: "i"},
		tpo.UpdateParsed{EventBase: base(1), Parsed: 1, Unparsed: 1},
		tpo.CandidatesScored{EventBase: base(1), Candidates: []tpo.Candidate{{Text: "c", Score: 4}}, Best: 4},
		tpo.StepFinished{EventBase: base(1)},
		tpo.Done{EventBase: base(1)},
	}
	tr := &progressTracker{runID: "r1"}
	var got []string
	var last Progress
	for _, e := range events {
		p, ok := tr.progress(e)
		if !ok {
			continue
		}
		if p.RunID != "r1" || p.Depth != 2 {
			t.Errorf("progress %+v: want run r1, depth 2", p)
		}
		best := "-"
		if p.BestScore != nil {
			best = fmt.Sprintf("%g", *p.BestScore)
		}
		got = append(got, fmt.Sprintf("%s@%d best %s", p.Stage, p.Step, best))
		last = p
	}
	want := []string{"sample@0 best 2", "loss@1 best 2", "gradient@1 best 2", "update@1 best 2", "score@1 best 4"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("progress = %q, want %q", got, want)
	}
	if !reflect.DeepEqual(last.Scores, []float64{4}) {
		t.Errorf("scores of the last progress = %v, want [4]", last.Scores)
	}
}

func TestCompletionOf(t *testing.T) {
	o := outcome{ID: "chatcmpl-x", Created: 123, Model: "m", RunID: "run7", Result: testResult(),
		Plan: &plan{N: 2, Reward: "rm", Config: tpo.Config{Mode: tpo.ModeTPO, Width: 4, Depth: 1}},
		Meter: meterSnapshot{
			Policy:      tpo.Usage{Requests: 4, PromptTokens: 100, CompletionTokens: 50, Retries: 1},
			RewardCalls: 2,
			Stages: map[tpo.Stage]StageUsage{
				tpo.StageSample: {Requests: 1, PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30},
				tpo.StageScore:  {Requests: 2},
			},
		}}
	c := completionOf(o)
	if c.ID != "chatcmpl-x" || c.Object != "chat.completion" || c.Created != 123 || c.Model != "m" {
		t.Errorf("header = %+v", c)
	}
	if len(c.Choices) != 2 || c.Choices[0].Message.Content != "b" || c.Choices[1].Message.Content != "c" {
		t.Fatalf("choices = %+v, want b then c", c.Choices)
	}
	for i, ch := range c.Choices {
		if ch.Index != i || ch.FinishReason != "stop" || ch.Message.Role != "assistant" {
			t.Errorf("choice %d = %+v", i, ch)
		}
	}
	if *c.Usage != (openai.Usage{PromptTokens: 100, CompletionTokens: 50, TotalTokens: 150}) {
		t.Errorf("usage = %+v", c.Usage)
	}
	s := c.TPO
	if s.RunID != "run7" || s.Score != 5 || s.InitialBest != 3 || s.Gain != 2 || s.Requests != 4 || s.Retries != 1 ||
		s.RewardCalls != 2 || s.Steps != 2 || !reflect.DeepEqual(s.Scores, []float64{5, 3}) {
		t.Errorf("summary = %+v", s)
	}
	if s.Stages[tpo.StageSample].TotalTokens != 30 || s.Stages[tpo.StageScore].Requests != 2 {
		t.Errorf("stages = %+v", s.Stages)
	}
	if !reflect.DeepEqual(s.Notes, []string{"step 1: something odd"}) {
		t.Errorf("notes = %q", s.Notes)
	}
}

func TestAnswerChunks(t *testing.T) {
	long := strings.Repeat("word ", 40)
	res := tpo.Result{Response: long, Score: 2, Steps: []tpo.Step{{Candidates: []tpo.Candidate{{Text: long, Score: 2}, {Text: "other", Score: 1}}}}}
	o := outcome{ID: "chatcmpl-y", Created: 1, Model: "m", Result: res,
		Plan:  &plan{N: 2, IncludeUsage: true, Config: tpo.DefaultConfig()},
		Meter: meterSnapshot{Policy: tpo.Usage{PromptTokens: 3, CompletionTokens: 4}}}
	chunks := answerChunks(o)
	texts := map[int]string{}
	var kinds []string
	for _, c := range chunks {
		if c.ID != "chatcmpl-y" || c.Object != "chat.completion.chunk" {
			t.Errorf("chunk header = %+v", c)
		}
		switch {
		case c.Usage != nil:
			kinds = append(kinds, "usage")
			if len(c.Choices) != 0 || c.Usage.TotalTokens != 7 {
				t.Errorf("usage chunk = %+v", c)
			}
		case c.Choices[0].FinishReason != "":
			kinds = append(kinds, "finish")
		case c.Choices[0].Delta.Role != "":
			kinds = append(kinds, "role")
		default:
			kinds = append(kinds, "content")
			texts[c.Choices[0].Index] += c.Choices[0].Delta.Content
		}
	}
	if texts[0] != long || texts[1] != "other" {
		t.Errorf("content = %v, want the two candidates", texts)
	}
	// Content of choice 0 in several deltas, a role chunk for choice 1
	// and its content, two finish chunks, the usage chunk.
	joined := strings.Join(kinds, " ")
	if !strings.HasPrefix(joined, "content content") || !strings.HasSuffix(joined, "role content finish finish usage") {
		t.Errorf("chunk kinds = %s", joined)
	}
	if chunks[len(chunks)-2].TPO == nil || chunks[len(chunks)-3].TPO != nil {
		t.Errorf("the summary belongs on the last finish chunk only")
	}
}
