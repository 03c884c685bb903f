package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// lastJSON decodes the last line of stdout, which every benchmark ends with.
func lastJSON(t *testing.T, stdout string, v any) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout has %d lines, want one JSON line:\n%s", len(lines), stdout)
	}
	if err := json.Unmarshal([]byte(lines[0]), v); err != nil {
		t.Fatalf("stdout is not one JSON line: %v\n%s", err, stdout)
	}
}

func TestBenchCommands(t *testing.T) {
	fast := []string{"--time-scale", "0.0005", "--mean-tokens", "300"}

	code, stdout, stderr := cli(t, "", append([]string{"bench", "tokens", "--prompts", "2", "--widths", "2", "--depths", "1",
		"--modes", "tpo,bon"}, fast...)...)
	if code != 0 {
		t.Fatalf("bench tokens: exit %d\n%s", code, stderr)
	}
	var tok struct {
		Benchmark string `json:"benchmark"`
		AllMatch  bool   `json:"all_match"`
		Rows      []struct {
			Mode string `json:"mode"`
		} `json:"rows"`
	}
	lastJSON(t, stdout, &tok)
	if tok.Benchmark != "tokens" || !tok.AllMatch || len(tok.Rows) != 2 {
		t.Errorf("bench tokens: %+v", tok)
	}
	if !strings.Contains(stderr, "7.00/7") && !strings.Contains(stderr, "4.00/4") {
		t.Errorf("bench tokens: no table on stderr:\n%s", stderr)
	}

	code, stdout, stderr = cli(t, "", append([]string{"bench", "throughput", "--prompts", "8", "--mimic-prompts", "4",
		"--concurrency", "4,8", "--workers", "2", "--chunk", "2", "--width", "2", "--depth", "1", "--slots", "8"}, fast...)...)
	if code != 0 {
		t.Fatalf("bench throughput: exit %d\n%s", code, stderr)
	}
	var thr struct {
		Benchmark string `json:"benchmark"`
		Passes    []struct {
			Scheduler   string `json:"scheduler"`
			Concurrency int    `json:"concurrency"`
			Prompts     int    `json:"prompts"`
		} `json:"passes"`
		Speedup float64 `json:"speedup"`
	}
	lastJSON(t, stdout, &thr)
	var got []string
	for _, p := range thr.Passes {
		got = append(got, p.Scheduler)
	}
	if thr.Benchmark != "throughput" || strings.Join(got, ",") != "runner,runner,mimic-stage,mimic-item" ||
		thr.Passes[1].Concurrency != 8 || thr.Passes[2].Prompts != 4 || thr.Speedup <= 0 {
		t.Errorf("bench throughput: %+v", thr)
	}

	code, stdout, stderr = cli(t, "", append([]string{"bench", "serve", "--requests", "4", "--warmup", "0",
		"--width", "2", "--depth", "1", "--no-store"}, fast...)...)
	if code != 0 {
		t.Fatalf("bench serve: exit %d\n%s", code, stderr)
	}
	var srv struct {
		Benchmark string `json:"benchmark"`
		Store     bool   `json:"store"`
		Added     struct {
			P50 float64 `json:"p50_ms"`
			P99 float64 `json:"p99_ms"`
		} `json:"added"`
		UpstreamCalls float64 `json:"upstream_calls_per_request"`
		Answers       struct {
			Stopped map[string]int `json:"stopped"`
		} `json:"answers"`
	}
	lastJSON(t, stdout, &srv)
	if srv.Benchmark != "serve" || srv.Store || srv.UpstreamCalls != 6 || srv.Added.P99 < srv.Added.P50 ||
		srv.Answers.Stopped["depth"] != 4 {
		t.Errorf("bench serve: %+v", srv)
	}
	if !strings.Contains(stderr, "answers (no deadline): mean score") || !strings.Contains(stderr, "stopped: depth 4") {
		t.Errorf("bench serve printed no line on the answers:\n%s", stderr)
	}
}

func TestBenchTokensRules(t *testing.T) {
	code, stdout, stderr := cli(t, "", "bench", "tokens", "--prompts", "2", "--modes", "tpo", "--widths", "2", "--depths", "2",
		"--time-scale", "0.0005", "--mean-tokens", "200", "--rules", "none,patience=1,target=0.5,budget=3000")
	if code != 0 {
		t.Fatalf("bench tokens --rules: exit %d\n%s", code, stderr)
	}
	var tok struct {
		Rows []struct {
			Rule        string   `json:"rule"`
			MeanGain    *float64 `json:"mean_gain"`
			TokensSaved *float64 `json:"tokens_saved"`
			Rules       struct {
				Budget int `json:"max_item_tokens"`
			} `json:"rules"`
		} `json:"rows"`
	}
	lastJSON(t, stdout, &tok)
	var rules []string
	for _, r := range tok.Rows {
		rules = append(rules, r.Rule)
		if r.MeanGain == nil || r.TokensSaved == nil {
			t.Errorf("row %s: no mean gain or tokens saved in the JSON", r.Rule)
		}
	}
	if got := strings.Join(rules, ","); got != "none,patience=1,target=0.5,budget=3000" || tok.Rows[3].Rules.Budget != 3000 {
		t.Errorf("rows %s (budget %d), want one per rule set in order", got, tok.Rows[3].Rules.Budget)
	}
	// One table, the rule sets side by side, with the saved tokens and the gain.
	for _, want := range []string{"rule", "saved", "gain", "stopped early", "patience=1", "target=0.5", "budget=3000", "0 of 2"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the table has no %q:\n%s", want, stderr)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rules", "none,patince=1"}, `--rules: entry "patince=1": unknown rule "patince"`},
		{[]string{"--rules", "budget=0"}, `--rules: entry "budget=0": budget wants a positive integer, got "0"`},
		{[]string{"--rules", "none", "--patience", "1"}, "--rules replaces --patience"},
	} {
		code, _, stderr := cli(t, "", append([]string{"bench", "tokens"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, want 2 and %q:\n%s", tc.args, code, tc.want, stderr)
		}
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "nope"},
		{"bench", "throughput", "--concurrency", "0"},
		{"bench", "throughput", "--schedules", "random"},
		{"bench", "throughput", "--mode", "best"},
		{"bench", "throughput", "extra"},
		{"bench", "serve", "--requests", "0"},
		{"bench", "serve", "--stream", "--stall", "1"},
		{"bench", "serve", "--stall", "0.1"},
		{"bench", "serve", "--stream", "--stall", "0.1", "--write-timeout", "0"},
		{"bench", "serve", "--deadline", "-1s"},
		{"bench", "tokens", "--modes", "tpo,nope"},
		{"bench", "tokens", "--widths", "2,x"},
		{"bench", "tokens", "--time-scale", "0"},
	} {
		if code, _, stderr := cli(t, "", args...); code != 2 {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, stderr)
		}
	}
}
