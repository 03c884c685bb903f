package report

import (
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/tpoproject/tpo"
)

func cands(scores ...float64) []tpo.Candidate {
	var cs []tpo.Candidate
	for i, s := range scores {
		cs = append(cs, tpo.Candidate{Text: fmt.Sprintf("c%d", i), Score: s})
	}
	return cs
}

type stageMillis = map[tpo.Stage]int64

// handResults is a small run whose metrics are computed by hand in
// TestSummarize.
func handResults() []tpo.Result {
	rej := &tpo.Ref{Step: 0, Index: 0}
	return []tpo.Result{
		{ID: "r1", Score: 5, InitialBest: 3, ScoreCalls: 2,
			Usage:      tpo.Usage{Requests: 7, PromptTokens: 100, CompletionTokens: 50},
			ScoreUsage: tpo.Usage{Requests: 4, PromptTokens: 300, CompletionTokens: 4}, // a judge's
			Steps: []tpo.Step{
				{Step: 0, Candidates: cands(1, 3), Millis: stageMillis{tpo.StageSample: 100, tpo.StageScore: 10}},
				{Step: 1, Candidates: cands(2, 5), Unparsed: []string{"no block here"}, Rejected: rej,
					Millis: stageMillis{tpo.StageUpdate: 200}},
				{Step: 2, Unparsed: []string{"u1", "u2"}, Millis: stageMillis{tpo.StageUpdate: 400}},
			}},
		{ID: "r2", Score: 4.5, InitialBest: 4, ScoreCalls: 3,
			Usage: tpo.Usage{Requests: 7, PromptTokens: 60, CompletionTokens: 30},
			Steps: []tpo.Step{
				{Step: 0, Candidates: cands(4), Millis: stageMillis{tpo.StageSample: 300}},
				{Step: 1, Candidates: cands(4)},
				{Step: 2, Candidates: cands(4.5)},
			}},
		{ID: "r3", Error: "boom",
			Usage: tpo.Usage{Requests: 1, PromptTokens: 10},
			Steps: []tpo.Step{{Step: 0, Candidates: cands(10), Millis: stageMillis{tpo.StageSample: 50}}}},
		{ID: "r4", Score: 2, InitialBest: 2, ScoreCalls: 3,
			Usage: tpo.Usage{Requests: 7, PromptTokens: 30, CompletionTokens: 20},
			Steps: []tpo.Step{
				{Step: 0, Candidates: cands(2, 2)},
				{Step: 1, Candidates: cands(1)},
				{Step: 2, Candidates: cands(1)},
			}},
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestSummarize(t *testing.T) {
	s := Summarize("hand", handResults())

	ints := []struct {
		name      string
		got, want int
	}{
		{"items", s.Items, 4}, {"done", s.Done, 3}, {"failed", s.Failed, 1}, {"scored", s.Scored, 3},
		{"width", s.Width, 2}, {"depth", s.Depth, 2},
		{"improved", s.Gain.Improved, 2}, {"unchanged", s.Gain.Unchanged, 1}, {"worse", s.Gain.Worse, 0},
		{"total requests", s.Usage.Total.Requests, 22}, {"total score calls", s.Usage.TotalScoreCalls, 8},
		{"total score prompt tokens", s.Usage.TotalScore.PromptTokens, 300}, {"total score completion tokens", s.Usage.TotalScore.CompletionTokens, 4},
	}
	for _, c := range ints {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, c.got, c.want)
		}
	}
	floats := []struct {
		name      string
		got, want float64
	}{
		{"mean score", s.MeanScore, 11.5 / 3},
		{"mean initial best", s.MeanInitialBest, 3},
		{"mean gain", s.Gain.Mean, 2.5 / 3},
		{"median gain", s.Gain.Median, 0.5},
		{"share improved", s.Gain.ShareImproved, 2.0 / 3},
		{"requests per item", s.Usage.Requests, 5.5},
		{"prompt tokens per item", s.Usage.PromptTokens, 50},
		{"completion tokens per item", s.Usage.CompletionTokens, 25},
		{"tokens per item", s.Usage.Tokens, 75},
		{"score calls per item", s.Usage.ScoreCalls, 2},
		{"score tokens per item", s.Usage.ScoreTokens, 76},
	}
	for _, c := range floats {
		if !near(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if s.Mode != tpo.ModeTPO {
		t.Errorf("mode: got %q, want tpo", s.Mode)
	}
	if !reflect.DeepEqual(s.Gain.Values, []float64{0, 0.5, 2}) {
		t.Errorf("gain values: got %v, want [0 0.5 2]", s.Gain.Values)
	}

	wantCurve := []Point{
		{Step: 0, Items: 3, BestSoFar: 3, Sampled: 3, MeanScore: 8.0 / 3},
		{Step: 1, Items: 3, BestSoFar: 11.0 / 3, Sampled: 3, MeanScore: 8.5 / 3},
		{Step: 2, Items: 3, BestSoFar: 11.5 / 3, Sampled: 2, MeanScore: 2.75},
	}
	if len(s.Curve) != len(wantCurve) {
		t.Fatalf("curve: got %d points, want %d", len(s.Curve), len(wantCurve))
	}
	for i, w := range wantCurve {
		g := s.Curve[i]
		if g.Step != w.Step || g.Items != w.Items || g.Sampled != w.Sampled || !near(g.BestSoFar, w.BestSoFar) || !near(g.MeanScore, w.MeanScore) {
			t.Errorf("curve[%d]: got %+v, want %+v", i, g, w)
		}
	}

	wantParse := []ParseStep{{Step: 1, Samples: 5, Unparsed: 1, Items: 1}, {Step: 2, Samples: 4, Unparsed: 2, Items: 1}}
	if !reflect.DeepEqual(s.Parse, wantParse) {
		t.Errorf("parse: got %+v, want %+v", s.Parse, wantParse)
	}
	if want := (&Example{ID: "r1", Step: 1, Text: "no block here"}); !reflect.DeepEqual(s.Unparsed, want) {
		t.Errorf("unparsed example: got %+v, want %+v", s.Unparsed, want)
	}

	wantStages := []StageLatency{
		{Stage: tpo.StageSample, Count: 3, Mean: 150, P50: 100, P90: 300, Max: 300},
		{Stage: tpo.StageUpdate, Count: 2, Mean: 300, P50: 200, P90: 400, Max: 400},
		{Stage: tpo.StageScore, Count: 1, Mean: 10, P50: 10, P90: 10, Max: 10},
	}
	if !reflect.DeepEqual(s.Stages, wantStages) {
		t.Errorf("stages: got %+v, want %+v", s.Stages, wantStages)
	}
	if want := []Failure{{ID: "r3", Error: "boom"}}; !reflect.DeepEqual(s.Failures, want) {
		t.Errorf("failures: got %+v, want %+v", s.Failures, want)
	}
	wantBins := []Bin{{0, 2.0 / 3, 2}, {2.0 / 3, 4.0 / 3, 0}, {4.0 / 3, 2, 1}}
	if !binsNear(s.Gain.Bins, wantBins) {
		t.Errorf("bins: got %+v, want %+v", s.Gain.Bins, wantBins)
	}
}

func binsNear(got, want []Bin) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Count != want[i].Count || !near(got[i].Lo, want[i].Lo) || !near(got[i].Hi, want[i].Hi) {
			return false
		}
	}
	return true
}

func TestSummarizeEmpty(t *testing.T) {
	s := Summarize("none", nil)
	if s.Items != 0 || s.Scored != 0 || s.Curve != nil || s.Gain.Bins != nil || s.MeanScore != 0 || s.Usage.Tokens != 0 {
		t.Errorf("empty summary: got %+v", s)
	}
	if s.Mode != tpo.ModeBoN {
		t.Errorf("empty summary mode: got %q, want bon", s.Mode)
	}
}

func TestInferMode(t *testing.T) {
	step0 := tpo.Step{Step: 0, Candidates: cands(1, 2, 3)}
	tests := []struct {
		name  string
		steps []tpo.Step
		want  tpo.Mode
	}{
		{"bon", []tpo.Step{step0}, tpo.ModeBoN},
		{"revision", []tpo.Step{step0, {Step: 1, Chosen: &tpo.Ref{}, Candidates: cands(4)}}, tpo.ModeRevision},
		{"tpo", []tpo.Step{step0, {Step: 1, Chosen: &tpo.Ref{}, Rejected: &tpo.Ref{Index: 1}, Candidates: cands(4)}}, tpo.ModeTPO},
	}
	for _, tt := range tests {
		s := Summarize("x", []tpo.Result{{ID: "a", Steps: tt.steps, Score: 3, InitialBest: 3}})
		if s.Mode != tt.want || s.Width != 3 {
			t.Errorf("%s: got mode %q width %d, want %q 3", tt.name, s.Mode, s.Width, tt.want)
		}
	}
}

func TestFailuresCapped(t *testing.T) {
	b := NewBuilder("many")
	for i := 0; i < MaxFailures+5; i++ {
		b.Add(tpo.Result{ID: fmt.Sprint(i), Error: "e"})
	}
	s := b.Summary()
	if s.Failed != MaxFailures+5 || len(s.Failures) != MaxFailures || s.Failures[0].ID != "0" {
		t.Errorf("got %d failed, %d listed (first %q), want %d, %d, \"0\"", s.Failed, len(s.Failures), s.Failures[0].ID, MaxFailures+5, MaxFailures)
	}
}

// A plain id/response result counts as done but has no scores.
func TestSummarizePlain(t *testing.T) {
	s := Summarize("plain", []tpo.Result{{ID: "a", Response: "x"}, {ID: "b", Response: "y"}})
	if s.Items != 2 || s.Done != 2 || s.Scored != 0 || len(s.Curve) != 0 {
		t.Errorf("got %+v", s)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0}, {[]float64{7}, 7}, {[]float64{1, 2}, 1.5}, {[]float64{1, 2, 10}, 2}, {[]float64{-3, -1, 0, 8}, -0.5},
	}
	for _, tt := range tests {
		if got := Median(tt.in); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	v := []float64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	tests := []struct {
		in   []float64
		p    float64
		want float64
	}{
		{v, 50, 50}, {v, 90, 90}, {v, 91, 100}, {v, 100, 100}, {v, 1, 10}, {v, 0, 10},
		{[]float64{5}, 90, 5}, {nil, 50, 0}, {[]float64{1, 2, 3, 4}, 50, 2}, {[]float64{1, 2, 3}, 90, 3},
	}
	for _, tt := range tests {
		if got := Percentile(tt.in, tt.p); got != tt.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tt.in, tt.p, got, tt.want)
		}
	}
}

func TestMean(t *testing.T) {
	if got := Mean([]float64{1, 2, 3, 6}); got != 3 {
		t.Errorf("Mean = %v, want 3", got)
	}
	if got := Mean(nil); got != 0 {
		t.Errorf("Mean(nil) = %v, want 0", got)
	}
}

func TestHistogram(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		bins int
		want []Bin
	}{
		{"empty", nil, 3, nil},
		{"no bins", []float64{1}, 0, nil},
		{"all equal", []float64{2, 2, 2}, 4, []Bin{{2, 2, 3}}},
		{"two bins", []float64{0, 1, 2, 3, 4}, 2, []Bin{{0, 2, 2}, {2, 4, 3}}},
		{"max in last", []float64{0, 10}, 5, []Bin{{0, 2, 1}, {2, 4, 0}, {4, 6, 0}, {6, 8, 0}, {8, 10, 1}}},
		{"non-finite ignored", []float64{math.NaN(), 1, math.Inf(1), 3}, 2, []Bin{{1, 2, 1}, {2, 3, 1}}},
		{"negative", []float64{-1, -0.5, 0}, 2, []Bin{{-1, -0.5, 1}, {-0.5, 0, 2}}},
	}
	for _, tt := range tests {
		if got := Histogram(tt.in, tt.bins); !binsNear(got, tt.want) {
			t.Errorf("%s: Histogram(%v, %d) = %+v, want %+v", tt.name, tt.in, tt.bins, got, tt.want)
		}
	}
}

func TestSturgesBins(t *testing.T) {
	for _, tt := range []struct{ n, want int }{{0, 1}, {1, 1}, {2, 2}, {3, 3}, {8, 4}, {100, 8}, {1 << 30, 20}} {
		if got := SturgesBins(tt.n); got != tt.want {
			t.Errorf("SturgesBins(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{num(0), "0"}, {num(1), "1"}, {num(0.5), "0.5"}, {num(2.0 / 3), "0.6667"}, {num(123.456), "123.5"},
		{num(-1.25), "-1.25"}, {num(1234.6), "1235"}, {num(1e-5), "1e-05"}, {num(2.5e7), "2.5e+07"},
		{num(-0.00001), "-1e-05"}, {signed(0.5), "+0.5"}, {signed(-2), "-2"}, {signed(0), "0"},
		{pct(2.0 / 3), "66.7%"}, {ratio(1, 4), "25.0%"}, {ratio(0, 0), "–"},
		{ms(12.4), "12 ms"}, {ms(15000), "15.0 s"}, {count(5.55), "5.5"},
		{truncate("héllo", 2), "h… [5 more bytes]"}, {truncate("abc", 3), "abc"},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("case %d: got %q, want %q", i, tt.got, tt.want)
		}
	}
}

func TestSummaryStops(t *testing.T) {
	rs := []tpo.Result{
		{ID: "a", StopReason: tpo.StopPatience}, {ID: "b", StopReason: tpo.StopDepth},
		{ID: "c", StopReason: tpo.StopPatience}, {ID: "d", StopReason: tpo.StopDeadline},
		{ID: "e", Error: "boom"}, {ID: "f"}, // failed, and an older result without a reason
	}
	got := Summarize("stops", rs).Stops
	want := []StopCount{{tpo.StopDepth, 1}, {tpo.StopPatience, 2}, {tpo.StopDeadline, 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stops %+v, want %+v", got, want)
	}
}
