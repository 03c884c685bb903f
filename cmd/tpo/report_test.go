package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/sqlite"
	"github.com/tpoproject/tpo/tpotest"
)

// reportItems are the items of the report fixture; "bad" fails at its
// first update.
var reportItems = []tpo.Item{
	{ID: "a1", Messages: []tpo.Message{{Role: tpo.RoleUser, Content: "Name a colour."}}},
	{ID: "a2", Messages: []tpo.Message{{Role: tpo.RoleSystem, Content: "Be brief."}, {Role: tpo.RoleUser, Content: "Say <hi>."}}},
	{ID: "bad", Messages: []tpo.Message{{Role: tpo.RoleUser, Content: "fail here"}}},
}

type reportSource struct{ i int }

func (s *reportSource) Next() (tpo.Input, error) {
	if s.i >= len(reportItems) {
		return tpo.Input{}, io.EOF
	}
	s.i++
	return tpo.Input{Item: reportItems[s.i-1]}, nil
}

// reportFixture fills a temporary store with a TPO run (N=2, D=2) and a
// best-of-4 run over reportItems, and writes the TPO run's results file.
func reportFixture(t *testing.T) (store, tpoID, bonID, resultsFile string) {
	t.Helper()
	dir := t.TempDir()
	store = filepath.Join(dir, "tpo.db")
	db, err := sqlite.Open(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	run := func(cfg tpo.Config) string {
		policy := &tpotest.Policy{Err: func(call int, req tpo.GenerateRequest) error {
			if req.Stage == tpo.StageUpdate {
				for _, m := range req.Messages {
					if strings.Contains(m.Content, "fail here") {
						return errors.New("server error 500")
					}
				}
			}
			return nil
		}}
		// Improved responses score above samples, so that TPO's answers differ from best of N.
		reward := &tpotest.Reward{Func: func(_ []tpo.Message, text string) float64 {
			if strings.HasPrefix(text, "improved") {
				return 100 + float64(len(text))
			}
			return float64(len(text))
		}}
		log := slog.New(slog.DiscardHandler)
		opt := &tpo.Optimizer{Policy: policy, Reward: reward, Config: cfg, Logger: log}
		rn := &tpo.Runner{Optimizer: opt, Store: db, Concurrency: 1, Logger: log}
		r, _, err := rn.Run(context.Background(), tpo.Run{Kind: "run", Source: "test",
			Config: toJSON(map[string]any{"settings": map[string]any{"config": cfg}})}, &reportSource{})
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	cfg := tpo.DefaultConfig()
	cfg.Width, cfg.Depth = 2, 2
	tpoID = run(cfg)
	cfg.Mode, cfg.Width = tpo.ModeBoN, 4
	bonID = run(cfg)
	resultsFile = filepath.Join(dir, "tpo-results.jsonl")
	if err := writeOut(context.Background(), db, tpoID, resultsFile, 0, nil); err != nil {
		t.Fatal(err)
	}
	return store, tpoID, bonID, resultsFile
}

func TestReportHTML(t *testing.T) {
	store, tpoID, bonID, file := reportFixture(t)
	out := filepath.Join(t.TempDir(), "r.html")
	code, _, stderr := cli(t, "", "report", "--store", store, "--out", out, tpoID, bonID, file, "--label", "TPO")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{
		`<h2 id="run1">TPO</h2>`,         // --label
		`<h2 id="run2">bon-4-0</h2>`,     // mode-N-D from the stored configuration
		`<h2 id="run3">tpo-results</h2>`, // the file name
		`id="compare"`, "<svg ", "Failed items", "server error 500",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !strings.Contains(stderr, "wrote "+out+" (3 runs)") {
		t.Errorf("stderr: %q", stderr)
	}
}

func TestReportMarkdown(t *testing.T) {
	store, tpoID, _, _ := reportFixture(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "notes.md")
	code, _, stderr := cli(t, "", "report", "--store", store, "--format", "md", "--out", out, "--title", "Ablation", tpoID)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(md), "# Ablation\n") {
		t.Errorf("markdown starts with %.40q", md)
	}
	for _, name := range []string{"notes-run1-curves.svg", "notes-run1-gains.svg"} {
		if !strings.Contains(string(md), "]("+name+")") {
			t.Errorf("markdown does not link %s", name)
		}
		svg, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !strings.HasPrefix(string(svg), "<svg ") {
			t.Errorf("%s: %v, %.20q", name, err, svg)
		}
	}
}

func TestReportPlainResults(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "answers.jsonl")
	if err := os.WriteFile(in, []byte("{\"id\":\"1\",\"response\":\"x\"}\n{\"id\":2,\"response\":\"y\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "r.html")
	// No store exists: a file argument must not need one.
	code, _, stderr := cli(t, "", "report", "--store", filepath.Join(dir, "none.db"), "--out", out, in)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.db")); !os.IsNotExist(err) {
		t.Errorf("the report created a store: %v", err)
	}
	b, _ := os.ReadFile(out)
	if !strings.Contains(string(b), "2 (2 done, 0 failed)") {
		t.Errorf("report of plain results lacks the item counts")
	}
}

func TestReportStdout(t *testing.T) {
	store, tpoID, _, _ := reportFixture(t)
	code, stdout, stderr := cli(t, "", "report", "--store", store, "--out", "-", tpoID)
	if code != 0 || !strings.HasPrefix(stdout, "<!DOCTYPE html>") {
		t.Fatalf("exit %d, stdout %.40q, stderr %s", code, stdout, stderr)
	}
}

func TestReportErrors(t *testing.T) {
	store, tpoID, _, _ := reportFixture(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no run", []string{"report", "--store", store}, 2, "give at least one RUN"},
		{"unknown run", []string{"report", "--store", store, "nope"}, 2, `"nope" is neither a results file nor a run in`},
		{"no store", []string{"report", "--store", filepath.Join(dir, "x.db"), "nope"}, 2, "no store"},
		{"format", []string{"report", "--store", store, "--format", "pdf", tpoID}, 2, "want html or md"},
		{"labels", []string{"report", "--store", store, "--label", "a", "--label", "b", tpoID}, 2, "2 labels for 1 run"},
		{"md to stdout", []string{"report", "--store", store, "--format", "md", "--out", "-", tpoID}, 2, "give --out FILE"},
		{"bad file", []string{"report", "--out", filepath.Join(dir, "o.html"), writeTemp(t, dir, "bad.jsonl", "{\"id\":\"1\"}\n")}, 1, "bad.jsonl:1: item \"1\": no response field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := cli(t, "", tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("got exit %d, stderr %q; want %d and %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}

func writeTemp(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunLabels(t *testing.T) {
	rs := &runSet{refs: []runRef{{label: "tpo-5-2"}, {label: "tpo-5-2"}, {label: "bon-5-0"}, {label: "tpo-5-2"}}}
	rs.label([]string{"mine"})
	var got []string
	for _, r := range rs.refs {
		got = append(got, r.label)
	}
	if want := "mine|tpo-5-2|bon-5-0|tpo-5-2 (2)"; strings.Join(got, "|") != want {
		t.Errorf("labels: got %s, want %s", strings.Join(got, "|"), want)
	}
}

func TestRunConfig(t *testing.T) {
	tests := []struct {
		raw  string
		want string
	}{
		{`{"settings":{"config":{"mode":"tpo","width":5,"depth":2}},"backends":{}}`, "tpo-5-2"},
		{`{"config":{"mode":"revision","width":3,"depth":1}}`, "revision-3-1"},
		{`{"mode":"bon","width":8,"depth":2}`, "bon-8-0"},
		{`{"other":1}`, ""},
		{`not json`, ""},
	}
	for _, tt := range tests {
		cfg, ok := runConfig([]byte(tt.raw))
		got := ""
		if ok {
			got = fmt.Sprintf("%s-%d-%d", cfg.Mode, cfg.Width, cfg.Steps())
		}
		if got != tt.want {
			t.Errorf("runConfig(%s): got %q, want %q", tt.raw, got, tt.want)
		}
	}
}

// The results file and the store give the same summary of a run.
func TestReportFileMatchesStore(t *testing.T) {
	store, tpoID, _, file := reportFixture(t)
	runs, err := openRuns(context.Background(), []string{tpoID, file}, store)
	if err != nil {
		t.Fatal(err)
	}
	defer runs.close()
	var got [2]string
	for i, r := range runs.refs {
		var ids []string
		if _, err := runs.each(context.Background(), r, func(res tpo.Result, msgs []tpo.Message) error {
			ids = append(ids, fmt.Sprintf("%s:%s:%.0f:%d:%d", res.ID, res.Prompt, res.Score, len(res.Steps), len(msgs)))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		got[i] = strings.Join(ids, " ")
	}
	if got[0] != got[1] || got[0] == "" {
		t.Errorf("store gives %q, file gives %q", got[0], got[1])
	}
}
