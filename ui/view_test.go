package ui

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

func TestParseSettings(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		known    bool
		mode     tpo.Mode
		shape    string
		backends string
	}{
		{"tpo run", `{"settings":{"config":{"mode":"tpo","width":5,"depth":2},"policy_model":"llama","reward":"vllm","reward_model":"skywork"},"backends":{"policy_urls":["http://a"]}}`,
			true, tpo.ModeTPO, "5×2", "llama / vllm:skywork"},
		{"tpo serve", `{"config":{"mode":"revision","width":3,"depth":1},"model":"qwen","reward":"rm"}`,
			true, tpo.ModeRevision, "3×1", "qwen / rm"},
		{"bon ignores depth", `{"config":{"mode":"bon","width":8,"depth":2}}`, true, tpo.ModeBoN, "8", ""},
		{"no config", `{"model":"m"}`, false, "", "–", "m"},
		{"not json", `{{`, false, "", "–", ""},
		{"empty", ``, false, "", "–", ""},
		{"array", `[1,2]`, false, "", "–", ""},
		{"wrong types", `{"config":{"mode":3},"model":["x"]}`, false, "", "–", ""},
	}
	for _, tt := range tests {
		s := parseSettings(json.RawMessage(tt.raw))
		if s.Known != tt.known || s.Mode != tt.mode || s.Shape() != tt.shape || s.Backends() != tt.backends {
			t.Errorf("%s: known %v mode %q shape %q backends %q, want %v %q %q %q",
				tt.name, s.Known, s.Mode, s.Shape(), s.Backends(), tt.known, tt.mode, tt.shape, tt.backends)
		}
	}
	s := parseSettings(json.RawMessage(`{"settings":{"config":{"mode":"tpo","width":1,"depth":1}},"backends":{"policy_urls":["p1","p2"],"reward_urls":["r"]}}`))
	if len(s.PolicyURLs) != 2 || len(s.RewardURLs) != 1 {
		t.Errorf("urls: %v %v", s.PolicyURLs, s.RewardURLs)
	}
}

func FuzzParseSettings(f *testing.F) {
	f.Add(`{"settings":{"config":{"mode":"tpo","width":5,"depth":2}}}`)
	f.Add(`{"config":{"mode":"bon","width":1e400}}`)
	f.Add(`{"config":null,"settings":null}`)
	f.Add(`"text"`)
	f.Fuzz(func(t *testing.T, raw string) {
		s := parseSettings(json.RawMessage(raw))
		_ = s.Shape() + s.Backends()
		_ = prettyJSON(json.RawMessage(raw))
		if s.Known && s.Mode == "" {
			t.Errorf("known settings without a mode from %q", raw)
		}
	})
}

func TestFormat(t *testing.T) {
	f := 1.5
	tests := []struct{ got, want string }{
		{num(0), "0"}, {num(1.23456), "1.235"}, {num(-0.5), "-0.5"}, {num(12345678), "1.235e+07"},
		{num(math.NaN()), "NaN"}, {signed(0.25), "+0.25"}, {signed(-1), "-1"}, {signed(0), "0"},
		{optNum(nil), "–"}, {optNum(&f), "1.5"}, {optSigned(&f), "+1.5"},
		{count(0), "0"}, {count(999), "999"}, {count(1000), "1,000"}, {count(1234567), "1,234,567"}, {count(-4500), "-4,500"},
		{dur(0), "0s"}, {dur(250 * time.Millisecond), "250ms"}, {dur(1500 * time.Millisecond), "1.5s"}, {dur(125 * time.Second), "2m5s"},
		{pct(-3), "0.0"}, {pct(42.42), "42.4"}, {pct(250), "100.0"},
		{when((*time.Time)(nil)), "–"}, {when(time.Time{}), "–"}, {when(42), "–"},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("case %d: got %q, want %q", i, tt.got, tt.want)
		}
	}
}

func TestTimeline(t *testing.T) {
	steps := []tpo.Step{
		{Step: 0, Candidates: cands([]string{"a", "b", "c"}, 1, 3, 2)},
		{Step: 1, Chosen: &tpo.Ref{Step: 0, Index: 1}, Rejected: &tpo.Ref{Step: 0, Index: 0},
			Candidates: cands([]string{"d", "e"}, 5, 4)},
		{Step: 2, Chosen: &tpo.Ref{Step: 1, Index: 0}, Rejected: &tpo.Ref{Step: 9, Index: 9}}, // a broken ref
	}
	best := tpo.Ref{Step: 1, Index: 0}
	v := timeline(steps, &best, nil)
	if len(v) != 3 {
		t.Fatalf("%d steps", len(v))
	}
	tags := func(c candView) (out []string) {
		for _, t := range c.Tags {
			out = append(out, t.Text)
		}
		return out
	}
	if got := tags(v[0].Candidates[1]); len(got) != 2 || got[0] != "best of step" || got[1] != "chosen in step 1" {
		t.Errorf("step 0 #1 tags %q", got)
	}
	if got := tags(v[0].Candidates[0]); len(got) != 1 || got[0] != "rejected in step 1" {
		t.Errorf("step 0 #0 tags %q", got)
	}
	if c := v[1].Candidates[0]; !c.Open || c.Bar != 100 || tags(c)[0] != "final answer" {
		t.Errorf("final candidate: open %v bar %v tags %q", c.Open, c.Bar, tags(c))
	}
	if c := v[0].Candidates[0]; c.Bar != 4 {
		t.Errorf("lowest bar %v, want 4", c.Bar)
	}
	if v[1].Diff == nil || v[1].Diff.From != "s0c1" || v[1].Diff.To != "s1c0" {
		t.Errorf("step 1 diff %+v", v[1].Diff)
	}
	if v[2].Rejected == nil || v[2].Rejected.Found || v[2].Diff != nil {
		t.Errorf("step 2: broken rejected ref found, or a diff without candidates")
	}
	// A pending step marks what it compares and draws its candidates.
	p := &stepView{Step: 3, Chosen: &refView{Ref: tpo.Ref{Step: 1, Index: 0}}, Candidates: []candView{{Text: "f", Score: 9}}}
	v = timeline(steps, nil, p)
	last := v[len(v)-1]
	if !last.InProgress || last.Candidates[0].Anchor != "s3c0" || last.Candidates[0].Bar != 100 || last.Diff == nil {
		t.Errorf("pending step %+v", last)
	}
	if got := tags(v[1].Candidates[0]); got[len(got)-1] != "chosen in step 3" {
		t.Errorf("tags of the candidate the pending step chose: %q", got)
	}
}

func TestSummaryCache(t *testing.T) {
	c := newSummaryCache(2)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c.put("r", "v1", t0, runCharts{curves: []byte("one")})
	tests := []struct {
		version string
		fresh   time.Duration
		at      time.Duration
		want    bool
	}{
		{"v1", 0, time.Hour, true},                  // same version: always
		{"v2", 0, 0, false},                         // a finished run wants its version
		{"v2", 15 * time.Second, time.Second, true}, // a run being written: recent charts do
		{"v2", 15 * time.Second, 20 * time.Second, false},
	}
	for _, tt := range tests {
		if _, ok := c.get("r", tt.version, tt.fresh, t0.Add(tt.at)); ok != tt.want {
			t.Errorf("get(%s, fresh %v, after %v) = %v, want %v", tt.version, tt.fresh, tt.at, ok, tt.want)
		}
	}
	c.put("s", "v", t0, runCharts{})
	c.put("u", "v", t0, runCharts{})
	if len(c.m) != 2 {
		t.Errorf("cache of 2 holds %d runs", len(c.m))
	}
	c.drop("u")
	if _, ok := c.get("u", "v", 0, t0); ok {
		t.Error("a dropped run is still cached")
	}
}
