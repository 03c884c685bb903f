package reward

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"text/template"

	"golang.org/x/sync/errgroup"

	"github.com/tpoproject/tpo"
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
	Text     string
	Logprobs []TokenLogprob // nil when the server sent none
}

// judgeRequest is one request to the judge model.
type judgeRequest struct {
	Messages  []tpo.Message
	MaxTokens int
}

// judgeChat sends one chat request to the judge model with temperature 0
// and, where the server supports them, logprobs with the top 20
// alternatives per token.
type judgeChat func(ctx context.Context, req judgeRequest) (judgeReply, error)

// Judge scores responses by asking an LLM to grade each one on a fixed
// scale of 1 to 10. It sends one chat request per response (at most
// Concurrency at a time) with temperature 0, a small max_tokens and
// "logprobs": true with 20 top_logprobs. When the server returns logprobs,
// the score is the expected grade under the judge's distribution over the
// numbers 1..10 at the position where it writes the grade (see
// ExpectedJudgeScore), a finer signal than the grade alone; otherwise it is
// the grade read from the reply's text (see ParseJudgeScore). A reply with
// no readable grade is retried once with a reminder, then fails with an
// error quoting it. It is safe for concurrent use.
//
// The prompts are text/templates executed with JudgeData; see
// DefaultJudgeTemplates. Thinking models that spend their first tokens on
// reasoning need a larger MaxTokens or their reasoning turned off.
type Judge struct {
	chat        judgeChat
	system      *template.Template
	user        *template.Template
	maxTokens   int
	concurrency int
	log         *slog.Logger
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
	data := JudgeData{Messages: messages, Prompt: lastUser(messages), Response: response, Min: JudgeMin, Max: JudgeMax}
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

// Score implements tpo.Scorer.
func (j *Judge) Score(ctx context.Context, messages []tpo.Message, responses []string) ([]float64, error) {
	if len(responses) == 0 {
		return []float64{}, nil
	}
	scores := make([]float64, len(responses))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(j.concurrency)
	for i, r := range responses {
		g.Go(func() error {
			v, err := j.grade(gctx, messages, r)
			if err != nil {
				return fmt.Errorf("reward: judging response %d: %w", i, err)
			}
			scores[i] = v
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return scores, nil
}

// grade asks the judge for one response's score, reminding it once of the
// format if its first reply has no readable score.
func (j *Judge) grade(ctx context.Context, messages []tpo.Message, response string) (float64, error) {
	prompt, err := j.Prompt(messages, response)
	if err != nil {
		return 0, err
	}
	reply, err := j.chat(ctx, judgeRequest{Messages: prompt, MaxTokens: j.maxTokens})
	if err != nil {
		return 0, err
	}
	v, fromLogprobs, err := JudgeScore(reply.Text, reply.Logprobs)
	if err == nil {
		j.log.Debug("judge score", "score", v, "from_logprobs", fromLogprobs, "reply", reply.Text)
		return v, nil
	}
	if !errors.Is(err, errNoScore) {
		return 0, err
	}
	j.log.Warn("judge reply has no score; asking again", "reply", clip(reply.Text, 300))
	retry := slices.Concat(prompt, []tpo.Message{
		{Role: tpo.RoleAssistant, Content: reply.Text},
		{Role: tpo.RoleUser, Content: judgeReminder},
	})
	again, err := j.chat(ctx, judgeRequest{Messages: retry, MaxTokens: j.maxTokens})
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
