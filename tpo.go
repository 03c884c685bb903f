// Package tpo implements Test-Time Preference Optimization (TPO, arXiv
// 2501.12895): it aligns a language model's answer at inference time by
// sampling responses, scoring them with a reward model, and letting the policy
// model critique and improve its best response against its worst, without
// touching the model's weights.
//
// The root package speaks the domain: conversations, candidates, steps and
// results; the optimizer loop; the small interfaces it consumes (Generator,
// Scorer, Store); and the events it emits. Talking to model servers, storing
// runs and serving HTTP live in subpackages.
package tpo

import (
	"context"
	"errors"
	"fmt"
)

// Message is one turn of a chat conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Roles used in messages.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Mode selects the optimization algorithm.
type Mode string

// The modes.
const (
	// ModeTPO critiques the best response against the worst, derives
	// instructions from the critique and samples improved responses.
	ModeTPO Mode = "tpo"
	// ModeRevision critiques the best response alone (no rejected response).
	ModeRevision Mode = "revision"
	// ModeBoN samples and scores only: best of N.
	ModeBoN Mode = "bon"
)

// ParseMode returns the mode named s, or an error naming the valid modes.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeTPO, ModeRevision, ModeBoN:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want tpo, revision or bon)", s)
}

// Stage names one kind of model call within an optimization.
type Stage string

// The stages of one optimization.
const (
	StageSample   Stage = "sample"   // step 0: N samples of the user's conversation
	StageLoss     Stage = "loss"     // textual loss: a critique of chosen vs rejected
	StageGradient Stage = "gradient" // textual gradient: instructions from the critique
	StageUpdate   Stage = "update"   // N new responses that follow the instructions
	StageScore    Stage = "score"    // reward model scoring
)

// Sampling holds the decoding settings sent with every generation request.
// All three are always sent explicitly: servers' defaults differ.
type Sampling struct {
	Temperature float64 `json:"temperature" yaml:"temperature"`
	TopP        float64 `json:"top_p" yaml:"top_p"`
	MaxTokens   int     `json:"max_tokens" yaml:"max_tokens"`
}

// GenerateRequest asks a policy model for N responses to a conversation.
type GenerateRequest struct {
	Messages []Message
	N        int
	Sampling Sampling
	// Seed, when not nil, is sent to the server. Servers that split an n>1
	// request into children (vLLM) give child i the seed Seed+i.
	Seed *int64
	// Stage says what the request is for; clients use it for accounting.
	Stage Stage
}

// Usage counts what model calls cost.
type Usage struct {
	Requests         int `json:"requests"`
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	// Retries counts HTTP attempts that were retried after a failure.
	Retries int `json:"retries,omitempty"`
}

// Add adds o to u.
func (u *Usage) Add(o Usage) {
	u.Requests += o.Requests
	u.PromptTokens += o.PromptTokens
	u.CompletionTokens += o.CompletionTokens
	u.Retries += o.Retries
}

// TotalTokens is prompt plus completion tokens.
func (u Usage) TotalTokens() int { return u.PromptTokens + u.CompletionTokens }

// Generation is a policy model's answer to a GenerateRequest.
type Generation struct {
	// Texts holds one entry per returned choice, in choice order. It may hold
	// fewer than N entries only if the server returned fewer and the client
	// could not make up the difference.
	Texts []string
	// Finish holds the finish reason the server gave for each text ("stop",
	// "length", ...), when it gave one; it is nil or as long as Texts.
	Finish []string
	// Usage covers every HTTP request made for this generation.
	Usage Usage
}

// finishLength is the finish reason of a text that the server cut at the
// length limit (max_tokens).
const finishLength = "length"

// Cut reports whether text i was cut at the length limit.
func (g Generation) Cut(i int) bool { return i < len(g.Finish) && g.Finish[i] == finishLength }

// Generator produces responses from a policy model.
type Generator interface {
	Generate(ctx context.Context, req GenerateRequest) (Generation, error)
}

// Scorer gives each response to a conversation a scalar reward; higher is
// better. It returns exactly one score per response, in order, with what
// scoring them cost (also when it fails, as far as it got).
type Scorer interface {
	Score(ctx context.Context, messages []Message, responses []string) (Scores, error)
}

// Scores is what a Scorer returns.
type Scores struct {
	// Values holds one score per response, in order.
	Values []float64
	// Usage is what the reward model calls cost, as far as the backend can
	// tell: HTTP requests and retries, and a judge's tokens.
	Usage Usage
	// Notes record what the backend did on purpose that the step should
	// show (a response truncated to fit the reward model, a fallback to
	// another endpoint).
	Notes []string
}

// ErrContextLength is wrapped by errors a Generator returns when the server
// says the request does not fit the model's context window.
var ErrContextLength = errors.New("context length exceeded")

// Candidate is one scored response in the cache.
type Candidate struct {
	Text  string  `json:"text"`
	Score float64 `json:"score"`
	// Cut is true when the server stopped writing the text at the length
	// limit (finish reason "length"): it may end mid-sentence.
	Cut bool `json:"cut,omitempty"`
	// Unclosed is true for an update whose <improved_response> block had no
	// closing tag: the text runs from the opening tag to the end.
	Unclosed bool `json:"unclosed,omitempty"`
}

// Ref points at a candidate in a trajectory: Steps[Step].Candidates[Index].
type Ref struct {
	Step  int `json:"step"`
	Index int `json:"index"`
}

// String returns the ref as people read it: "step 0 #2" (indexes count
// from 0, as in the results file).
func (r Ref) String() string { return fmt.Sprintf("step %d #%d", r.Step, r.Index) }

// Step is one finished step of an optimization. Step 0 holds the initial
// samples; steps 1..D hold the loss, gradient and updated candidates.
type Step struct {
	Step       int         `json:"step"`
	Candidates []Candidate `json:"candidates"`
	// Chosen and Rejected are the candidates the loss compared (steps >= 1).
	// Rejected is nil in revision mode and when every score was equal.
	Chosen   *Ref   `json:"chosen,omitempty"`
	Rejected *Ref   `json:"rejected,omitempty"`
	Loss     string `json:"loss,omitempty"`
	Gradient string `json:"gradient,omitempty"`
	// Unparsed holds the raw text of update samples that had no
	// <improved_response> block; they are not candidates.
	Unparsed []string `json:"unparsed,omitempty"`
	// Notes records what happened out of the ordinary (a fallback, a retry
	// with a smaller budget, an iteration that produced nothing).
	Notes []string `json:"notes,omitempty"`
	// Calls holds the exact requests sent to the policy model in this step.
	Calls []Call `json:"calls,omitempty"`
	Usage Usage  `json:"usage"`
	// ScoreUsage is what the reward model calls of the step cost, as far as
	// the backend reports it (HTTP requests and retries; a judge's tokens).
	ScoreUsage Usage `json:"score_usage"`
	// Millis is the wall time of each stage in milliseconds.
	Millis map[Stage]int64 `json:"millis,omitempty"`
}

// Call is one request sent to the policy model, kept so users can see the
// exact messages behind every stage.
type Call struct {
	Stage    Stage     `json:"stage"`
	Messages []Message `json:"messages"`
	N        int       `json:"n"`
	Seed     *int64    `json:"seed,omitempty"`
	// Returned is the number of responses the call returned.
	Returned int `json:"returned"`
	// Usage is what the call cost; Millis its wall time.
	Usage  Usage  `json:"usage"`
	Millis int64  `json:"millis"`
	Error  string `json:"error,omitempty"`
}

// Item is one conversation to optimize.
type Item struct {
	ID       string    `json:"id"`
	Messages []Message `json:"messages"`
}

// Prompt returns the content of the last user turn: what is being answered.
func (it Item) Prompt() string {
	for i := len(it.Messages) - 1; i >= 0; i-- {
		if it.Messages[i].Role == RoleUser {
			return it.Messages[i].Content
		}
	}
	return ""
}

// Validate reports what is wrong with the item's conversation, if anything.
func (it Item) Validate() error {
	if len(it.Messages) == 0 {
		return errors.New("empty conversation")
	}
	for i, m := range it.Messages {
		switch m.Role {
		case RoleSystem, RoleUser, RoleAssistant:
		default:
			return fmt.Errorf("message %d: unknown role %q", i, m.Role)
		}
	}
	if last := it.Messages[len(it.Messages)-1]; last.Role != RoleUser {
		return fmt.Errorf("last message has role %q; the conversation must end with a user turn", last.Role)
	}
	if it.Prompt() == "" {
		return errors.New("the last user turn is empty")
	}
	return nil
}

// Result is the outcome of optimizing one item.
type Result struct {
	ID       string    `json:"id"`
	Prompt   string    `json:"prompt"`
	Messages []Message `json:"messages,omitempty"`
	// Response is the best candidate of the whole cache, Score its score.
	Response string  `json:"response"`
	Score    float64 `json:"score"`
	// Best is where Response sits in Steps.
	Best Ref `json:"best"`
	// InitialBest is the best score among the step-0 samples (best of N).
	InitialBest float64 `json:"initial_best"`
	Steps       []Step  `json:"steps"`
	Usage       Usage   `json:"usage"`
	// ScoreCalls counts reward model calls; ScoreUsage sums the steps'.
	ScoreCalls int   `json:"score_calls"`
	ScoreUsage Usage `json:"score_usage"`
	// StopReason says why the optimization stopped when it succeeded: it
	// ran all its rounds (StopDepth), or a stopping rule ended it early.
	StopReason StopReason `json:"stop_reason,omitempty"`
	// Error is empty on success.
	Error string `json:"error,omitempty"`
}

// StopReason says why an optimization stopped.
type StopReason string

// The reasons.
const (
	StopDepth    StopReason = "depth"    // every round ran (D, or 0 in bon mode)
	StopPatience StopReason = "patience" // the best score stopped improving (Config.Patience)
	StopTarget   StopReason = "target"   // the best score reached Config.TargetScore
	StopBudget   StopReason = "budget"   // the next round would exceed Config.MaxItemTokens
	StopDeadline StopReason = "deadline" // Options.Deadline passed
)

// StopReasons lists the reasons in the order reports show them.
var StopReasons = []StopReason{StopDepth, StopPatience, StopTarget, StopBudget, StopDeadline}

// Gain is the improvement of the answer over the best initial sample.
func (r Result) Gain() float64 { return r.Score - r.InitialBest }
