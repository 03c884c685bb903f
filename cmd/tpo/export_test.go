package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExportAlpacaEval(t *testing.T) {
	store, tpoID, _, _ := reportFixture(t)
	dir := t.TempDir()
	data := writeTemp(t, dir, "data.jsonl",
		`{"id":"a1","prompt":"Name a colour.","dataset":"helpful_base"}`+"\n"+
			`{"id":"a2","prompt":"Say <hi>.","dataset":"koala"}`+"\n")
	out := filepath.Join(dir, "model_outputs.json")
	code, _, stderr := cli(t, "", "export", "--store", store, "--format", "alpacaeval", "--data", data, "--out", out, tpoID)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, b)
	}
	if len(got) != 2 {
		t.Fatalf("got %d outputs, want 2 (the failed item skipped): %s", len(got), b)
	}
	want := []map[string]string{
		{"instruction": "Name a colour.", "generator": "tpo-2-2", "dataset": "helpful_base"},
		{"instruction": "Say <hi>.", "generator": "tpo-2-2", "dataset": "koala"},
	}
	for i, w := range want {
		for k, v := range w {
			if got[i][k] != v {
				t.Errorf("output %d: %s = %q, want %q", i, k, got[i][k], v)
			}
		}
		if !strings.HasPrefix(got[i]["output"], "improved ") {
			t.Errorf("output %d: output %q is not the optimized answer", i, got[i]["output"])
		}
	}
	if !strings.Contains(stderr, "skipped 1 failed item (--include-failed exports it)") {
		t.Errorf("stderr lacks the skipped count: %q", stderr)
	}
}

func TestExportArenaHard(t *testing.T) {
	store, tpoID, _, _ := reportFixture(t)
	out := filepath.Join(t.TempDir(), "answers.jsonl")
	code, _, stderr := cli(t, "", "export", "--store", store, "--format", "arenahard", "--generator", "my-model",
		"--include-failed", "--out", out, tpoID)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := readLines(t, out)
	if len(lines) != 3 {
		t.Fatalf("got %d answers, want 3 with --include-failed", len(lines))
	}
	a := lines[1]
	if a["uid"] != "a2" || a["model"] != "my-model" || len(a["ans_id"].(string)) != 22 {
		t.Errorf("answer: %v", a)
	}
	if ts, ok := a["tstamp"].(float64); !ok || ts < 1.7e9 {
		t.Errorf("tstamp %v is not a Unix time in seconds", a["tstamp"])
	}
	msgs := a["messages"].([]any)
	if len(msgs) != 3 {
		t.Fatalf("messages: got %d, want system, user and assistant", len(msgs))
	}
	last := msgs[2].(map[string]any)
	answer, _ := last["content"].(map[string]any)["answer"].(string)
	if last["role"] != "assistant" || !strings.HasPrefix(answer, "improved ") {
		t.Errorf("last message: %v", last)
	}
	if strings.Contains(stderr, "skipped") {
		t.Errorf("--include-failed still skipped items: %q", stderr)
	}
}

func TestExportArenaHardV01AndJSONL(t *testing.T) {
	store, _, bonID, file := reportFixture(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "v01.jsonl")
	if code, _, stderr := cli(t, "", "export", "--store", store, "--format", "arenahard-v0.1", "--out", out, bonID); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := readLines(t, out)
	if len(lines) != 3 || lines[0]["question_id"] != "a1" || lines[0]["model_id"] != "bon-4-0" {
		t.Fatalf("v0.1 answers: %v", lines)
	}
	turns := lines[0]["choices"].([]any)[0].(map[string]any)["turns"].([]any)
	if c := turns[0].(map[string]any)["content"].(string); !strings.HasPrefix(c, "answer ") {
		t.Errorf("v0.1 content %q", c)
	}

	// From a results file, to stdout.
	code, stdout, stderr := cli(t, "", "export", "--format", "jsonl", "--out", "-", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(got) != 2 {
		t.Fatalf("jsonl: got %d lines, want 2:\n%s", len(got), stdout)
	}
	var first map[string]string
	if err := json.Unmarshal([]byte(got[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["id"] != "a1" || first["prompt"] != "Name a colour." || !strings.HasPrefix(first["response"], "improved ") || len(first) != 3 {
		t.Errorf("jsonl line: %v", first)
	}
}

func TestExportErrors(t *testing.T) {
	store, tpoID, _, _ := reportFixture(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no format", []string{"export", "--store", store, "--out", "x", tpoID}, "give --format"},
		{"bad format", []string{"export", "--store", store, "--format", "csv", "--out", "x", tpoID}, "unknown format"},
		{"no out", []string{"export", "--store", store, "--format", "jsonl", tpoID}, "give --out"},
		{"two runs", []string{"export", "--store", store, "--format", "jsonl", "--out", "x", tpoID, tpoID}, "exactly one RUN"},
		{"no data", []string{"export", "--store", store, "--format", "alpacaeval", "--data", filepath.Join(dir, "none.jsonl"), "--out", "x", tpoID}, "--data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := cli(t, "", tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("got exit %d, stderr %q; want 2 and %q", code, stderr, tt.want)
			}
		})
	}
	if _, err := os.Stat("x"); !os.IsNotExist(err) {
		t.Errorf("a failed export left a file: %v", err)
	}
}
