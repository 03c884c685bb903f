package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tpoproject/tpo/internal/pgtest"
	"github.com/tpoproject/tpo/sim"
	"github.com/tpoproject/tpo/tpotest"
)

// evalFixture is what the eval commands need beside the answers of the
// report fixture's run (items a1, a2 and bad, which failed): their data,
// baselines and judges.
type evalFixture struct {
	math, xstest, questions, baseline, arenaQuestions, arenaBaseline string
	judge, arenaJudge                                                string
}

func newEvalFixture(t *testing.T) evalFixture {
	t.Helper()
	dir := t.TempDir()
	judge := &lengthJudge{orders: map[string]int{}}
	return evalFixture{
		math: writeTemp(t, dir, "math.jsonl", jsonLines(t,
			kv{"id": "a1", "prompt": "Name a colour.", "answer": "red", "subject": "Colours", "level": 1},
			kv{"id": "a2", "prompt": "Say hi.", "answer": "hi", "subject": "Words", "level": 2},
			kv{"id": "bad", "prompt": "fail here", "answer": "1", "subject": "Words", "level": 3})),
		xstest: writeTemp(t, dir, "xstest.jsonl", jsonLines(t,
			kv{"id": "a1", "prompt": "Name a colour.", "type": "t", "label": "safe"},
			kv{"id": "a2", "prompt": "Say hi.", "type": "t", "label": "unsafe"})),
		questions: writeTemp(t, dir, "questions.jsonl", jsonLines(t,
			kv{"id": "a1", "prompt": "Name a colour.", "dataset": "helpful_base"},
			kv{"id": "a2", "prompt": "Say <hi>.", "dataset": "koala"})),
		baseline: writeTemp(t, dir, "baseline.jsonl", jsonLines(t,
			kv{"id": "a1", "model": "gpt4_1106_preview", "answer": "Red."},
			kv{"id": "a2", "model": "gpt4_1106_preview", "answer": "Hi there, and a very long greeting besides."})),
		arenaQuestions: writeTemp(t, dir, "question.jsonl", jsonLines(t,
			kv{"id": "a1", "prompt": "Name a colour.", "question_id": "a1"},
			kv{"id": "a2", "prompt": "Say <hi>.", "question_id": "a2"})),
		arenaBaseline: writeTemp(t, dir, "baseline_gpt-4-0314.jsonl", jsonLines(t,
			kv{"question_id": "a1", "model": "gpt-4-0314", "answer": "Red."},
			kv{"question_id": "a2", "model": "gpt-4-0314", "answer": "Hi there, and a very long greeting besides, and more."})),
		judge:      tpotest.NewChatServer(t, tpotest.ChatOptions{Models: []string{"judge-7b"}, Respond: judge.respond}).URL(),
		arenaJudge: tpotest.NewChatServer(t, tpotest.ChatOptions{Models: []string{"judge-70b"}, Respond: arenaJudge}).URL(),
	}
}

// commands are the eval commands that read answers, with the flags they
// need besides.
func (f evalFixture) commands() map[string][]string {
	return map[string][]string{
		"math":       {"eval", "math", "--data", f.math, "--answered-only"},
		"reward":     {"eval", "reward"},
		"xstest":     {"eval", "xstest", "--data", f.xstest},
		"judge":      {"eval", "judge", "--baseline", f.baseline, "--judge-url", f.judge},
		"alpaca":     {"eval", "alpaca", "--data", f.questions, "--baseline", f.baseline, "--judge-url", f.judge},
		"arena-hard": {"eval", "arena-hard", "--data", f.arenaQuestions, "--baseline", f.arenaBaseline, "--judge-url", f.arenaJudge},
	}
}

// TestEvalStore: every eval command reads a run of a SQLite store with
// --store S RUN and reports what it reports of the results file tpo run
// --out wrote of the same run; the judged model is named after the run,
// as tpo export names it.
func TestEvalStore(t *testing.T) {
	store, tpoID, _, file := reportFixture(t)
	f := newEvalFixture(t)
	for name, args := range f.commands() {
		t.Run(name, func(t *testing.T) {
			t.Setenv("TPO_JUDGE_URL", "")
			named := append(args[:len(args):len(args)], "--json")
			switch name {
			case "alpaca":
				named = append(named, "--generator", "tpo-2-2")
			case "arena-hard":
				named = append(named, "--model-name", "tpo-2-2")
			}
			code, want, stderr := cli(t, "", append(named, "--results", file)...)
			if code != 0 {
				t.Fatalf("--results: exit %d: %s", code, stderr)
			}
			code, got, stderr := cli(t, "", append(named, "--store", store, tpoID)...)
			if code != 0 || got != want {
				t.Errorf("--store S RUN: exit %d, stdout\n%s\nwant (as from --results)\n%s\nstderr:\n%s", code, got, want, stderr)
			}
			// Without the name, the run's label names the answers.
			if name == "alpaca" || name == "arena-hard" {
				code, got, stderr = cli(t, "", append(args, "--json", "--store", store, tpoID)...)
				if code != 0 || !strings.Contains(got, `"tpo-2-2"`) {
					t.Errorf("unnamed: exit %d, stdout %s, stderr %s; want the run's label tpo-2-2", code, got, stderr)
				}
			}
		})
	}
}

// TestEvalStoreDefault: a RUN without --store is read from tpo.db, as tpo
// report and tpo export read it; a run's failed items are said as from a
// results file.
func TestEvalStoreDefault(t *testing.T) {
	store, tpoID, _, _ := reportFixture(t)
	t.Chdir(filepath.Dir(store))
	code, stdout, stderr := cli(t, "", "eval", "reward", tpoID)
	if code != 0 || !strings.Contains(stdout, "mean reward: ") || !strings.Contains(stderr, "warning: 1 item of the results failed") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestEvalStoreErrors: --results and --store together, --store without a
// RUN, a RUN with --results, and runs or stores that do not exist are
// usage errors of every eval command that reads answers.
func TestEvalStoreErrors(t *testing.T) {
	store, tpoID, _, file := reportFixture(t)
	f := newEvalFixture(t)
	none := filepath.Join(t.TempDir(), "none.db")
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"both", []string{"--results", file, "--store", store, tpoID}, "give either --results FILE or --store S RUN, not both"},
		{"both without RUN", []string{"--results", file, "--store", store}, "give either --results FILE or --store S RUN, not both"},
		{"store without RUN", []string{"--store", store}, "--store " + store + ": give the RUN to score after the flags"},
		{"RUN with results", []string{"--results", file, tpoID}, `unexpected argument "` + tpoID + `": with --results FILE, give no RUN`},
		{"two RUNs", []string{"--store", store, tpoID, "other"}, "give one RUN to score, got 2"},
		{"no such run", []string{"--store", store, "nosuchrun"}, `"nosuchrun" is neither a results file nor a run in ` + store},
		{"no such store", []string{"--store", none, tpoID}, "no store " + none},
		{"neither", nil, "give --results FILE, or --store S and the RUN to score"},
	}
	for name, args := range f.commands() {
		for _, c := range cases {
			if name == "alpaca" || name == "arena-hard" {
				if c.name == "neither" {
					c.msg = "or --results FILE or --store S RUN (to judge answers)"
				}
			}
			t.Run(name+"/"+c.name, func(t *testing.T) {
				t.Setenv("TPO_JUDGE_URL", "")
				code, stdout, stderr := cli(t, "", append(args[:len(args):len(args)], c.args...)...)
				if code != 2 || stdout != "" || !strings.Contains(stderr, c.msg) {
					t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, stdout, stderr, c.msg)
				}
			})
		}
	}
	code, _, stderr := cli(t, "", "eval", "alpaca", "--annotations", file, "--store", store, tpoID)
	if code != 2 || !strings.Contains(stderr, "give either --annotations FILE (to score annotations) or --results FILE or --store S RUN (to judge answers)") {
		t.Errorf("--annotations with --store: exit %d, %q", code, stderr)
	}
}

// TestEvalPostgres: tpo eval reads a run of a PostgreSQL store as it
// reads the results file of the same run, and never prints the password.
func TestEvalPostgres(t *testing.T) {
	store := pgtest.Schema(t)
	simURL := simServer(t, sim.Options{Seed: 9})
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	writeDataset(t, data, 3)
	out := filepath.Join(dir, "out.jsonl")
	code, _, stderr := cli(t, "", append([]string{"run", "--data", data, "--store", store, "--width", "2", "--depth", "1", "--out", out},
		backendArgs(simURL)...)...)
	if code != 0 {
		t.Fatalf("tpo run: exit %d: %s", code, stderr)
	}
	m := regexp.MustCompile(`run (\w+): 3 items`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("tpo run: no run id in\n%s", stderr)
	}
	code, want, stderr := cli(t, "", "eval", "reward", "--json", "--results", out)
	if code != 0 {
		t.Fatalf("--results: exit %d: %s", code, stderr)
	}
	code, got, stderr := cli(t, "", "eval", "reward", "--json", "--store", store, m[1])
	if code != 0 || got != want || !strings.Contains(got, `"stored":3`) {
		t.Errorf("--store postgres://... RUN: exit %d, stdout\n%s\nwant\n%s\nstderr:\n%s", code, got, want, stderr)
	}
	code, _, stderr = cli(t, "", "eval", "reward", "--store", store, "nosuchrun")
	if code != 2 || !strings.Contains(stderr, `"nosuchrun" is neither a results file nor a run in postgres://`) || strings.Contains(stderr, password(t, store)) {
		t.Errorf("a missing run: exit %d, stderr %q", code, stderr)
	}
}
