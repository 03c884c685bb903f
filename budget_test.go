package tpo_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tpotest"
)

// meteredPolicy answers with texts of set lengths and meters them as the
// simulator does: a token is four bytes, and a message costs four tokens
// more for the chat template. Its responses grow from round to round, and
// so do its critiques, as a real model's may. Sample i scores 10+i; the
// updates of step s score 10s+10+i, so every round gains.
type meteredPolicy struct {
	sample   int     // bytes of a sample
	critique int     // bytes of a round-1 critique or instructions
	growth   float64 // how much longer each round's texts are than the last's
	// scores, when set, gives the score of the first update of step s
	// (the others add 1 each) instead of 10s+10.
	scores map[int]int

	mu sync.Mutex
	// calls counts the requests so far; a policy that takes over a
	// resumed item starts it at the requests of the saved steps.
	calls int
}

func (p *meteredPolicy) Generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	p.mu.Lock()
	call := p.calls
	p.calls++
	p.mu.Unlock()
	step := (call + 2) / 3
	grow := 1.0
	for range step {
		grow *= 1 + p.growth
	}
	g := tpo.Generation{Usage: tpo.Usage{Requests: 1}}
	for i := range max(req.N, 1) {
		var text string
		switch req.Stage {
		case tpo.StageSample:
			text = filler(fmt.Sprintf("%d", 10+i), p.sample*(10+i)/12)
		case tpo.StageUpdate:
			score := 10*step + 10 + i
			if p.scores != nil {
				score = p.scores[step] + i
			}
			text = "<improved_response>" + filler(fmt.Sprintf("%d", score), int(float64(p.sample)*grow)) + "</improved_response>"
		default:
			text = filler(string(req.Stage), int(float64(p.critique)*grow))
		}
		g.Texts = append(g.Texts, text)
		g.Usage.CompletionTokens += len(text) / 4
	}
	for _, m := range req.Messages {
		g.Usage.PromptTokens += len(m.Content)/4 + 4
	}
	return g, nil
}

// filler returns head followed by words without digits, size bytes in all.
func filler(head string, size int) string {
	var b strings.Builder
	b.WriteString(head)
	for b.Len() < size {
		b.WriteString(" word")
	}
	return b.String()[:max(size, len(head))]
}

// budgetRun optimizes one item with policy and cfg and returns the result.
func budgetRun(t *testing.T, pol tpo.Generator, cfg tpo.Config) tpo.Result {
	t.Helper()
	o := &tpo.Optimizer{Policy: pol, Reward: &tpotest.Reward{Func: scoreByNumber}, Config: cfg}
	res, err := o.Optimize(context.Background(), item("Explain how a heat pump can heat a house in winter."), tpo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestBudgetEstimatesTheRound gives budgets that leave round k a share of
// what it costs. When the texts are as long as the ones before, the
// estimate is right to within a tenth of a round: 0.9 of it refuses the
// round, 1.1 starts it. When they grow a quarter each round, the estimate
// falls short and an item may go over its budget, but by no more than half
// of its last round (the tolerance the README states).
func TestBudgetEstimatesTheRound(t *testing.T) {
	for _, width := range []int{2, 3, 5} {
		for _, growth := range []float64{0, 0.25} {
			cfg := tpo.DefaultConfig()
			cfg.Width, cfg.Depth = width, 3
			newPolicy := func() *meteredPolicy { return &meteredPolicy{sample: 1400, critique: 1200, growth: growth} }
			// What each step costs, with no budget.
			ref := budgetRun(t, newPolicy(), cfg)
			cost := make([]int, len(ref.Steps))
			for i, s := range ref.Steps {
				cost[i] = s.Usage.TotalTokens()
			}
			used := cost[0]
			for k := 1; k < len(cost); k++ {
				for _, share := range []float64{0.5, 0.9, 1.1, 1.5} {
					budget := used + int(share*float64(cost[k]))
					name := fmt.Sprintf("N%d growth %g budget %d (round %d: %d after %d)", width, growth, budget, k, cost[k], used)
					cfg.MaxItemTokens = budget
					res := budgetRun(t, newPolicy(), cfg)
					total, steps := res.Usage.TotalTokens(), len(res.Steps)
					if over := total - budget; over > res.Steps[steps-1].Usage.TotalTokens()/2 {
						t.Errorf("%s: used %d tokens, %d over, more than half the last round", name, total, over)
					}
					wantSteps := k
					if share > 1 {
						wantSteps = k + 1
					}
					if growth == 0 && steps != wantSteps {
						t.Errorf("%s: %d steps, want %d", name, steps, wantSteps)
					}
					if steps <= cfg.Depth && res.StopReason != tpo.StopBudget {
						t.Errorf("%s: %d steps, stop %q; want budget", name, steps, res.StopReason)
					}
				}
				used += cost[k]
			}
		}
	}
}

func TestBudgetEdges(t *testing.T) {
	cfg := tpo.DefaultConfig()
	cfg.Depth = 2
	pol := func() *meteredPolicy { return &meteredPolicy{sample: 400, critique: 400} }
	for _, tc := range []struct {
		budget    int
		wantSteps int
		wantStop  tpo.StopReason
	}{
		{1, 1, tpo.StopBudget}, // step 0 always runs
		{0, 3, tpo.StopDepth},  // no budget
	} {
		cfg.MaxItemTokens = tc.budget
		res := budgetRun(t, pol(), cfg)
		if len(res.Steps) != tc.wantSteps || res.StopReason != tc.wantStop {
			t.Errorf("budget %d: %d steps, stop %q; want %d and %q", tc.budget, len(res.Steps), res.StopReason, tc.wantSteps, tc.wantStop)
		}
	}
}
