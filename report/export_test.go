package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

var exportAnswers = []Answer{
	{ID: "0", Prompt: "What is <b>2+2</b>?", Response: "4 & \"four\""},
	{ID: "q7", Prompt: "Hi", Response: "Hello\nthere",
		Messages: []tpo.Message{{Role: tpo.RoleSystem, Content: "Be brief."}, {Role: tpo.RoleUser, Content: "Hi"}}},
}

func export(t *testing.T, f Format, opts ExportOptions, answers []Answer) string {
	t.Helper()
	var b bytes.Buffer
	e, err := NewExporter(&b, f, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range answers {
		if err := e.Write(a); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestExportFormats(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 678_000_000, time.UTC) // 1735787045.678
	datasets := map[string]string{"0": "helpful_base"}
	opts := ExportOptions{Generator: "tpo-5-2", Time: at, Dataset: func(id string) string { return datasets[id] }}
	tests := []struct {
		format Format
		want   string
	}{
		{FormatAlpacaEval, `[
  {
    "instruction": "What is <b>2+2</b>?",
    "output": "4 & \"four\"",
    "generator": "tpo-5-2",
    "dataset": "helpful_base"
  },
  {
    "instruction": "Hi",
    "output": "Hello\nthere",
    "generator": "tpo-5-2",
    "dataset": "tpo"
  }
]
`},
		{FormatArenaHard, `{"uid":"0","ans_id":"` + answerID("tpo-5-2", "0", "4 & \"four\"") + `","model":"tpo-5-2","messages":[{"role":"user","content":"What is <b>2+2</b>?"},{"role":"assistant","content":{"answer":"4 & \"four\""}}],"tstamp":1735787045.678}
{"uid":"q7","ans_id":"` + answerID("tpo-5-2", "q7", "Hello\nthere") + `","model":"tpo-5-2","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":{"answer":"Hello\nthere"}}],"tstamp":1735787045.678}
`},
		{FormatArenaHardV01, `{"question_id":"0","answer_id":"` + answerID("tpo-5-2", "0", "4 & \"four\"") + `","model_id":"tpo-5-2","choices":[{"index":0,"turns":[{"content":"4 & \"four\""}]}],"tstamp":1735787045.678}
{"question_id":"q7","answer_id":"` + answerID("tpo-5-2", "q7", "Hello\nthere") + `","model_id":"tpo-5-2","choices":[{"index":0,"turns":[{"content":"Hello\nthere"}]}],"tstamp":1735787045.678}
`},
		{FormatJSONL, `{"id":"0","prompt":"What is <b>2+2</b>?","response":"4 & \"four\""}
{"id":"q7","prompt":"Hi","response":"Hello\nthere"}
`},
	}
	for _, tt := range tests {
		t.Run(string(tt.format), func(t *testing.T) {
			got := export(t, tt.format, opts, exportAnswers)
			if got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			// Every format is valid JSON (an array, or one value per line).
			dec := json.NewDecoder(strings.NewReader(got))
			for dec.More() {
				var v any
				if err := dec.Decode(&v); err != nil {
					t.Fatalf("invalid JSON: %v", err)
				}
			}
		})
	}
}

func TestExportEmpty(t *testing.T) {
	if got := export(t, FormatAlpacaEval, ExportOptions{}, nil); got != "[]\n" {
		t.Errorf("alpacaeval: got %q, want []", got)
	}
	if got := export(t, FormatJSONL, ExportOptions{}, nil); got != "" {
		t.Errorf("jsonl: got %q, want nothing", got)
	}
}

func TestAnswerIDStable(t *testing.T) {
	a, b := answerID("m", "1", "x"), answerID("m", "1", "x")
	if a != b || len(a) != 22 {
		t.Errorf("got %q and %q, want equal 22-character ids", a, b)
	}
	// The separator keeps ("m1", "") apart from ("m", "1").
	if answerID("m1", "", "x") == answerID("m", "1", "x") {
		t.Error("different fields gave the same id")
	}
}

func TestParseFormat(t *testing.T) {
	for _, s := range []string{"alpacaeval", "arenahard", "arenahard-v0.1", "jsonl"} {
		if f, err := ParseFormat(s); err != nil || string(f) != s {
			t.Errorf("ParseFormat(%q) = %q, %v", s, f, err)
		}
	}
	if _, err := ParseFormat("csv"); err == nil || !strings.Contains(err.Error(), "alpacaeval") {
		t.Errorf("ParseFormat(csv): got %v, want an error listing the formats", err)
	}
	if _, err := NewExporter(&bytes.Buffer{}, "csv", ExportOptions{}); err == nil {
		t.Error("NewExporter accepted an unknown format")
	}
}
