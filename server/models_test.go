package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
)

func TestSplitPreset(t *testing.T) {
	tests := []struct {
		model, upstream string
		ok              bool
		mode            string
		width, depth    int // -1: not set
		err             string
	}{
		{"llama3.1:8b", "llama3.1:8b", false, "", -1, -1, ""},
		{"meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B", false, "", -1, -1, ""},
		{"tpo/meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B", true, "tpo", -1, -1, ""},
		{"tpo-d2-n5/llama-3.1-70b", "llama-3.1-70b", true, "tpo", 5, 2, ""},
		{"tpo-n5-d0/x", "x", true, "tpo", 5, 0, ""},
		{"bon-n8/llama-3.1-70b", "llama-3.1-70b", true, "bon", 8, -1, ""},
		{"revision-d3/m", "m", true, "revision", -1, 3, ""},
		{"off/m", "m", true, "off", -1, -1, ""},
		{"tpox/m", "", false, "", -1, -1, ""},
		{"tpo-x2/m", "", false, "", -1, -1, ""},
		{"tpo-n/m", "", false, "", -1, -1, ""},
		{"tpo-n+2/m", "", false, "", -1, -1, ""},
		{"bon-d1/m", "", false, "", -1, -1, "no depth"},
		{"off-d1/m", "", false, "", -1, -1, "takes no"},
		{"tpo-d1-d2/m", "", false, "", -1, -1, "twice"},
		{"tpo/", "", false, "", -1, -1, "no model after it"},
	}
	for _, tt := range tests {
		pr, up, ok, err := splitPreset(tt.model)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.model, err, tt.err)
			}
			continue
		}
		if err != nil || ok != tt.ok {
			t.Errorf("%s: ok %v, err %v; want ok %v", tt.model, ok, err, tt.ok)
			continue
		}
		if !ok {
			if up != tt.model {
				t.Errorf("%s: upstream %q, want the name as it is", tt.model, up)
			}
			continue
		}
		w, d := -1, -1
		if pr.Width != nil {
			w = *pr.Width
		}
		if pr.Depth != nil {
			d = *pr.Depth
		}
		if up != tt.upstream || pr.Mode != tt.mode || w != tt.width || d != tt.depth {
			t.Errorf("%s: %q mode %s width %d depth %d; want %q %s %d %d", tt.model, up, pr.Mode, w, d, tt.upstream, tt.mode, tt.width, tt.depth)
		}
	}
}

func TestParsePresets(t *testing.T) {
	if err := ParsePresets([]string{"tpo", "off", "bon-n8", "tpo-d2-n5"}); err != nil {
		t.Errorf("valid presets refused: %v", err)
	}
	for _, bad := range []string{"best", "bon-d2", "tpo-n5/x", ""} {
		if err := ParsePresets([]string{bad}); err == nil {
			t.Errorf("preset %q accepted", bad)
		}
	}
}

// TestPresetModel: a model named PRESET/MODEL is optimized with the
// preset's settings by the upstream model; the tpo object still wins; off
// passes the request through under the upstream name.
func TestPresetModel(t *testing.T) {
	e := newTestEnv(t, nil)
	var c completion
	decodeJSON(t, e.post(t, `{"model":"bon-n4/org/llama",`+convo+`}`), http.StatusOK, &c)
	if c.Model != "bon-n4/org/llama" || c.TPO.Mode != tpo.ModeBoN || c.TPO.Width != 4 || c.TPO.Requests != 1 {
		t.Errorf("model %q, summary %+v; want bon with width 4", c.Model, c.TPO)
	}
	decodeJSON(t, e.post(t, `{"model":"tpo-d1-n2/org/llama","tpo":{"width":3},`+convo+`}`), http.StatusOK, &c)
	if c.TPO.Mode != tpo.ModeTPO || c.TPO.Width != 3 || c.TPO.Depth != 1 || c.TPO.Requests != 4 {
		t.Errorf("summary %+v; want tpo, width 3 (the tpo object's), depth 1 (the preset's)", c.TPO)
	}
	e.up.mu.Lock()
	models := e.up.genModels
	e.up.mu.Unlock()
	for _, m := range models {
		if m != "org/llama" {
			t.Errorf("a policy call went to %q, want org/llama", m)
		}
	}
	run, _ := e.store.Run(c.TPO.RunID)
	var cfg struct {
		Model     string `json:"model"`
		Requested string `json:"requested_model"`
	}
	if err := json.Unmarshal(run.Config, &cfg); err != nil || cfg.Model != "org/llama" || cfg.Requested != "tpo-d1-n2/org/llama" {
		t.Errorf("run config %s", run.Config)
	}

	e.up.setChat(`{"id":"x","object":"chat.completion","created":1,"model":"org/llama","choices":[]}`, nil)
	resp := e.post(t, `{"model":"off/org/llama","tpo":null,`+convo+`}`)
	resp.Body.Close()
	passed := e.up.passed()
	if len(passed) != 1 || !strings.Contains(string(passed[0]), `"model":"org/llama"`) {
		t.Errorf("pass-through bodies %s, want the upstream name", passed)
	}
}

// TestModelsListsPresets: /v1/models lists the upstream's models as they
// are, then each configured preset for each.
func TestModelsListsPresets(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.Presets = []string{"tpo-d2-n5", "bon-n8"} })
	resp := get(t, e.ts.URL+"/v1/models", "")
	var list struct {
		Object string            `json:"object"`
		Data   []json.RawMessage `json:"data"`
	}
	decodeJSON(t, resp, http.StatusOK, &list)
	var ids []string
	for _, raw := range list.Data {
		var m struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			OwnedBy string `json:"owned_by"`
		}
		if err := json.Unmarshal(raw, &m); err != nil || m.Object != "model" {
			t.Errorf("entry %s", raw)
		}
		ids = append(ids, m.ID)
	}
	if got := strings.Join(ids, " "); got != "m1 tpo-d2-n5/m1 bon-n8/m1" {
		t.Errorf("models = %s", got)
	}
	if _, err := New(Options{Policy: e.up, Scorers: testScorers(), DefaultReward: "rm", Config: tpo.DefaultConfig(), Presets: []string{"best-n2"}}); err == nil {
		t.Error("New accepted an unknown preset")
	}
}
