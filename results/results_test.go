package results

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
)

func TestFromResult(t *testing.T) {
	ok := tpo.Result{ID: "1", Prompt: "p", Response: "r", Score: 2, InitialBest: 1, StopReason: tpo.StopPatience,
		Steps: []tpo.Step{{Step: 0, Candidates: []tpo.Candidate{{Text: "r", Score: 2}}}}}
	failed := tpo.Result{ID: "2", Prompt: "q", Error: "policy: 500"}
	var b bytes.Buffer
	w := NewWriter(&b)
	for _, r := range []tpo.Result{ok, failed} {
		if err := w.Write(FromResult(r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: got %d, want 2", len(lines))
	}
	var m0, m1 map[string]any
	json.Unmarshal([]byte(lines[0]), &m0)
	json.Unmarshal([]byte(lines[1]), &m1)
	for _, k := range []string{"id", "prompt", "response", "score", "steps", "usage", "error"} {
		if _, present := m0[k]; !present {
			t.Errorf("success line lacks %q: %s", k, lines[0])
		}
		if _, present := m1[k]; !present {
			t.Errorf("failure line lacks %q: %s", k, lines[1])
		}
	}
	if m0["error"] != nil || m0["score"] != 2.0 {
		t.Errorf("success line: error %v score %v, want null and 2", m0["error"], m0["score"])
	}
	if m0["stop_reason"] != "patience" {
		t.Errorf("success line: stop_reason %v, want patience", m0["stop_reason"])
	}
	var back Line
	_ = json.Unmarshal([]byte(lines[0]), &back)
	if back.Result().StopReason != tpo.StopPatience {
		t.Errorf("read back: stop reason %q", back.Result().StopReason)
	}
	if m1["error"] != "policy: 500" || m1["score"] != nil {
		t.Errorf("failure line: error %v score %v", m1["error"], m1["score"])
	}
	if steps, _ := m1["steps"].([]any); steps == nil {
		t.Errorf("failure line steps should be [], got %v", m1["steps"])
	}
}
