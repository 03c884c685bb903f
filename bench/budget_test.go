package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/sim"
)

// TestBudgetOnTheSimulator runs items on the simulator, whose critiques and
// responses vary in length as a real model's do (log-normal), with budgets
// set from what each item's rounds cost without one. An item may go over its
// budget when its last round's texts come out longer than the ones before,
// but by no more than half of that round (the tolerance the README states);
// and a budget that leaves the first round half of what it costs refuses it.
func TestBudgetOnTheSimulator(t *testing.T) {
	srv, err := StartSim(sim.Options{Seed: 3, TimeScale: 0.0002, UnparsedRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	pol, rw, err := Clients(srv.URL, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run := func(cfg tpo.Config, it tpo.Item) tpo.Result {
		t.Helper()
		res, err := (&tpo.Optimizer{Policy: pol, Reward: rw, Config: cfg}).Optimize(context.Background(), it, tpo.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, width := range []int{2, 3, 5} {
		cfg := testConfig(width, 3)
		for _, it := range Prompts(8) {
			cfg.MaxItemTokens = 0
			ref := run(cfg, it)
			cost := make([]int, len(ref.Steps))
			for i, s := range ref.Steps {
				cost[i] = s.Usage.TotalTokens()
			}
			budgets := []int{cost[0] + cost[1]/2, 6000, 9000, 14000, 20000}
			for i, budget := range budgets {
				cfg.MaxItemTokens = budget
				res := run(cfg, it)
				name := fmt.Sprintf("N%d item %s budget %d", width, it.ID, budget)
				total, last := res.Usage.TotalTokens(), res.Steps[len(res.Steps)-1].Usage.TotalTokens()
				if total-budget > last/2 {
					t.Errorf("%s: used %d tokens, %d over, more than half its last round (%d)", name, total, total-budget, last)
				}
				if i == 0 && len(res.Steps) != 1 {
					t.Errorf("%s: %d steps; want the first round (%d tokens after %d) refused", name, len(res.Steps), cost[1], cost[0])
				}
			}
		}
	}
}
