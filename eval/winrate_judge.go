package eval

import (
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"

	"github.com/tpoproject/tpo"
)

//go:embed prompts/judge.tmpl prompts/refusal.tmpl prompts/arenahard.tmpl
var promptFS embed.FS

var judgeTemplate = template.Must(template.ParseFS(promptFS, "prompts/judge.tmpl"))

// JudgeMessages returns the conversation that asks a judge model to compare
// answerA and answerB to question. The judge is told to end its reply with
// [[A]], [[B]] or [[C]] (a tie); ParseVerdict reads that reply. To judge
// both orders, call it twice with the answers swapped and map the second
// verdict back with Outcome.Swap.
func JudgeMessages(question, answerA, answerB string) ([]tpo.Message, error) {
	return promptMessages(judgeTemplate, "judge", struct{ Question, AnswerA, AnswerB string }{question, answerA, answerB})
}

// promptMessages executes the "system" and "user" templates of t with data
// into a conversation; what names the prompt in errors.
func promptMessages(t *template.Template, what string, data any) ([]tpo.Message, error) {
	var sys, user strings.Builder
	if err := t.ExecuteTemplate(&sys, "system", data); err != nil {
		return nil, fmt.Errorf("%s system prompt: %w", what, err)
	}
	if err := t.ExecuteTemplate(&user, "user", data); err != nil {
		return nil, fmt.Errorf("%s user prompt: %w", what, err)
	}
	return []tpo.Message{
		{Role: tpo.RoleSystem, Content: sys.String()},
		{Role: tpo.RoleUser, Content: user.String()},
	}, nil
}

// ErrNoVerdict is returned by ParseVerdict when a judge's reply holds no
// recognizable verdict.
var ErrNoVerdict = errors.New("no verdict in judge reply")

var (
	// bracketVerdict matches [[A]], [[ b ]], [[C]], [[tie]], [[A>B]], [[B>>A]], [[A=B]].
	bracketVerdict = regexp.MustCompile(`(?i)\[\[\s*(A|B|C|tie|A\s*(?:>>?|<<?|=)\s*B|B\s*(?:>>?|<<?|=)\s*A)\s*\]\]`)
	// lineVerdict matches "Verdict: A", "Final verdict: Assistant B is better", "Winner: tie".
	lineVerdict = regexp.MustCompile(`(?im)^[\s*#>_]*(?:final\s+)?(?:verdict|winner|decision|better\s+answer)\s*(?:\*\*)?\s*[:：-]\s*(?:\*\*)?\s*(?:answer\s+|assistant\s+)?\[?\(?\s*(A|B|C|tie|A\s*(?:>>?|<<?|=)\s*B|B\s*(?:>>?|<<?|=)\s*A)\b`)
	spaces      = regexp.MustCompile(`\s+`)
)

// ParseVerdict reads a judge's verdict. The format asked for is a final
// [[A]], [[B]] or [[C]] (tie); it also accepts [[tie]], comparisons such as
// [[A>B]], [[A>>B]], [[B<A]] or [[A=B]], and a line such as "Verdict: A" or
// "**Final verdict:** Answer B". When several verdicts appear, the last one
// counts. The outcome names the answers as labelled in the prompt: AWins
// means the answer shown as A.
func ParseVerdict(reply string) (Outcome, error) {
	best, at := Unknown, -1
	for _, m := range bracketVerdict.FindAllStringSubmatchIndex(reply, -1) {
		if o := verdictOutcome(reply[m[2]:m[3]]); o != Unknown && m[0] > at {
			best, at = o, m[0]
		}
	}
	if best == Unknown {
		for _, m := range lineVerdict.FindAllStringSubmatchIndex(reply, -1) {
			if o := verdictOutcome(reply[m[2]:m[3]]); o != Unknown && m[0] > at {
				best, at = o, m[0]
			}
		}
	}
	if best == Unknown {
		return Unknown, ErrNoVerdict
	}
	return best, nil
}

// verdictOutcome maps a verdict token to an outcome.
func verdictOutcome(tok string) Outcome {
	t := strings.ToUpper(spaces.ReplaceAllString(tok, ""))
	switch t {
	case "A", "A>B", "A>>B", "B<A", "B<<A":
		return AWins
	case "B", "B>A", "B>>A", "A<B", "A<<B":
		return BWins
	case "C", "TIE", "A=B", "B=A":
		return Tie
	}
	return Unknown
}
