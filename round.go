package tpo

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// textKind names a text that the prompts of a round carry.
type textKind int

const (
	textQuery textKind = iota
	textChosen
	textRejected
	textLoss
	textGradient
	numTexts
)

func (k textKind) String() string {
	return [...]string{"the request", "the chosen response", "the rejected response", "the critique", "the instructions"}[k]
}

// minCut is the length below which a text is not cut further to fit a
// context window.
const minCut = 256

// round holds the prompts of one loss/gradient/update round: the texts it
// carries, each within its own byte budget, and the template data. The three
// calls of a round are one growing conversation (see TemplateNames), so each
// request starts with the whole of the one before it.
type round struct {
	tmpl  *Templates
	data  PromptData // Role, Revision and Tag; the texts are filled per call
	full  [numTexts]string
	limit [numTexts]int // bytes; 0 means no limit
}

// newRound prepares the prompts of step's round. An empty rejected text
// means the revision critique (no rejected response).
func newRound(tmpl *Templates, cfg Config, msgs []Message, chosen, rejected string, step int) *round {
	r := &round{tmpl: tmpl}
	r.data.Revision = rejected == ""
	query := renderQuery(msgs)
	r.data.Tag = QuoteTag(strconv.Itoa(step), query, chosen, rejected)
	r.set(textQuery, query)
	r.set(textChosen, chosen)
	r.set(textRejected, rejected)
	for k := textChosen; k < numTexts; k++ {
		r.limit[k] = cfg.MaxTextChars
	}
	return r
}

// QuoteTag returns a code for marking the lines around texts quoted in a
// prompt (such as "----- BEGIN RESPONSE 3f9a0c2b71de -----"), derived from
// the texts themselves: a text cannot contain the code of the prompt it is
// quoted in without containing a hash of itself, and the same texts always
// get the same code. Pass every text the prompt quotes; remove the code from
// any text written after it was shown (see WithoutTag).
func QuoteTag(texts ...string) string {
	h := sha256.New()
	for _, t := range texts {
		h.Write([]byte(strconv.Itoa(len(t))))
		h.Write([]byte{0})
		h.Write([]byte(t))
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// WithoutTag returns s with every occurrence of tag replaced, so that s
// cannot end a block marked with tag early.
func WithoutTag(s, tag string) string {
	if tag == "" {
		return s
	}
	return strings.ReplaceAll(s, tag, "[code removed]")
}

// set records a text of the round without the round's tag.
func (r *round) set(k textKind, s string) {
	r.full[k] = WithoutTag(s, r.data.Tag)
}

// text returns text k within its budget. The request keeps its end (the
// turn being answered); the other texts keep their beginning.
func (r *round) text(k textKind) string {
	if k == textQuery {
		return truncateFront(r.full[k], r.limit[k])
	}
	return truncate(r.full[k], r.limit[k])
}

// messages returns the conversation of stage's call.
func (r *round) messages(stage Stage) ([]Message, error) {
	d := r.data
	d.Query, d.Chosen, d.Rejected = r.text(textQuery), r.text(textChosen), r.text(textRejected)
	d.Loss, d.Gradient = r.text(textLoss), r.text(textGradient)
	var msgs []Message
	sys, err := r.tmpl.Render("system.tmpl", d)
	if err != nil {
		return nil, err
	}
	if sys != "" {
		msgs = append(msgs, Message{Role: RoleSystem, Content: sys})
	}
	turns := []struct {
		answer   string // the model's answer to the turn before, if any
		template string
	}{{"", "loss.tmpl"}, {d.Loss, "gradient.tmpl"}, {d.Gradient, "update.tmpl"}}
	for i, tu := range turns[:stageTurns(stage)] {
		if i > 0 {
			msgs = append(msgs, Message{Role: RoleAssistant, Content: tu.answer})
		}
		user, err := r.tmpl.Render(tu.template, d)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, Message{Role: RoleUser, Content: user})
	}
	return msgs, nil
}

// stageTurns is the number of user turns of stage's call.
func stageTurns(stage Stage) int {
	switch stage {
	case StageGradient:
		return 2
	case StageUpdate:
		return 3
	}
	return 1
}

// present lists the texts stage's call carries.
func (r *round) present(stage Stage) []textKind {
	ks := []textKind{textQuery, textChosen}
	if !r.data.Revision {
		ks = append(ks, textRejected)
	}
	if n := stageTurns(stage); n >= 2 {
		ks = append(ks, textLoss)
		if n == 3 {
			ks = append(ks, textGradient)
		}
	}
	return ks
}

// shrink makes stage's prompt shorter after a context overflow: the longest
// texts it carries (other than the request) are cut to half the longest
// one's length; only when they are all short is the request cut, to half.
// It describes what it cut, or reports false when nothing can be cut.
func (r *round) shrink(stage Stage) (string, bool) {
	longest := 0
	for _, k := range r.present(stage) {
		if k != textQuery {
			longest = max(longest, len(r.text(k)))
		}
	}
	if longest > minCut {
		lim := longest / 2
		var cut []string
		for _, k := range r.present(stage) {
			if k != textQuery && len(r.text(k)) > lim {
				r.limit[k] = lim
				cut = append(cut, k.String())
			}
		}
		return fmt.Sprintf("%s cut to %d bytes", joinAnd(cut), lim), true
	}
	if q := len(r.text(textQuery)); q > minCut {
		r.limit[textQuery] = q / 2
		return fmt.Sprintf("the beginning of the request cut, keeping %d bytes", q/2), true
	}
	return "", false
}

func joinAnd(ss []string) string {
	if len(ss) <= 1 {
		return strings.Join(ss, "")
	}
	return strings.Join(ss[:len(ss)-1], ", ") + " and " + ss[len(ss)-1]
}

// frontMark starts a text whose beginning was cut to fit the prompt.
const frontMark = "[... earlier text cut]\n"

// truncateFront cuts s to at most max bytes (counting the mark) by removing
// its beginning, at a UTF-8 boundary and preferably at a line break. A max of
// zero or less means no limit.
func truncateFront(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return s
	}
	mark := frontMark
	if max <= len(mark) {
		mark = ""
	}
	start := len(s) - (max - len(mark))
	for start < len(s) && !utf8.RuneStart(s[start]) {
		start++
	}
	rest := s[start:]
	if i := strings.IndexByte(rest, '\n'); mark != "" && i >= 0 && i < len(rest)/5 {
		rest = rest[i+1:]
	}
	return mark + rest
}
