package bench

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/sim"
)

func TestParseRules(t *testing.T) {
	tests := []struct {
		spec string
		want string // the names and settings, "name{patience target budget}" joined by ";"
		err  string // what the error says, when one is wanted
	}{
		{spec: "none", want: "none{0 - 0}"},
		{spec: "none,patience=1,target=1.5,budget=25000", want: "none{0 - 0};patience=1{1 - 0};target=1.5{0 1.5 0};budget=25000{0 - 25000}"},
		{spec: " patience=2+budget=9000 , target=-1", want: "patience=2+budget=9000{2 - 9000};target=-1{0 -1 0}"},
		{spec: "none,patence=1", err: `entry "patence=1": unknown rule "patence"`},
		{spec: "patience=0", err: `entry "patience=0": patience wants a positive integer, got "0"`},
		{spec: "budget=lots", err: `entry "budget=lots": budget wants a positive integer, got "lots"`},
		{spec: "target=NaN", err: `entry "target=NaN": target wants a number`},
		{spec: "target", err: `entry "target": "target": want none, patience=K`},
		{spec: "patience=1+patience=2", err: `entry "patience=1+patience=2": patience given twice`},
		{spec: "none,none", err: `entry "none": given twice`},
		{spec: "none,,patience=1", err: "empty entry"},
	}
	for _, tt := range tests {
		rules, err := ParseRules(tt.spec)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseRules(%q): error %v, want one saying %q", tt.spec, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRules(%q): %v", tt.spec, err)
			continue
		}
		var got []string
		for _, r := range rules {
			target := "-"
			if r.TargetScore != nil {
				target = fmt.Sprint(*r.TargetScore)
			}
			got = append(got, fmt.Sprintf("%s{%d %s %d}", r.Name, r.Patience, target, r.MaxItemTokens))
		}
		if g := strings.Join(got, ";"); g != tt.want {
			t.Errorf("ParseRules(%q) = %s, want %s", tt.spec, g, tt.want)
		}
	}
}

func TestRulesOf(t *testing.T) {
	cfg := tpo.DefaultConfig()
	if r := RulesOf(cfg); r.Name != "none" || !r.none() {
		t.Errorf("default config: %+v", r)
	}
	x := 2.5
	cfg.Patience, cfg.TargetScore, cfg.MaxItemTokens = 1, &x, 9000
	r := RulesOf(cfg)
	if r.Name != "patience=1+target=2.5+budget=9000" {
		t.Errorf("name %q", r.Name)
	}
	// The name parses back to the same rules.
	back, err := ParseRules(r.Name)
	if err != nil || len(back) != 1 || back[0].Patience != 1 || *back[0].TargetScore != 2.5 || back[0].MaxItemTokens != 9000 {
		t.Errorf("ParseRules(%q) = %+v, %v", r.Name, back, err)
	}
}

func TestTokensRulesSideBySide(t *testing.T) {
	rules, err := ParseRules("none,patience=1,target=0.5,budget=4000")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Tokens(context.Background(), TokensOptions{Prompts: 4, Modes: []tpo.Mode{tpo.ModeTPO}, Widths: []int{2}, Depths: []int{3},
		Rules: rules, Sim: sim.Options{Seed: 5, TimeScale: 0.0002, MeanTokens: 200, Plateau: 0.3}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 4 {
		t.Fatalf("%d rows, want one per rule set (4)", len(rep.Rows))
	}
	none := rep.Rows[0]
	for i, r := range rep.Rows {
		if r.Rule != rules[i].Name || r.Failed != 0 || !r.Match {
			t.Errorf("row %d: rule %q, %d failed, match %v; want %q, none, true", i, r.Rule, r.Failed, r.Match, rules[i].Name)
		}
		// The same prompts: the same initial samples.
		if math.Abs(r.MeanInitialBest-none.MeanInitialBest) > 1e-9 {
			t.Errorf("%s: mean initial best %v, want none's %v", r.Rule, r.MeanInitialBest, none.MeanInitialBest)
		}
		if math.Abs(r.MeanGain-(r.MeanScore-r.MeanInitialBest)) > 1e-9 {
			t.Errorf("%s: gain %v, score %v, initial %v", r.Rule, r.MeanGain, r.MeanScore, r.MeanInitialBest)
		}
		tokens := r.PromptTokens + r.CompletionTokens
		if want := 1 - tokens/(none.PromptTokens+none.CompletionTokens); r.TokensSaved == nil || math.Abs(*r.TokensSaved-want) > 1e-9 {
			t.Errorf("%s: tokens saved %v, want %v", r.Rule, r.TokensSaved, want)
		}
		if early := 4 - r.Stops[tpo.StopDepth]; r.StoppedEarly != early {
			t.Errorf("%s: %d stopped early, stops %v", r.Rule, r.StoppedEarly, r.Stops)
		}
	}
	if none.StoppedEarly != 0 || *none.TokensSaved != 0 {
		t.Errorf("none: %d stopped early, saved %v", none.StoppedEarly, *none.TokensSaved)
	}
	for _, r := range rep.Rows[1:] {
		if r.StoppedEarly == 0 || *r.TokensSaved <= 0 {
			t.Errorf("%s: %d stopped early, saved %v; want some of both", r.Rule, r.StoppedEarly, *r.TokensSaved)
		}
	}
	budget := rep.Rows[3]
	if budget.MaxItemTokens > 4000+budget.OverBudget || (budget.OverBudget > 0) != (budget.OverBudgetItems > 0) ||
		(budget.OverBudget > 0) != (budget.OverLastRound > 0) || budget.OverLastRound > 0.5 {
		t.Errorf("budget: max item %d, over by %d (%d items, %.2f of a round)", budget.MaxItemTokens, budget.OverBudget, budget.OverBudgetItems, budget.OverLastRound)
	}
}
