package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"

	"github.com/tpoproject/tpo"
)

// ArenaPrompt builds the messages that ask a judge for an Arena-Hard verdict
// on two answers to a question, and says how a reply without a verdict is
// followed up: with reminder, in up to attempts requests in all.
type ArenaPrompt struct {
	system   string
	user     func(question, a, b string) (string, error)
	reminder string
	attempts int
}

// ArenaV01Continue is what Arena-Hard-Auto v0.1's gen_judgment.py sends,
// after the judge's reply, when that reply holds no verdict label; its
// judge_config.yaml allows two attempts (number_of_judgment_attempts).
const ArenaV01Continue = "continue your judgment and finish by outputting a final verdict label"

// WithAttempts returns a copy of p that asks up to n times in all (the
// first request and n-1 follow-ups); n < 1 counts as 1.
func (p *ArenaPrompt) WithAttempts(n int) *ArenaPrompt {
	q := *p
	q.attempts = max(n, 1)
	return &q
}

// arenaTemplate is tpo's own Arena-Hard judge prompt.
var arenaTemplate = template.Must(template.ParseFS(promptFS, "prompts/arenahard.tmpl"))

// DefaultArenaPrompt is tpo's own Arena-Hard judge prompt.
func DefaultArenaPrompt() *ArenaPrompt {
	p, err := arenaPromptFromTemplate(arenaTemplate)
	if err != nil {
		panic(err) // the embedded template is tested
	}
	return p
}

// ParseArenaTemplate reads a judge prompt written as a Go text/template
// with a "system" and a "user" template, which see .Question, .AnswerA and
// .AnswerB.
func ParseArenaTemplate(text string) (*ArenaPrompt, error) {
	t, err := template.New("judge").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"system", "user"} {
		if t.Lookup(name) == nil {
			return nil, fmt.Errorf(`no {{define %q}} template`, name)
		}
	}
	return arenaPromptFromTemplate(t)
}

func arenaPromptFromTemplate(t *template.Template) (*ArenaPrompt, error) {
	var sys strings.Builder
	if err := t.ExecuteTemplate(&sys, "system", nil); err != nil {
		return nil, fmt.Errorf("system template: %w", err)
	}
	user := func(q, a, b string) (string, error) {
		var u strings.Builder
		err := t.ExecuteTemplate(&u, "user", struct{ Question, AnswerA, AnswerB string }{q, a, b})
		return u.String(), err
	}
	if _, err := user("q", "a", "b"); err != nil {
		return nil, fmt.Errorf("user template: %w", err)
	}
	return &ArenaPrompt{system: strings.TrimSpace(sys.String()), user: user, reminder: arenaReminder, attempts: 2}, nil
}

// NewArenaPromptFormat builds a judge prompt from Arena-Hard-Auto's own
// configuration: a system prompt and a user template in Python's
// str.format syntax, whose fields are {question_1}, {answer_1} and
// {answer_2} (its v0.1 judge_config.yaml) or {QUESTION}, {ANSWER_A} and
// {ANSWER_B} (its later configs); {{ and }} are literal braces. The texts
// are used unchanged, and a reply without a verdict is followed up as
// v0.1 does: ArenaV01Continue, two attempts in all (see WithAttempts).
func NewArenaPromptFormat(system, userTemplate string) (*ArenaPrompt, error) {
	if _, err := pyFormat(userTemplate, nil); err != nil {
		return nil, fmt.Errorf("prompt template: %w", err)
	}
	user := func(q, a, b string) (string, error) {
		return pyFormat(userTemplate, map[string]string{
			"question_1": q, "answer_1": a, "answer_2": b,
			"QUESTION": q, "ANSWER_A": a, "ANSWER_B": b,
		})
	}
	return &ArenaPrompt{system: system, user: user, reminder: ArenaV01Continue, attempts: 2}, nil
}

// pyFormat substitutes the {name} fields of s from values, as Python's
// str.format does for plain names; with values nil it only checks that
// every field is one NewArenaPromptFormat knows.
func pyFormat(s string, values map[string]string) (string, error) {
	known := map[string]bool{"question_1": true, "answer_1": true, "answer_2": true, "QUESTION": true, "ANSWER_A": true, "ANSWER_B": true}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{', c == '}' && i+1 < len(s) && s[i+1] == '}':
			b.WriteByte(c)
			i++
		case c == '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				return "", fmt.Errorf("unclosed field at byte %d", i)
			}
			name := s[i+1 : i+j]
			if !known[name] {
				return "", fmt.Errorf("unknown field {%s} (want {question_1}, {answer_1}, {answer_2} or {QUESTION}, {ANSWER_A}, {ANSWER_B})", name)
			}
			b.WriteString(values[name])
			i += j
		case c == '}':
			return "", fmt.Errorf("single '}' at byte %d", i)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// Messages returns the conversation asking the judge about answers a (shown
// first, as Assistant A) and b.
func (p *ArenaPrompt) Messages(question, a, b string) ([]tpo.Message, error) {
	user, err := p.user(question, a, b)
	if err != nil {
		return nil, err
	}
	var msgs []tpo.Message
	if p.system != "" {
		msgs = append(msgs, tpo.Message{Role: tpo.RoleSystem, Content: p.system})
	}
	return append(msgs, tpo.Message{Role: tpo.RoleUser, Content: user}), nil
}

// arenaReminder is sent after a reply without a verdict to tpo's own
// prompt, or a Go template.
const arenaReminder = "Finish your judgment: end with exactly one verdict label, [[A>>B]], [[A>B]], [[A=B]], [[B>A]] or [[B>>A]]."

// ArenaItem is one Arena-Hard question with the model's and the
// baseline's answers.
type ArenaItem struct {
	ID, Question, Answer, Baseline string
}

// ArenaJudge judges answers against the baseline's as Arena-Hard-Auto does:
// two games per question, the baseline's answer shown first in the first.
type ArenaJudge struct {
	Model  tpo.Generator
	Prompt *ArenaPrompt // nil: DefaultArenaPrompt
	// Sampling is sent with every request; zero means temperature 0 and
	// 4096 tokens, Arena-Hard's setting.
	Sampling tpo.Sampling
	// ModelName and JudgeName fill the judgments' model and judge fields.
	ModelName, JudgeName string
}

// arenaSampling is Arena-Hard-Auto v0.1's judge setting.
var arenaSampling = tpo.Sampling{Temperature: 0, TopP: 1, MaxTokens: 4096}

// UserPrompts returns the user prompts of the two games on it, by which an
// earlier judgment of the same answers is recognized.
func (j *ArenaJudge) UserPrompts(it ArenaItem) ([2]string, error) {
	var out [2]string
	for g, ab := range [2][2]string{{it.Baseline, it.Answer}, {it.Answer, it.Baseline}} {
		msgs, err := j.prompt().Messages(it.Question, ab[0], ab[1])
		if err != nil {
			return out, err
		}
		out[g] = msgs[len(msgs)-1].Content
	}
	return out, nil
}

func (j *ArenaJudge) prompt() *ArenaPrompt {
	if j.Prompt == nil {
		return DefaultArenaPrompt()
	}
	return j.Prompt
}

// game plays one game: a is shown as Assistant A. As in Arena-Hard-Auto
// v0.1, a reply without a verdict label is sent back with the prompt's
// reminder (but not one with different labels), and the game's judgment
// is every reply, each after a newline.
func (j *ArenaJudge) game(ctx context.Context, question, a, b string) *ArenaGame {
	p := j.prompt()
	msgs, err := p.Messages(question, a, b)
	if err != nil {
		return &ArenaGame{Error: err.Error()}
	}
	s := j.Sampling
	if s == (tpo.Sampling{}) {
		s = arenaSampling
	}
	var replies strings.Builder
	parse := func(reply string) (string, error) {
		replies.WriteString("\n" + reply)
		return ParseArenaVerdict(reply)
	}
	followUps := p.attempts - 1
	if followUps <= 0 {
		followUps = -1 // askLabel's "never"
	}
	label, ok, _, _, err := askLabel(ctx, j.Model, s, msgs, p.reminder, followUps, parse)
	g := &ArenaGame{UserPrompt: msgs[len(msgs)-1].Content, Judgment: jsonString(replies.String())}
	switch {
	case err != nil:
		g.Error = err.Error()
	case ok:
		g.Score = &label
	}
	return g
}

// Run judges every item (two games each, at most concurrency requests at
// once) and calls done with each item's judgment when both games are
// played; done is never called concurrently. Request failures are in the
// games' Error; Run returns ctx's error or done's.
func (j *ArenaJudge) Run(ctx context.Context, items []ArenaItem, concurrency int, done func(ArenaJudgment) error) error {
	judgments := make([]ArenaJudgment, len(items))
	for i, it := range items {
		judgments[i] = ArenaJudgment{QuestionID: it.ID, Model: j.ModelName, Judge: j.JudgeName, Games: make([]*ArenaGame, 2)}
	}
	play := func(ctx context.Context, i int, swapped bool) func() {
		it := items[i]
		a, b, g := it.Baseline, it.Answer, 0
		if swapped {
			a, b, g = b, a, 1
		}
		game := j.game(ctx, it.Question, a, b)
		return func() { judgments[i].Games[g] = game }
	}
	return bothOrders(ctx, len(items), concurrency, play, func(i int) error { return done(judgments[i]) })
}

// Failed reports whether a game's request failed, so that the question is
// worth judging again.
func (j ArenaJudgment) Failed() bool {
	for _, g := range j.Games {
		if g == nil || g.Error != "" {
			return true
		}
	}
	return false
}

// jsonString encodes s as a JSON string, without escaping HTML's <, >
// and &, as Python's json.dumps writes it.
func jsonString(s string) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
