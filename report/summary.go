// Package report summarizes optimization runs and renders the summaries as
// a self-contained HTML page or as Markdown with SVG charts, and exports
// run answers in the formats of evaluation tools (AlpacaEval, Arena-Hard).
//
// A Summary is computed from a stream of tpo.Result with a Builder; the
// computation is pure. Charts are drawn with gonum.org/v1/plot into SVG,
// with fixed fonts and sizes, so the same summaries always give the same
// bytes.
package report

import (
	"math"
	"sort"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/eval"
	"github.com/tpoproject/tpo/internal/stats"
)

// MaxFailures is how many failed items a Summary lists.
const MaxFailures = 10

// Summary holds the metrics of one run.
type Summary struct {
	// Label names the run in the report.
	Label string `json:"label"`
	// Source is the run id or the results file the summary was read from.
	Source string `json:"source,omitempty"`
	// Mode, Width (N) and Depth (D) describe the run's configuration;
	// the Builder infers them from the results (see Infer), and callers
	// that know the configuration may set them.
	Mode  tpo.Mode `json:"mode"`
	Width int      `json:"width"`
	Depth int      `json:"depth"`

	// Items counts the results added; Done the ones without error, Failed
	// the others. Pending is never set by the Builder: a caller that knows
	// of unfinished items sets it.
	Items   int `json:"items"`
	Done    int `json:"done"`
	Failed  int `json:"failed"`
	Pending int `json:"pending"`
	// Scored counts the done results with scored initial samples: the
	// population of the score, gain and curve metrics.
	Scored int `json:"scored"`

	// MeanScore is the mean final score, MeanInitialBest the mean best
	// score of the initial samples (what best of N would answer).
	MeanScore       float64 `json:"mean_score"`
	MeanInitialBest float64 `json:"mean_initial_best"`
	Gain            Gains   `json:"gain"`
	Curve           []Point `json:"curve"`

	// Usage is the per-item mean of the policy usage over every result,
	// done or failed; Total is the sum.
	Usage Usage `json:"usage"`

	Stages []StageLatency `json:"stages"`
	Parse  []ParseStep    `json:"parse"`
	// Unparsed holds the first update sample of the run that had no
	// <improved_response> block, for a look at what the model wrote.
	Unparsed *Example `json:"unparsed,omitempty"`
	// Failures lists the first MaxFailures failed items, in input order.
	Failures []Failure `json:"failures"`
	// Stops counts the done items by why they stopped (tpo.StopReasons
	// order; reasons no item gave are left out).
	Stops []StopCount `json:"stops,omitempty"`
}

// StopCount is how many items stopped for one reason.
type StopCount struct {
	Reason tpo.StopReason `json:"reason"`
	Items  int            `json:"items"`
}

// Gains describes the improvement of the final score over the best
// initial sample, over the scored items.
type Gains struct {
	Mean   float64 `json:"mean"`
	Median float64 `json:"median"`
	// Improved, Unchanged and Worse count items whose gain is positive,
	// zero and negative (a negative gain cannot happen with a correct
	// optimizer, since the initial samples stay in the cache).
	Improved  int `json:"improved"`
	Unchanged int `json:"unchanged"`
	Worse     int `json:"worse"`
	// ShareImproved is Improved over the number of scored items.
	ShareImproved float64 `json:"share_improved"`
	// Values holds every gain, sorted ascending.
	Values []float64 `json:"values"`
	Bins   []Bin     `json:"bins"`
}

// Bin is one bar of a histogram: Count values in [Lo, Hi) (the last bin
// also holds Hi).
type Bin struct {
	Lo    float64 `json:"lo"`
	Hi    float64 `json:"hi"`
	Count int     `json:"count"`
}

// Point is one step of the reward curve.
type Point struct {
	Step int `json:"step"`
	// Items counts the scored items that reached this step; BestSoFar is
	// the mean over them of the best score among steps 0..Step.
	Items     int     `json:"items"`
	BestSoFar float64 `json:"best_so_far"`
	// Sampled counts the items with candidates at this step (an update
	// step whose samples all failed to parse has none); MeanScore is the
	// mean over them of the mean candidate score of the step.
	Sampled   int     `json:"sampled"`
	MeanScore float64 `json:"mean_score"`
}

// Usage is what the items cost, per item and in all: Requests and the
// tokens are the policy's (tpo.Result.Usage); ScoreCalls the reward
// model calls, and ScoreTokens their tokens as far as the reward reports
// them (a judge's; tpo.Result.ScoreUsage). The tokens of every model
// call are Tokens plus ScoreTokens.
type Usage struct {
	Requests         float64   `json:"requests"`
	PromptTokens     float64   `json:"prompt_tokens"`
	CompletionTokens float64   `json:"completion_tokens"`
	Tokens           float64   `json:"tokens"`
	ScoreCalls       float64   `json:"score_calls"`
	ScoreTokens      float64   `json:"score_tokens"`
	Total            tpo.Usage `json:"total"`
	TotalScoreCalls  int       `json:"total_score_calls"`
	TotalScore       tpo.Usage `json:"total_score"`
}

// StageLatency is the wall time of one stage, in milliseconds, over every
// step of every item that ran the stage.
type StageLatency struct {
	Stage tpo.Stage `json:"stage"`
	Count int       `json:"count"`
	Mean  float64   `json:"mean"`
	P50   float64   `json:"p50"`
	P90   float64   `json:"p90"`
	Max   float64   `json:"max"`
}

// ParseStep counts the update samples of one step and those without an
// <improved_response> block.
type ParseStep struct {
	Step     int `json:"step"`
	Samples  int `json:"samples"`
	Unparsed int `json:"unparsed"`
	// Items counts the items with at least one unparsed sample.
	Items int `json:"items"`
}

// Example is a text of one item at one step.
type Example struct {
	ID   string `json:"id"`
	Step int    `json:"step"`
	Text string `json:"text"`
}

// Failure is a failed item.
type Failure struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

// Builder computes a Summary from results added one at a time. The zero
// value is not ready; use NewBuilder.
type Builder struct {
	label string

	items, done, failed int
	finals, initials    []float64
	gains               []float64
	curve               eval.CurveBuilder
	usage, scoreUsage   tpo.Usage
	scoreCalls          int
	millis              map[tpo.Stage][]float64
	parse               []ParseStep
	unparsed            *Example
	failures            []Failure

	maxWidth, maxDepth int
	sawRejected        bool
	stops              map[tpo.StopReason]int
}

// NewBuilder returns a builder of a summary labelled label.
func NewBuilder(label string) *Builder {
	return &Builder{label: label, millis: map[tpo.Stage][]float64{}, stops: map[tpo.StopReason]int{}}
}

// scored reports whether r is a successful result with scored initial
// samples.
func scored(r tpo.Result) bool {
	return r.Error == "" && len(r.Steps) > 0 && len(r.Steps[0].Candidates) > 0
}

// Add adds one item's result.
func (b *Builder) Add(r tpo.Result) {
	b.items++
	if r.Error != "" {
		b.failed++
		if len(b.failures) < MaxFailures {
			b.failures = append(b.failures, Failure{ID: r.ID, Error: r.Error})
		}
	} else {
		b.done++
		if r.StopReason != "" {
			b.stops[r.StopReason]++
		}
	}
	b.usage.Add(r.Usage)
	b.scoreUsage.Add(r.ScoreUsage)
	b.scoreCalls += r.ScoreCalls

	for _, s := range r.Steps {
		for st, ms := range s.Millis {
			b.millis[st] = append(b.millis[st], float64(ms))
		}
		if s.Step == 0 {
			b.maxWidth = max(b.maxWidth, len(s.Candidates))
			continue
		}
		b.maxDepth = max(b.maxDepth, s.Step)
		if s.Rejected != nil {
			b.sawRejected = true
		}
		for len(b.parse) < s.Step {
			b.parse = append(b.parse, ParseStep{Step: len(b.parse) + 1})
		}
		p := &b.parse[s.Step-1]
		p.Samples += len(s.Candidates) + len(s.Unparsed)
		p.Unparsed += len(s.Unparsed)
		if len(s.Unparsed) > 0 {
			p.Items++
			if b.unparsed == nil {
				b.unparsed = &Example{ID: r.ID, Step: s.Step, Text: s.Unparsed[0]}
			}
		}
	}

	if !scored(r) {
		return
	}
	b.finals = append(b.finals, r.Score)
	b.initials = append(b.initials, r.InitialBest)
	b.gains = append(b.gains, r.Gain())
	b.curve.Add(r)
}

// Summary returns the summary of the results added so far.
func (b *Builder) Summary() Summary {
	s := Summary{
		Label: b.label, Items: b.items, Done: b.done, Failed: b.failed, Scored: len(b.finals),
		MeanScore: Mean(b.finals), MeanInitialBest: Mean(b.initials),
		Width: b.maxWidth, Depth: b.maxDepth,
		Failures: append([]Failure(nil), b.failures...),
	}
	switch {
	case b.maxDepth == 0:
		s.Mode = tpo.ModeBoN
	case b.sawRejected:
		s.Mode = tpo.ModeTPO
	default:
		s.Mode = tpo.ModeRevision
	}
	s.Gain = gainStats(b.gains)
	for _, p := range b.curve.Curve().Points {
		s.Curve = append(s.Curve, Point{Step: p.Step, Items: p.BestItems, BestSoFar: p.BestSoFar,
			Sampled: p.MeanItems, MeanScore: p.MeanScore})
	}
	if b.items > 0 {
		n := float64(b.items)
		s.Usage = Usage{
			Requests:         float64(b.usage.Requests) / n,
			PromptTokens:     float64(b.usage.PromptTokens) / n,
			CompletionTokens: float64(b.usage.CompletionTokens) / n,
			Tokens:           float64(b.usage.TotalTokens()) / n,
			ScoreCalls:       float64(b.scoreCalls) / n,
			ScoreTokens:      float64(b.scoreUsage.TotalTokens()) / n,
		}
	}
	s.Usage.Total, s.Usage.TotalScoreCalls, s.Usage.TotalScore = b.usage, b.scoreCalls, b.scoreUsage
	s.Stages = stageLatencies(b.millis)
	for _, why := range tpo.StopReasons {
		if n := b.stops[why]; n > 0 {
			s.Stops = append(s.Stops, StopCount{Reason: why, Items: n})
		}
	}
	s.Parse = append([]ParseStep(nil), b.parse...)
	if b.unparsed != nil {
		e := *b.unparsed
		s.Unparsed = &e
	}
	return s
}

// Summarize returns the summary of rs.
func Summarize(label string, rs []tpo.Result) Summary {
	b := NewBuilder(label)
	for _, r := range rs {
		b.Add(r)
	}
	return b.Summary()
}

// stageOrder is the order of stages in a summary; others follow by name.
var stageOrder = map[tpo.Stage]int{
	tpo.StageSample: 0, tpo.StageLoss: 1, tpo.StageGradient: 2, tpo.StageUpdate: 3, tpo.StageScore: 4,
}

func stageLatencies(millis map[tpo.Stage][]float64) []StageLatency {
	var out []StageLatency
	for st, v := range millis {
		sorted := append([]float64(nil), v...)
		sort.Float64s(sorted)
		out = append(out, StageLatency{
			Stage: st, Count: len(v), Mean: Mean(v),
			P50: Percentile(sorted, 50), P90: Percentile(sorted, 90), Max: sorted[len(sorted)-1],
		})
	}
	sort.Slice(out, func(i, j int) bool {
		oi, iok := stageOrder[out[i].Stage]
		oj, jok := stageOrder[out[j].Stage]
		switch {
		case iok && jok:
			return oi < oj
		case iok != jok:
			return iok
		}
		return out[i].Stage < out[j].Stage
	})
	return out
}

func gainStats(gains []float64) Gains {
	g := Gains{Values: append([]float64{}, gains...)}
	sort.Float64s(g.Values)
	g.Mean = Mean(g.Values)
	g.Median = Median(g.Values)
	for _, v := range g.Values {
		switch {
		case v > 0:
			g.Improved++
		case v < 0:
			g.Worse++
		default:
			g.Unchanged++
		}
	}
	if n := len(g.Values); n > 0 {
		g.ShareImproved = float64(g.Improved) / float64(n)
	}
	g.Bins = Histogram(g.Values, SturgesBins(len(g.Values)))
	return g
}

// Mean returns the arithmetic mean of v, or 0 for no values.
func Mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

// Median returns the median of sorted values: the middle one, or the mean
// of the two middle ones; 0 for no values.
func Median(sorted []float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted values: the smallest value with at least p% of the values at or
// below it; 0 for no values.
func Percentile(sorted []float64, p float64) float64 { return stats.Percentile(sorted, p) }

// SturgesBins returns a number of histogram bins for n values: ⌈log2 n⌉+1,
// between 1 and 20.
func SturgesBins(n int) int {
	if n <= 1 {
		return 1
	}
	return min(int(math.Ceil(math.Log2(float64(n))))+1, 20)
}

// Histogram splits the range of values into bins of equal width and
// counts the values in each. All values equal give one bin of zero
// width; no values (or bins < 1) give none. Non-finite values are ignored.
func Histogram(values []float64, bins int) []Bin {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	if bins < 1 || lo > hi {
		return nil
	}
	if lo == hi {
		bins = 1
	}
	width := (hi - lo) / float64(bins)
	out := make([]Bin, bins)
	for i := range out {
		out[i] = Bin{Lo: lo + float64(i)*width, Hi: lo + float64(i+1)*width}
	}
	out[bins-1].Hi = hi
	for _, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		i := bins - 1
		if width > 0 {
			i = min(int((v-lo)/width), bins-1)
		}
		out[i].Count++
	}
	return out
}
