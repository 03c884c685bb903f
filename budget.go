package tpo

import (
	"math"
	"strings"
)

// roundCost is a model of what the three policy calls of a round cost in
// tokens, calibrated on what the item's calls have cost so far. A round
// sends the loss prompt (the query, the chosen and rejected responses and
// the template), then the same conversation with the critique and the
// gradient request, then with the instructions and the update request, which
// asks for N responses:
//
//	prompt:     loss + (loss + critique) + (loss + critique + instructions) × charges
//	completion: critique + instructions + N × response
//
// The prompts are rendered with the round's real texts, and with stand-ins
// of the estimated length for the critique and the instructions, so the
// template's overhead and MaxTextChars are counted as the calls will see
// them.
type roundCost struct {
	perByte float64 // tokens per byte of text, from step 0's responses
	perMsg  float64 // tokens a message costs beyond its text (the chat template)
	// charges is how many times the prompt of an N-sample request is
	// charged: 1, or N when the server ignores n and gets N requests.
	charges  int
	critique float64 // tokens of a critique, or of instructions
	response float64 // tokens of an update response
	width    int
}

// costModel calibrates the model on the finished steps: token rates from
// step 0's request, and the lengths of the last round's critique,
// instructions and update responses (step 0's mean response length before
// the first round).
// It reports false when step 0 measured nothing to go on.
func (t *Trajectory) costModel() (roundCost, bool) {
	cfg := t.o.Config
	s0 := t.steps[0]
	texts := 0
	for _, c := range s0.Candidates {
		texts += len(c.Text)
	}
	u := s0.Usage
	if texts == 0 || u.CompletionTokens <= 0 {
		return roundCost{}, false
	}
	m := roundCost{charges: max(u.Requests, 1), width: cfg.Width}
	m.perByte = float64(u.CompletionTokens) / float64(texts)
	query := 0
	for _, msg := range t.item.Messages {
		query += len(msg.Content)
	}
	perPrompt := float64(u.PromptTokens) / float64(m.charges)
	m.perMsg = max(0, (perPrompt-m.perByte*float64(query))/float64(len(t.item.Messages)))
	mean := float64(u.CompletionTokens) / float64(len(s0.Candidates))
	m.critique, m.response = mean, mean
	if c, ok := t.critiqueTokens(m.perByte); ok {
		m.critique = c
	}
	if r, ok := t.updateTokens(m.perByte); ok {
		m.response = r
	}
	m.critique = min(m.critique, float64(cfg.Critique.MaxTokens))
	m.response = min(m.response, float64(cfg.Sampling.MaxTokens))
	return m, true
}

// critiqueTokens is the mean length of the last round's critique and
// instructions, as their calls measured it (from their texts for a step
// saved without its calls).
func (t *Trajectory) critiqueTokens(perByte float64) (float64, bool) {
	return t.lastRoundTokens(perByte, func(c Call) bool { return c.Stage == StageLoss || c.Stage == StageGradient },
		func(s Step) []string { return []string{s.Loss, s.Gradient} })
}

// updateTokens is the mean length of the last round's update responses.
func (t *Trajectory) updateTokens(perByte float64) (float64, bool) {
	return t.lastRoundTokens(perByte, func(c Call) bool { return c.Stage == StageUpdate }, func(s Step) []string {
		texts := append([]string(nil), s.Unparsed...)
		for _, c := range s.Candidates {
			texts = append(texts, c.Text)
		}
		return texts
	})
}

// lastRoundTokens is the mean completion tokens per text of the last
// round's calls that match, or, for a step saved without its calls, of the
// texts of the step that texts returns, counted at perByte.
func (t *Trajectory) lastRoundTokens(perByte float64, match func(Call) bool, texts func(Step) []string) (float64, bool) {
	if len(t.steps) < 2 {
		return 0, false
	}
	s := t.steps[len(t.steps)-1]
	sum, n := 0.0, 0
	for _, c := range s.Calls {
		if match(c) && c.Error == "" && c.Returned > 0 {
			sum, n = sum+float64(c.Usage.CompletionTokens), n+c.Returned
		}
	}
	if len(s.Calls) == 0 {
		for _, text := range texts(s) {
			sum, n = sum+perByte*float64(len(text)), n+1
		}
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

// estimate returns what round r is expected to cost.
func (m roundCost) estimate(r *round) (int, error) {
	stand := strings.Repeat("x", int(math.Ceil(m.critique/m.perByte)))
	r.set(textLoss, stand)
	r.set(textGradient, stand)
	total := 2*m.critique + float64(m.width)*m.response
	for _, st := range []Stage{StageLoss, StageGradient, StageUpdate} {
		msgs, err := r.messages(st)
		if err != nil {
			return 0, err
		}
		p := m.prompt(msgs)
		if st == StageUpdate {
			p *= float64(m.charges)
		}
		total += p
	}
	return int(math.Ceil(total)), nil
}

// prompt estimates the prompt tokens of msgs.
func (m roundCost) prompt(msgs []Message) float64 {
	bytes := 0
	for _, msg := range msgs {
		bytes += len(msg.Content)
	}
	return m.perByte*float64(bytes) + m.perMsg*float64(len(msgs))
}

// nextRoundTokens estimates what the next round will cost: the round cost
// model applied to the round the cache now calls for, and at least what the
// dearest round so far cost (rounds tend to grow as responses and critiques
// do, and a model of the lengths' mean misses as often as not).
func (t *Trajectory) nextRoundTokens() int {
	dearest := 0
	for _, s := range t.steps[1:] {
		dearest = max(dearest, s.Usage.TotalTokens())
	}
	m, ok := t.costModel()
	if !ok {
		return dearest
	}
	est, err := m.estimate(t.plan(len(t.steps)).round)
	if err != nil {
		return dearest // the round will fail on its templates anyway
	}
	return max(est, dearest)
}
