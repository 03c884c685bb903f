package bench

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tpoproject/tpo"
)

// Rules is a named set of stopping rules (see tpo.Config): what one row of
// Tokens measures with. The zero value, named "none", stops no item early.
type Rules struct {
	Name          string   `json:"name"`
	Patience      int      `json:"patience,omitempty"`
	TargetScore   *float64 `json:"target_score,omitempty"`
	MaxItemTokens int      `json:"max_item_tokens,omitempty"`
}

// RulesOf returns the rules of cfg, named as ParseRules would name them.
func RulesOf(cfg tpo.Config) Rules {
	r := Rules{Patience: cfg.Patience, TargetScore: cfg.TargetScore, MaxItemTokens: cfg.MaxItemTokens}
	r.Name = r.spec()
	return r
}

// apply sets the rules of cfg.
func (r Rules) apply(cfg *tpo.Config) {
	cfg.Patience, cfg.TargetScore, cfg.MaxItemTokens = r.Patience, r.TargetScore, r.MaxItemTokens
}

// none reports whether r stops no item early.
func (r Rules) none() bool { return r.Patience == 0 && r.TargetScore == nil && r.MaxItemTokens == 0 }

// spec writes r in ParseRules' syntax: "none", or its rules joined by "+".
func (r Rules) spec() string {
	var parts []string
	if r.Patience > 0 {
		parts = append(parts, "patience="+strconv.Itoa(r.Patience))
	}
	if r.TargetScore != nil {
		parts = append(parts, "target="+strconv.FormatFloat(*r.TargetScore, 'g', -1, 64))
	}
	if r.MaxItemTokens > 0 {
		parts = append(parts, "budget="+strconv.Itoa(r.MaxItemTokens))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// ParseRules reads a comma-separated list of rule sets, each "none" or one
// or more of patience=K, target=X and budget=T joined by "+":
//
//	none,patience=1,target=1.5,budget=25000,patience=1+budget=25000
//
// Each set is named by its entry. An error names the entry at fault.
func ParseRules(s string) ([]Rules, error) {
	var out []Rules
	seen := map[string]bool{}
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, errors.New("empty entry (want none, patience=K, target=X or budget=T, joined by + to combine)")
		}
		r, err := parseRuleSet(entry)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", entry, err)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("entry %q: given twice", entry)
		}
		seen[r.Name] = true
		out = append(out, r)
	}
	return out, nil
}

// parseRuleSet reads one entry of ParseRules' list.
func parseRuleSet(entry string) (Rules, error) {
	r := Rules{Name: entry}
	if entry == "none" {
		return r, nil
	}
	set := map[string]bool{}
	for _, term := range strings.Split(entry, "+") {
		key, val, ok := strings.Cut(strings.TrimSpace(term), "=")
		if !ok {
			return r, fmt.Errorf("%q: want none, patience=K, target=X or budget=T", term)
		}
		if set[key] {
			return r, fmt.Errorf("%s given twice", key)
		}
		set[key] = true
		if err := r.set(key, val); err != nil {
			return r, err
		}
	}
	return r, nil
}

// set sets the rule key to val.
func (r *Rules) set(key, val string) error {
	switch key {
	case "patience", "budget":
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return fmt.Errorf("%s wants a positive integer, got %q", key, val)
		}
		if key == "patience" {
			r.Patience = n
		} else {
			r.MaxItemTokens = n
		}
	case "target":
		v, err := strconv.ParseFloat(val, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("target wants a number, got %q", val)
		}
		r.TargetScore = &v
	default:
		return fmt.Errorf("unknown rule %q (want patience, target or budget)", key)
	}
	return nil
}
