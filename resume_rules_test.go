package tpo_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/sqlite"
	"github.com/tpoproject/tpo/tpotest"
)

// failingAt fails the request number at (0-based) of its policy, as a
// server that goes away mid-item does.
type failingAt struct {
	tpo.Generator
	at, n int
}

func (f *failingAt) Generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	f.n++
	if f.n-1 == f.at {
		return tpo.Generation{}, errors.New("connection refused")
	}
	return f.Generator.Generate(ctx, req)
}

// ruleCase is a stopping rule met in round 2 of an item interrupted after
// round 1 (step 0 and 1 saved).
type ruleCase struct {
	name      string
	cfg       func(c *tpo.Config, cost []int) // cost: each step's tokens without rules
	scores    map[int]int                     // the first update's score per step (nil: 20, 30, 40)
	wantSteps int
	wantStop  tpo.StopReason
}

var ruleCases = []ruleCase{
	{name: "depth", cfg: func(*tpo.Config, []int) {}, wantSteps: 4, wantStop: tpo.StopDepth},
	{name: "target", cfg: func(c *tpo.Config, _ []int) { x := 30.0; c.TargetScore = &x }, wantSteps: 3, wantStop: tpo.StopTarget},
	// Step 1 gains, step 2 does not.
	{name: "patience 1", cfg: func(c *tpo.Config, _ []int) { c.Patience = 1 }, scores: map[int]int{1: 20, 2: 5, 3: 40},
		wantSteps: 3, wantStop: tpo.StopPatience},
	// Neither step 1 (before the interruption) nor step 2 gains: two
	// rounds without a gain, one on each side.
	{name: "patience 2", cfg: func(c *tpo.Config, _ []int) { c.Patience = 2 }, scores: map[int]int{1: 5, 2: 5, 3: 40},
		wantSteps: 3, wantStop: tpo.StopPatience},
	// Room for rounds 1 and 2 and half of round 3, counting the tokens of
	// the steps saved before the interruption.
	{name: "budget", cfg: func(c *tpo.Config, cost []int) { c.MaxItemTokens = cost[0] + cost[1] + cost[2] + cost[3]/2 },
		wantSteps: 3, wantStop: tpo.StopBudget},
}

// ruleSetup returns the configuration of rc and a policy maker; calls is the
// requests already made for the item.
func ruleSetup(t *testing.T, rc ruleCase) (tpo.Config, func(calls int) *meteredPolicy) {
	t.Helper()
	scores := rc.scores
	if scores == nil {
		scores = map[int]int{1: 20, 2: 30, 3: 40}
	}
	policy := func(calls int) *meteredPolicy {
		return &meteredPolicy{sample: 400, critique: 400, scores: scores, calls: calls}
	}
	cfg := tpo.DefaultConfig()
	cfg.Width, cfg.Depth = 3, 3
	ref := budgetRun(t, policy(0), cfg)
	cost := make([]int, len(ref.Steps))
	for i, s := range ref.Steps {
		cost[i] = s.Usage.TotalTokens()
	}
	rc.cfg(&cfg, cost)
	return cfg, policy
}

func TestResumedItemKeepsItsRules(t *testing.T) {
	for _, rc := range ruleCases {
		t.Run(rc.name, func(t *testing.T) {
			cfg, policy := ruleSetup(t, rc)
			o := &tpo.Optimizer{Policy: &failingAt{Generator: policy(0), at: 4}, Reward: &tpotest.Reward{Func: scoreByNumber}, Config: cfg}
			var saved []tpo.Step
			_, err := o.Optimize(context.Background(), item("Explain how a heat pump can heat a house in winter."), tpo.Options{
				OnStep: func(_ context.Context, s tpo.Step) error {
					saved = append(saved, s)
					return nil
				}})
			if err == nil || len(saved) != 2 {
				t.Fatalf("interrupted run: %v, %d steps saved; want the failure of the loss of step 2, 2 steps", err, len(saved))
			}
			o.Policy = policy(4)
			res, err := o.Optimize(context.Background(), item("Explain how a heat pump can heat a house in winter."), tpo.Options{Resume: saved})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Steps) != rc.wantSteps || res.StopReason != rc.wantStop {
				t.Errorf("resumed: %d steps, stop %q; want %d and %q", len(res.Steps), res.StopReason, rc.wantSteps, rc.wantStop)
			}
			if cfg.MaxItemTokens > 0 && res.Usage.TotalTokens() > cfg.MaxItemTokens {
				t.Errorf("resumed: %d tokens in all, over the budget of %d", res.Usage.TotalTokens(), cfg.MaxItemTokens)
			}
		})
	}
}

// TestRunnerResumedItemKeepsItsRules runs the cases through tpo.Runner on a
// store: the item fails in round 2, the next run resumes it from its saved
// steps, and the stored result carries the rule's stop reason, also after
// a third run that finds it finished.
func TestRunnerResumedItemKeepsItsRules(t *testing.T) {
	stores := map[string]func(t *testing.T) tpotest.InterruptingStore{
		"memstore": func(*testing.T) tpotest.InterruptingStore { return tpotest.NewMemStore() },
		"sqlite": func(t *testing.T) tpotest.InterruptingStore {
			db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tpo.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
	}
	for name, open := range stores {
		for _, rc := range ruleCases {
			t.Run(name+"/"+rc.name, func(t *testing.T) {
				cfg, policy := ruleSetup(t, rc)
				store := open(t)
				in := []tpo.Input{{Item: item("Explain how a heat pump can heat a house in winter.")}}
				run := func(pol tpo.Generator) tpo.ItemState {
					t.Helper()
					rn := &tpo.Runner{Optimizer: &tpo.Optimizer{Policy: pol, Reward: &tpotest.Reward{Func: scoreByNumber}, Config: cfg}, Store: store}
					r, _, err := rn.Run(context.Background(), tpo.Run{Key: "k", Kind: "run"}, &sliceSource{in: in})
					if err != nil {
						t.Fatal(err)
					}
					st, err := store.GetItem(context.Background(), r.ID, "q1")
					if err != nil {
						t.Fatal(err)
					}
					return st
				}
				if st := run(&failingAt{Generator: policy(0), at: 4}); st.Result == nil || st.Result.Error == "" || len(st.Steps) != 2 {
					t.Fatalf("interrupted run: %+v; want a failed item with 2 steps saved", st.Result)
				}
				// The first resume runs the rounds left; the second finds the
				// item finished and asks nothing.
				resumed, want := policy(4), 3*(rc.wantSteps-2)
				for i := range 2 {
					st := run(resumed)
					res := st.Result
					if res == nil || res.Error != "" || len(st.Steps) != rc.wantSteps || res.StopReason != rc.wantStop {
						t.Fatalf("run %d after the failure: %d steps, result %+v; want %d steps and %q", i+1, len(st.Steps), res, rc.wantSteps, rc.wantStop)
					}
					if got := resumed.calls - 4; got != want {
						t.Errorf("run %d after the failure: %d requests since the failure, want %d", i+1, got, want)
					}
				}
			})
		}
	}
}
