package reward

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"text/template"

	"golang.org/x/sync/errgroup"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/openai"
)

//go:embed templates/judge_system.tmpl
var judgeSystemTemplate string

//go:embed templates/judge_user.tmpl
var judgeUserTemplate string

// DefaultJudgeTemplates returns the text/template sources of the judge's
// default system and user prompts, to start a custom one from.
func DefaultJudgeTemplates() (system, user string) {
	return judgeSystemTemplate, judgeUserTemplate
}

// JudgeData is what the judge's prompt templates are executed with.
type JudgeData struct {
	// Messages is the conversation the response answers, system turns
	// included.
	Messages []tpo.Message
	// Prompt is the content of the last user turn.
	Prompt string
	// Response is the reply to grade.
	Response string
	// Min and Max are the ends of the scale: 1 and 10.
	Min, Max int
	// Tag is a code for the lines that mark where quoted texts begin and
	// end (see tpo.QuoteTag). It is derived from the conversation and the
	// response, and removed from them, so neither can end its block early.
	Tag string
}

// Judge defaults.
const (
	DefaultJudgeMaxTokens   = 8
	DefaultJudgeConcurrency = 8
	judgeTopLogprobs        = 20
)

// judgeReminder is sent, with the judge's first reply, when that reply held
// no score.
const judgeReminder = "That reply has no grade I can read. Reply with the grade alone: one whole number from 1 to 10."

// judgeReply is what one judge request returned.
type judgeReply struct {
	Text      string
	Logprobs  []TokenLogprob // nil when the server sent none
	Reasoning string         // a reasoning model's thinking, sent apart
	Finish    string         // the finish reason
}

// ChatClient sends one chat completion request. *openai.Client implements
// it.
type ChatClient interface {
	Chat(ctx context.Context, req openai.ChatRequest) (openai.ChatResponse, httpx.Info, error)
}

var _ ChatClient = (*openai.Client)(nil)

// Judge scores responses by asking an LLM to grade each one on a fixed
// scale of 1 to 10. It sends one chat request per response (at most
// Concurrency at a time) with temperature 0, a small max_tokens and
// "logprobs": true with 20 top_logprobs. When the server returns logprobs,
// the score is the expected grade under the judge's distribution over the
// numbers 1..10 at the position where it writes the grade (see
// ExpectedJudgeScore), a finer signal than the grade alone; otherwise it is
// the grade read from the reply's text (see ParseJudgeScore). A server that
// refuses logprobs is asked without them from then on. A reply with no
// readable grade is retried once with a reminder, then fails with an error
// quoting it. It is safe for concurrent use.
//
// The prompts are text/templates executed with JudgeData; see
// DefaultJudgeTemplates. Thinking models that spend their first tokens on
// reasoning need a larger MaxTokens or their reasoning turned off.
type Judge struct {
	client         ChatClient
	system         *template.Template
	user           *template.Template
	maxTokens      int
	maxTokensField string
	concurrency    int
	log            *slog.Logger
	noLogprobs     atomic.Bool // the server refused logprobs, or they are disabled
}

// JudgeOptions configures a Judge. Either Client or URLs and Model say
// which model judges.
type JudgeOptions struct {
	// Client, when set, sends the judge's requests; the connection fields
	// of Options are then unused (but its Logger is). It is typically the
	// policy model's client, so that TPO can run with one local model.
	Client ChatClient

	// Options locate the judge's servers when Client is nil: URLs are the
	// base URLs, /v1 included, of one or more replicas of an
	// OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, OpenAI),
	// e.g. http://localhost:8000/v1. Name defaults to "judge".
	httpx.Options
	// Model is the model name sent with each request (required with URLs).
	Model string

	// MaxTokensField names the length limit field: "max_tokens" (the
	// default) or "max_completion_tokens" (OpenAI's reasoning models).
	MaxTokensField string
	// SystemTemplate and UserTemplate are text/template sources for the
	// judge's prompts, executed with JudgeData; empty means the default
	// (see DefaultJudgeTemplates). A system prompt that executes to blank
	// text sends no system message.
	SystemTemplate, UserTemplate string
	// MaxTokens caps the judge's reply (default 8).
	MaxTokens int
	// Concurrency is how many responses are judged at once (default 8).
	Concurrency int
	// DisableLogprobs stops the judge asking for logprobs, for servers that
	// mishandle them; scores are then whole grades read from the text.
	DisableLogprobs bool
}

// NewJudge returns a judge for the model described by opts.
func NewJudge(opts JudgeOptions) (*Judge, error) {
	if opts.MaxTokens < 0 || opts.Concurrency < 0 {
		return nil, fmt.Errorf("reward: negative judge max tokens (%d) or concurrency (%d)", opts.MaxTokens, opts.Concurrency)
	}
	field := cmp.Or(opts.MaxTokensField, openai.MaxTokens)
	if field != openai.MaxTokens && field != openai.MaxCompletionTokens {
		return nil, fmt.Errorf("reward: judge max tokens field %q: want %q or %q", field, openai.MaxTokens, openai.MaxCompletionTokens)
	}
	system, user, err := parseJudgeTemplates(opts.SystemTemplate, opts.UserTemplate)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := opts.Client
	if client == nil {
		hopts := opts.Options
		hopts.Name = cmp.Or(hopts.Name, "judge")
		hopts.Logger = log
		c, err := openai.New(openai.Options{Options: hopts, Model: opts.Model, MaxTokensField: field})
		if err != nil {
			return nil, fmt.Errorf("reward: %w", err)
		}
		client = c
	}
	j := &Judge{
		client:         client,
		system:         system,
		user:           user,
		maxTokens:      cmp.Or(opts.MaxTokens, DefaultJudgeMaxTokens),
		maxTokensField: field,
		concurrency:    cmp.Or(opts.Concurrency, DefaultJudgeConcurrency),
		log:            log,
	}
	j.noLogprobs.Store(opts.DisableLogprobs)
	return j, nil
}

// parseJudgeTemplates parses custom or default templates.
func parseJudgeTemplates(system, user string) (*template.Template, *template.Template, error) {
	if system == "" {
		system = judgeSystemTemplate
	}
	if user == "" {
		user = judgeUserTemplate
	}
	st, err := template.New("judge_system").Option("missingkey=error").Parse(system)
	if err != nil {
		return nil, nil, fmt.Errorf("reward: judge system template: %w", err)
	}
	ut, err := template.New("judge_user").Option("missingkey=error").Parse(user)
	if err != nil {
		return nil, nil, fmt.Errorf("reward: judge user template: %w", err)
	}
	// Execute once on sample data so that errors show now, not mid-run.
	sample := JudgeData{
		Messages: []tpo.Message{{Role: tpo.RoleUser, Content: "q"}},
		Prompt:   "q", Response: "r", Min: JudgeMin, Max: JudgeMax,
	}
	if _, err := execute(st, sample); err != nil {
		return nil, nil, fmt.Errorf("reward: judge system template: %w", err)
	}
	if _, err := execute(ut, sample); err != nil {
		return nil, nil, fmt.Errorf("reward: judge user template: %w", err)
	}
	return st, ut, nil
}

func execute(t *template.Template, data JudgeData) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Prompt returns the messages the judge is sent to grade response as the
// reply to messages.
func (j *Judge) Prompt(messages []tpo.Message, response string) ([]tpo.Message, error) {
	data := judgeData(messages, response)
	sys, err := execute(j.system, data)
	if err != nil {
		return nil, fmt.Errorf("reward: judge system template: %w", err)
	}
	user, err := execute(j.user, data)
	if err != nil {
		return nil, fmt.Errorf("reward: judge user template: %w", err)
	}
	var out []tpo.Message
	if s := strings.TrimSpace(sys); s != "" {
		out = append(out, tpo.Message{Role: tpo.RoleSystem, Content: s})
	}
	return append(out, tpo.Message{Role: tpo.RoleUser, Content: strings.TrimSpace(user)}), nil
}

// judgeData quotes the conversation and the response under a tag derived
// from them.
func judgeData(messages []tpo.Message, response string) JudgeData {
	texts := make([]string, 0, 2*len(messages)+1)
	for _, m := range messages {
		texts = append(texts, m.Role, m.Content)
	}
	tag := tpo.QuoteTag(append(texts, response)...)
	quoted := make([]tpo.Message, len(messages))
	for i, m := range messages {
		quoted[i] = tpo.Message{Role: m.Role, Content: tpo.WithoutTag(m.Content, tag)}
	}
	return JudgeData{Messages: quoted, Prompt: lastUser(quoted), Response: tpo.WithoutTag(response, tag),
		Min: JudgeMin, Max: JudgeMax, Tag: tag}
}

// Score implements tpo.Scorer.
func (j *Judge) Score(ctx context.Context, messages []tpo.Message, responses []string) (tpo.Scores, error) {
	t := &tally{}
	if len(responses) == 0 {
		return t.scores([]float64{}), nil
	}
	scores := make([]float64, len(responses))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(j.concurrency)
	for i, r := range responses {
		g.Go(func() error {
			v, err := j.grade(gctx, t, messages, r)
			if err != nil {
				return fmt.Errorf("reward: judging response %d: %w", i, err)
			}
			scores[i] = v
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return t.scores(nil), err
	}
	return t.scores(scores), nil
}

// grade asks the judge for one response's score, reminding it once of the
// format if its first reply has no readable score.
func (j *Judge) grade(ctx context.Context, t *tally, messages []tpo.Message, response string) (float64, error) {
	prompt, err := j.Prompt(messages, response)
	if err != nil {
		return 0, err
	}
	reply, err := j.chat(ctx, t, prompt)
	if err != nil {
		return 0, err
	}
	v, fromLogprobs, err := JudgeScore(reply.Text, reply.Logprobs)
	if err == nil {
		j.log.Debug("judge score", "score", v, "from_logprobs", fromLogprobs, "reply", reply.Text)
		return v, nil
	}
	if strings.TrimSpace(reply.Text) == "" && reply.Reasoning != "" {
		// Asking again would end the same way.
		return 0, fmt.Errorf("the judge spent its %d tokens reasoning and gave no grade (finish reason %q): "+
			"raise the judge's max tokens or turn its thinking off", j.maxTokens, reply.Finish)
	}
	j.log.Warn("judge reply has no score; asking again", "reply", clip(reply.Text, 300))
	retry := slices.Concat(prompt, []tpo.Message{
		{Role: tpo.RoleAssistant, Content: reply.Text},
		{Role: tpo.RoleUser, Content: judgeReminder},
	})
	again, err := j.chat(ctx, t, retry)
	if err != nil {
		return 0, err
	}
	v, _, err = JudgeScore(again.Text, again.Logprobs)
	if err != nil {
		return 0, fmt.Errorf("the judge gave no score from 1 to 10, twice: first reply %q, second reply %q",
			clip(reply.Text, 300), clip(again.Text, 300))
	}
	return v, nil
}

// chat sends one request to the judge model with temperature 0 and, unless
// the server refused them before, logprobs. A server that answers 400 or
// 422 to a request with logprobs, naming them, is asked again without, and
// never again with.
func (j *Judge) chat(ctx context.Context, t *tally, messages []tpo.Message) (judgeReply, error) {
	zero, maxTokens := 0.0, j.maxTokens
	req := openai.ChatRequest{Messages: openai.Messages(messages), Temperature: &zero}
	if j.maxTokensField == openai.MaxCompletionTokens {
		req.MaxCompletionTokens = &maxTokens
	} else {
		req.MaxTokens = &maxTokens
	}
	withLogprobs := !j.noLogprobs.Load()
	if withLogprobs {
		yes, top := true, judgeTopLogprobs
		req.Logprobs, req.TopLogprobs = &yes, &top
	}
	resp, info, err := j.client.Chat(ctx, req)
	t.add(info.Usage(err))
	var se *httpx.StatusError
	if withLogprobs && errors.As(err, &se) && inputRefused(se) &&
		strings.Contains(strings.ToLower(se.Message+" "+se.Param), "logprobs") {
		if !j.noLogprobs.Swap(true) {
			j.log.Warn("the judge's server refused logprobs; reading whole grades from the text instead", "err", err)
		}
		req.Logprobs, req.TopLogprobs = nil, nil
		resp, info, err = j.client.Chat(ctx, req)
		t.add(info.Usage(err))
	}
	if err != nil {
		return judgeReply{}, err
	}
	if resp.Usage != nil {
		t.add(tpo.Usage{PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens})
	}
	return replyOf(resp)
}

// replyOf reads the first choice of a chat completion: its text and, when
// present, its logprobs.
func replyOf(resp openai.ChatResponse) (judgeReply, error) {
	if len(resp.Choices) == 0 {
		return judgeReply{}, errors.New("the judge's response has no choices")
	}
	c := resp.Choices[0]
	reply := judgeReply{Text: c.Message.Content, Reasoning: c.Message.ReasoningContent, Finish: c.FinishReason}
	if c.Logprobs == nil {
		return reply, nil
	}
	for _, p := range c.Logprobs.Content {
		lp := TokenLogprob{Token: p.Token, Logprob: p.Logprob}
		for _, t := range p.TopLogprobs {
			lp.Top = append(lp.Top, TopLogprob{Token: t.Token, Logprob: t.Logprob})
		}
		reply.Logprobs = append(reply.Logprobs, lp)
	}
	return reply, nil
}

// Check verifies, before any scoring, that the judge's server answers and
// serves the judge's model, when its client can tell (an *openai.Client
// can): an unreachable server or a model it does not serve fails at once,
// naming the server. A server that cannot list its models is let through.
func (j *Judge) Check(ctx context.Context) error {
	c, ok := j.client.(interface{ Check(context.Context) error })
	if !ok {
		return nil
	}
	err := c.Check(ctx)
	var se *httpx.StatusError
	if errors.As(err, &se) {
		j.log.Debug("the judge's server cannot list its models; not checked", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reward: checking the judge: %w", err)
	}
	return nil
}
