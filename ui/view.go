package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/report"
)

// settings is what the UI shows of a run's stored configuration.
type settings struct {
	Known        bool // the optimizer settings were found
	Mode         tpo.Mode
	Width, Depth int
	Sampling     tpo.Sampling
	Critique     tpo.Sampling
	Seed         *int64
	MaxTextChars int

	PolicyModel string
	Reward      string // the reward backend (vllm, tei, exec) or scorer name
	RewardModel string
	PolicyURLs  []string
	RewardURLs  []string
}

// Backends describes the models in a few words.
func (s settings) Backends() string {
	var parts []string
	if s.PolicyModel != "" {
		parts = append(parts, s.PolicyModel)
	}
	r := s.Reward
	if s.RewardModel != "" {
		if r != "" {
			r += ":"
		}
		r += s.RewardModel
	}
	if r != "" {
		parts = append(parts, r)
	}
	return strings.Join(parts, " / ")
}

// Shape is "N×D" or "–".
func (s settings) Shape() string {
	if !s.Known {
		return "–"
	}
	if s.Mode == tpo.ModeBoN {
		return strconv.Itoa(s.Width)
	}
	return fmt.Sprintf("%d×%d", s.Width, s.Depth)
}

// parseSettings reads the configuration stored with a run: tpo run writes
// {"settings": {"config": ..., "policy_model": ..., "reward": ...,
// "reward_model": ...}, "backends": {"policy_urls": ..., "reward_urls": ...}}
// and tpo serve {"config": ..., "model": ..., "reward": ...}. Anything it
// cannot read is left out.
func parseSettings(raw json.RawMessage) settings {
	var doc struct {
		Settings struct {
			Config      *tpo.Config `json:"config"`
			PolicyModel string      `json:"policy_model"`
			Reward      string      `json:"reward"`
			RewardModel string      `json:"reward_model"`
		} `json:"settings"`
		Backends struct {
			PolicyURLs []string `json:"policy_urls"`
			RewardURLs []string `json:"reward_urls"`
		} `json:"backends"`
		Config *tpo.Config `json:"config"`
		Model  string      `json:"model"`
		Reward string      `json:"reward"`
	}
	var s settings
	if len(raw) == 0 || json.Unmarshal(raw, &doc) != nil {
		// A document of another shape may still hold some fields.
		return s
	}
	cfg := doc.Settings.Config
	if cfg == nil || cfg.Mode == "" {
		cfg = doc.Config
	}
	if cfg != nil && cfg.Mode != "" {
		s.Known = true
		s.Mode, s.Width, s.Depth = cfg.Mode, cfg.Width, cfg.Steps()
		s.Sampling, s.Critique, s.Seed, s.MaxTextChars = cfg.Sampling, cfg.Critique, cfg.Seed, cfg.MaxTextChars
	}
	s.PolicyModel = firstNonEmpty(doc.Settings.PolicyModel, doc.Model)
	s.Reward = firstNonEmpty(doc.Settings.Reward, doc.Reward)
	s.RewardModel = doc.Settings.RewardModel
	s.PolicyURLs, s.RewardURLs = doc.Backends.PolicyURLs, doc.Backends.RewardURLs
	return s
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// prettyJSON indents a JSON document; other bytes come back as they are.
func prettyJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}

// runRow is a run as the pages show it.
type runRow struct {
	tpo.RunSummary
	Settings settings
	URL      string
	// InFlight is true while tpo serve optimizes the run in this process.
	InFlight bool
}

// Status names the run's state: live (in flight in this process),
// interrupted (the process writing it ended before it finished: killed or
// crashed), failed (finished, and every item failed: a serve request that
// failed), finished, or unfinished (being written elsewhere, or stopped).
func (r runRow) Status() string {
	switch {
	case r.InFlight:
		return "live"
	case r.Interrupted != nil:
		return "interrupted"
	case r.Finished != nil && r.Failed > 0 && r.Done == 0:
		return "failed"
	case r.Finished != nil:
		return "finished"
	default:
		return "unfinished"
	}
}

// Final reports whether nothing more will change in the run.
func (r runRow) Final() bool { return (r.Finished != nil || r.Interrupted != nil) && !r.InFlight }

// Total is the number of items the run has or expects.
func (r runRow) Total() int { return max(r.ItemCount, r.Items) }

// Tokens is the run's total token count.
func (r runRow) Tokens() int { return r.Usage.TotalTokens() }

// version changes whenever the run's stored state changes.
func (r runRow) version() string {
	v := fmt.Sprintf("%d-%d-%d-%d", r.Items, r.Done, r.Failed, r.Usage.Requests)
	if r.Updated != nil {
		v += "-" + strconv.FormatInt(r.Updated.UnixNano(), 36)
	}
	if r.Finished != nil {
		v += "-f"
	}
	return v
}

// candView is a candidate as the timeline shows it.
type candView struct {
	Step, Index int
	Anchor      string
	Text        string
	Preview     string
	Score       float64
	Bar         float64 // bar length in percent
	Tags        []tag
	Open        bool
}

// tag marks a candidate: its class names a colour in the stylesheet.
type tag struct{ Class, Text string }

// refView is a reference to a candidate from a later step.
type refView struct {
	Ref    tpo.Ref
	Anchor string
	Score  float64
	Found  bool
	Text   string
}

// stepView is one step of the timeline.
type stepView struct {
	Step       int
	InProgress bool
	Candidates []candView
	Chosen     *refView
	Rejected   *refView
	Loss       string
	Gradient   string
	Unparsed   []string
	Notes      []string
	Calls      []tpo.Call
	Usage      tpo.Usage
	Millis     []stageMillis
	// Diff compares the chosen response with the best new candidate.
	Diff *diffView
	// Parsed and UnparsedCount come from a live event before the step is
	// saved.
	Parsed, UnparsedCount int
	HaveParse             bool
}

// Title names the step.
func (s stepView) Title() string {
	if s.Step == 0 {
		return "Step 0: initial samples"
	}
	return fmt.Sprintf("Step %d", s.Step)
}

type stageMillis struct {
	Stage tpo.Stage
	Ms    int64
}

// diffView is the word diff of a step.
type diffView struct {
	From, To       string // anchors of the two candidates
	FromLabel      string
	ToLabel        string
	Segs           []diffSeg
	Exact          bool
	Removed, Added int
	Same           bool
}

var stageRank = map[tpo.Stage]int{
	tpo.StageSample: 0, tpo.StageLoss: 1, tpo.StageGradient: 2, tpo.StageUpdate: 3, tpo.StageScore: 4,
}

// previewBytes is how much of a candidate the collapsed line shows.
const previewBytes = 160

func anchor(r tpo.Ref) string { return fmt.Sprintf("s%dc%d", r.Step, r.Index) }

// timeline turns an item's steps into the views of the item page. best
// is the final answer's place, when the item is done; pending, if not nil,
// is a step in progress known from live events.
func timeline(steps []tpo.Step, best *tpo.Ref, pending *stepView) []stepView {
	tb := newTimeline(steps, best, pending)
	var out []stepView
	for _, s := range steps {
		out = append(out, tb.step(s))
	}
	if pending != nil {
		out = append(out, tb.pending(*pending))
	}
	return out
}

// timelineBuilder holds what the views of an item's steps share: the
// steps by number, the range of the scores (for the bars), and the marks
// that later steps put on candidates.
type timelineBuilder struct {
	byStep map[int]*tpo.Step
	lo, hi float64
	marks  map[tpo.Ref][]tag
	best   *tpo.Ref
}

func newTimeline(steps []tpo.Step, best *tpo.Ref, pending *stepView) *timelineBuilder {
	tb := &timelineBuilder{byStep: map[int]*tpo.Step{}, lo: math.Inf(1), hi: math.Inf(-1), marks: map[tpo.Ref][]tag{}, best: best}
	score := func(v float64) {
		if finite(v) {
			tb.lo, tb.hi = min(tb.lo, v), max(tb.hi, v)
		}
	}
	for i := range steps {
		s := &steps[i]
		tb.byStep[s.Step] = s
		for _, c := range s.Candidates {
			score(c.Score)
		}
		tb.mark(s.Step, s.Chosen, s.Rejected)
	}
	if pending != nil {
		for _, c := range pending.Candidates {
			score(c.Score)
		}
		var chosen, rejected *tpo.Ref
		if pending.Chosen != nil {
			chosen = &pending.Chosen.Ref
		}
		if pending.Rejected != nil {
			rejected = &pending.Rejected.Ref
		}
		tb.mark(pending.Step, chosen, rejected)
	}
	return tb
}

// mark tags the candidates that step compared.
func (tb *timelineBuilder) mark(step int, chosen, rejected *tpo.Ref) {
	if chosen != nil {
		tb.marks[*chosen] = append(tb.marks[*chosen], tag{"chosen", fmt.Sprintf("chosen in step %d", step)})
	}
	if rejected != nil {
		tb.marks[*rejected] = append(tb.marks[*rejected], tag{"rejected", fmt.Sprintf("rejected in step %d", step)})
	}
}

// bar is the width, in percent, of the bar of score v.
func (tb *timelineBuilder) bar(v float64) float64 {
	switch {
	case !finite(v):
		return 0
	case tb.hi <= tb.lo:
		return 100
	}
	return 4 + 96*(v-tb.lo)/(tb.hi-tb.lo)
}

func (tb *timelineBuilder) ref(r *tpo.Ref) *refView {
	if r == nil {
		return nil
	}
	var c tpo.Candidate
	s, ok := tb.byStep[r.Step]
	ok = ok && r.Index >= 0 && r.Index < len(s.Candidates)
	if ok {
		c = s.Candidates[r.Index]
	}
	return &refView{Ref: *r, Anchor: anchor(*r), Score: c.Score, Found: ok, Text: c.Text}
}

// candidates are the views of a step's candidates, tagged.
func (tb *timelineBuilder) candidates(step int, cs []tpo.Candidate) []candView {
	bestNew := -1
	for i, c := range cs {
		if bestNew < 0 || c.Score > cs[bestNew].Score {
			bestNew = i
		}
	}
	var out []candView
	for i, c := range cs {
		r := tpo.Ref{Step: step, Index: i}
		v := candView{Step: step, Index: i, Anchor: anchor(r), Text: c.Text,
			Preview: preview(c.Text), Score: c.Score, Bar: tb.bar(c.Score)}
		if tb.best != nil && *tb.best == r {
			v.Tags = append(v.Tags, tag{"final", "final answer"})
			v.Open = true
		}
		if i == bestNew && len(cs) > 1 {
			v.Tags = append(v.Tags, tag{"best", "best of step"})
		}
		v.Tags = append(v.Tags, tb.marks[r]...)
		out = append(out, v)
	}
	return out
}

func (tb *timelineBuilder) step(s tpo.Step) stepView {
	v := stepView{Step: s.Step, Candidates: tb.candidates(s.Step, s.Candidates),
		Chosen: tb.ref(s.Chosen), Rejected: tb.ref(s.Rejected), Loss: s.Loss, Gradient: s.Gradient,
		Unparsed: s.Unparsed, Notes: s.Notes, Calls: s.Calls, Usage: s.Usage}
	for st, ms := range s.Millis {
		v.Millis = append(v.Millis, stageMillis{st, ms})
	}
	slices.SortFunc(v.Millis, byStageRank)
	if v.Chosen != nil && v.Chosen.Found && len(s.Candidates) > 0 {
		v.Diff = newDiff(v.Chosen, v.Candidates)
	}
	return v
}

// byStageRank orders stages as a step runs them; unknown ones last, by name.
func byStageRank(a, b stageMillis) int {
	ra, oka := stageRank[a.Stage]
	rb, okb := stageRank[b.Stage]
	switch {
	case oka && okb:
		return ra - rb
	case oka:
		return -1
	case okb:
		return 1
	}
	return strings.Compare(string(a.Stage), string(b.Stage))
}

// pending is the view of the step in progress.
func (tb *timelineBuilder) pending(p stepView) stepView {
	p.InProgress = true
	raw := make([]tpo.Candidate, len(p.Candidates))
	for i, c := range p.Candidates {
		raw[i] = tpo.Candidate{Text: c.Text, Score: c.Score}
	}
	p.Candidates = tb.candidates(p.Step, raw)
	if p.Chosen != nil {
		p.Chosen = tb.ref(&p.Chosen.Ref)
	}
	if p.Rejected != nil {
		p.Rejected = tb.ref(&p.Rejected.Ref)
	}
	if p.Chosen != nil && p.Chosen.Found && len(p.Candidates) > 0 {
		p.Diff = newDiff(p.Chosen, p.Candidates)
	}
	return p
}

// newDiff compares the chosen response with the best of the new candidates.
func newDiff(chosen *refView, cands []candView) *diffView {
	best := cands[0]
	for _, c := range cands[1:] {
		if c.Score > best.Score {
			best = c
		}
	}
	segs, exact := wordDiff(chosen.Text, best.Text)
	d := &diffView{From: chosen.Anchor, To: best.Anchor, Segs: segs, Exact: exact,
		FromLabel: fmt.Sprintf("step %d #%d", chosen.Ref.Step, chosen.Ref.Index),
		ToLabel:   fmt.Sprintf("step %d #%d", best.Step, best.Index),
		Same:      chosen.Text == best.Text}
	d.Removed, d.Added = diffStats(segs)
	return d
}

// preview is the first line of a text, cut short.
func preview(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i]) + " …"
	}
	return truncate(s, previewBytes)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// bestSoFar returns the best candidate among the steps, if any.
func bestSoFar(steps []tpo.Step) (tpo.Candidate, tpo.Ref, bool) {
	var (
		best  tpo.Candidate
		ref   tpo.Ref
		found bool
	)
	for _, s := range steps {
		for i, c := range s.Candidates {
			if !found || c.Score > best.Score {
				best, ref, found = c, tpo.Ref{Step: s.Step, Index: i}, true
			}
		}
	}
	return best, ref, found
}

// num and signed format numbers as the reports do.
func num(v float64) string    { return report.FormatScore(v) }
func signed(v float64) string { return report.FormatGain(v) }

// optNum formats an optional number, "–" when absent.
func optNum(v *float64) string {
	if v == nil {
		return "–"
	}
	return num(*v)
}

func optSigned(v *float64) string {
	if v == nil {
		return "–"
	}
	return signed(*v)
}

// plural formats n with count and the noun that agrees with it:
// "1 run", "1,024 runs".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return count(n) + " " + many
}

// count formats an integer with thin groups of thousands.
func count(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteRune(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// when formats a time for the pages, in the server's zone.
func when(t any) string {
	var tt time.Time
	switch v := t.(type) {
	case time.Time:
		tt = v
	case *time.Time:
		if v == nil {
			return "–"
		}
		tt = *v
	default:
		return "–"
	}
	if tt.IsZero() {
		return "–"
	}
	return tt.Local().Format("2006-01-02 15:04:05")
}

// isoTime is the machine-readable form of when, for <time datetime>.
func isoTime(t any) string {
	switch v := t.(type) {
	case time.Time:
		return v.UTC().Format(time.RFC3339)
	case *time.Time:
		if v != nil {
			return v.UTC().Format(time.RFC3339)
		}
	}
	return ""
}

// dur formats a duration for people.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	}
	return d.Round(time.Second).String()
}

func millis(ms int64) string { return dur(time.Duration(ms) * time.Millisecond) }

// pct formats a bar length for an SVG attribute.
func pct(v float64) string { return strconv.FormatFloat(math.Max(0, math.Min(100, v)), 'f', 1, 64) }
