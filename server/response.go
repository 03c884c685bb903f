package server

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// completion is a chat.completion object with the "tpo" extension.
type completion struct {
	openai.ChatResponse
	TPO *Optimization `json:"tpo,omitempty"`
}

// chunk is a chat.completion.chunk object with the "tpo" extension.
type chunk struct {
	openai.ChatChunk
	TPO any `json:"tpo,omitempty"`
}

// Optimization is the "tpo" object of a response: what the optimization did and
// what it cost.
type Optimization struct {
	// RunID names the run in the store that holds the whole trajectory.
	RunID  string   `json:"run_id,omitempty"`
	Mode   tpo.Mode `json:"mode"`
	Width  int      `json:"width"`
	Depth  int      `json:"depth"`
	Reward string   `json:"reward"`
	// Score is the reward of the answer (the best of the cache),
	// InitialBest the best reward among the initial samples.
	Score       float64 `json:"score"`
	InitialBest float64 `json:"initial_best"`
	Gain        float64 `json:"gain"`
	// Scores holds the reward of each returned choice, in choice order.
	Scores []float64 `json:"scores"`
	// Steps is the number of finished steps (1 + update steps).
	Steps int `json:"steps"`
	// Requests counts policy requests, Retries the HTTP retries among them.
	Requests    int `json:"requests"`
	Retries     int `json:"retries"`
	RewardCalls int `json:"reward_calls"`
	// Stages breaks usage down by stage (sample, loss, gradient, update,
	// score): their tokens add up to the answer's usage. Score counts
	// reward calls as requests, and has the tokens of a judge (a reward
	// model on vLLM or TEI reports none).
	Stages map[tpo.Stage]StageUsage `json:"stages"`
	Notes  []string                 `json:"notes,omitempty"`
	// StopReason says why the optimization stopped: depth (every round
	// ran), patience, target, budget, deadline (the answer is the best
	// found before the request's deadline), or tool_calls (the model
	// answered with tool calls, returned unoptimized).
	StopReason tpo.StopReason `json:"stop_reason,omitempty"`
	// Unoptimized says why the answer was not optimized.
	Unoptimized string `json:"unoptimized,omitempty"`
}

// StageUsage is what the calls of one stage cost.
type StageUsage struct {
	Requests         int   `json:"requests"`
	PromptTokens     int   `json:"prompt_tokens"`
	CompletionTokens int   `json:"completion_tokens"`
	TotalTokens      int   `json:"total_tokens"`
	Millis           int64 `json:"millis"`
}

// addTokens adds the tokens of u.
func (su *StageUsage) addTokens(u tpo.Usage) {
	su.PromptTokens += u.PromptTokens
	su.CompletionTokens += u.CompletionTokens
	su.TotalTokens += u.TotalTokens()
}

// Progress is the "tpo" object of a progress chunk.
type Progress struct {
	RunID string `json:"run_id,omitempty"`
	// Step is the step the event belongs to (0: the initial samples), Depth
	// the number of update steps planned.
	Step  int `json:"step"`
	Depth int `json:"depth"`
	// Stage is the stage that finished: sample (initial samples scored),
	// loss, gradient, update (update samples parsed) or score (update
	// samples scored).
	Stage string `json:"stage"`
	// BestScore is the best reward found so far, once anything is scored.
	BestScore *float64 `json:"best_score,omitempty"`
	// Scores holds the rewards of the candidates just scored.
	Scores []float64 `json:"scores,omitempty"`
	// Parsed and Unparsed count update samples with and without an
	// <improved_response> block (update stage only).
	Parsed   *int `json:"parsed,omitempty"`
	Unparsed *int `json:"unparsed,omitempty"`
}

// progressTracker turns optimizer events into progress objects, keeping
// the best score so far.
type progressTracker struct {
	runID string
	depth int
	best  *float64
}

// progress returns the progress object for e, or false for events that
// do not end a stage.
func (t *progressTracker) progress(e tpo.Event) (Progress, bool) {
	var p Progress
	switch e := e.(type) {
	case tpo.StepStarted:
		t.depth = e.Depth
		return p, false
	case tpo.CandidatesScored:
		b := e.Best
		t.best = &b
		p.Stage = "score"
		if e.Step == 0 {
			p.Stage = "sample"
		}
		p.Step = e.Step
		for _, c := range e.Candidates {
			p.Scores = append(p.Scores, c.Score)
		}
	case tpo.Critique:
		p.Stage, p.Step = "loss", e.Step
	case tpo.Instructions:
		p.Stage, p.Step = "gradient", e.Step
	case tpo.UpdateParsed:
		p.Stage, p.Step = "update", e.Step
		parsed, unparsed := e.Parsed, e.Unparsed
		p.Parsed, p.Unparsed = &parsed, &unparsed
	default:
		return p, false
	}
	p.RunID = t.runID
	p.Depth = t.depth
	if t.best != nil {
		b := *t.best
		p.BestScore = &b
	}
	return p, true
}

// bestDistinct returns up to n candidates of the result's cache with
// distinct texts, best first; ties go to the earliest found, so the first
// is the result's answer.
func bestDistinct(res tpo.Result, n int) []tpo.Candidate {
	var all []tpo.Candidate
	seen := map[string]bool{}
	for _, s := range res.Steps {
		for _, c := range s.Candidates {
			if seen[c.Text] {
				continue
			}
			seen[c.Text] = true
			all = append(all, c)
		}
	}
	slices.SortStableFunc(all, func(a, b tpo.Candidate) int { return cmp.Compare(b.Score, a.Score) })
	if len(all) > n {
		all = all[:n]
	}
	return all
}

// outcome is everything known at the end of an optimization.
type outcome struct {
	ID      string // chatcmpl-...
	Created int64
	Arrived time.Time
	// Model is the model the answer names (the request's), Upstream the
	// policy model that wrote it.
	Model    string
	Upstream string
	RunID    string
	Result   tpo.Result
	Plan     *plan
	Meter    meterSnapshot
	// Tools is what the initial samples of a request with tools did.
	Tools *toolOutcome
}

// deadline is when o's answer is due, or zero.
func (o outcome) deadline() time.Time {
	if o.Plan.Deadline <= 0 {
		return time.Time{}
	}
	return o.Arrived.Add(o.Plan.Deadline)
}

// summary builds the "tpo" object of a finished optimization.
func (o outcome) optimization(cands []tpo.Candidate) *Optimization {
	cfg := o.Plan.Config
	s := &Optimization{
		RunID: o.RunID, Mode: cfg.Mode, Width: cfg.Width, Depth: cfg.Steps(), Reward: o.Plan.Reward,
		Score: o.Result.Score, InitialBest: o.Result.InitialBest, Gain: o.Result.Gain(),
		Steps:       len(o.Result.Steps),
		Requests:    o.Meter.Policy.Requests,
		Retries:     o.Meter.Policy.Retries,
		RewardCalls: o.Meter.RewardCalls,
		Stages:      map[tpo.Stage]StageUsage{},
		Scores:      []float64{},
		StopReason:  o.Result.StopReason,
	}
	for st, u := range o.Meter.Stages {
		s.Stages[st] = u
	}
	for _, c := range cands {
		s.Scores = append(s.Scores, c.Score)
	}
	for _, st := range o.Result.Steps {
		for _, n := range st.Notes {
			s.Notes = append(s.Notes, "step "+strconv.Itoa(st.Step)+": "+n)
		}
	}
	switch t := o.Tools; {
	case t.answered():
		s.StopReason, s.Unoptimized = StopToolCalls, t.why()
	case t != nil && t.Called > 0:
		s.Notes = append(s.Notes, t.why())
	}
	return s
}

// toolChoices returns the choices of an answer that is the model's tool
// calls: up to n of them, as the model produced them.
func (o outcome) toolChoices() []openai.Choice {
	calls := o.Tools.Calls
	if len(calls) > o.Plan.N {
		calls = calls[:o.Plan.N]
	}
	out := make([]openai.Choice, len(calls))
	for i, c := range calls {
		c.Index = i
		c.Logprobs = nil
		out[i] = c
	}
	return out
}

// completionOf builds the response to a non-streamed request.
func completionOf(o outcome) completion {
	u := o.Meter.usage()
	if o.Tools.answered() {
		return completion{
			ChatResponse: openai.ChatResponse{ID: o.ID, Object: "chat.completion", Created: o.Created, Model: o.Model,
				Choices: o.toolChoices(), Usage: &u},
			TPO: o.optimization(nil),
		}
	}
	cands := bestDistinct(o.Result, o.Plan.N)
	c := completion{
		ChatResponse: openai.ChatResponse{ID: o.ID, Object: "chat.completion", Created: o.Created, Model: o.Model,
			Choices: make([]openai.Choice, 0, len(cands)), Usage: &u},
		TPO: o.optimization(cands),
	}
	for i, cd := range cands {
		c.Choices = append(c.Choices, openai.Choice{Index: i, Message: openai.ResponseMessage{Role: tpo.RoleAssistant, Content: cd.Text}, FinishReason: "stop"})
	}
	return c
}

// splitDeltas cuts text into pieces of about size bytes, at white space
// when there is some near the cut and always on rune boundaries, so that
// the pieces joined give text back.
func splitDeltas(text string, size int) []string {
	if size < 1 {
		size = 1
	}
	var out []string
	for len(text) > size {
		cut := size
		if i := strings.LastIndexAny(text[:size], " \n\t"); i >= size/2 {
			cut = i + 1
		}
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		if cut == 0 {
			// A rune longer than size: take it whole.
			_, n := utf8.DecodeRuneInString(text)
			cut = n
		}
		out = append(out, text[:cut])
		text = text[cut:]
	}
	if text != "" {
		out = append(out, text)
	}
	return out
}

// newCompletionID returns an id like OpenAI's: "chatcmpl-" and random hex.
func newCompletionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "chatcmpl-" + hex.EncodeToString(b[:])
}
