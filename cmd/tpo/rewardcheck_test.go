package main

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo/tpotest"
)

// deadURL returns the URL of a port nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	return url
}

func TestRunChecksRewardServer(t *testing.T) {
	old := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{Version: "0.10.1"})
	dead := deadURL(t)
	tests := []struct {
		name  string
		url   string
		extra []string
		want  []string // in stderr; none: success
	}{
		{"old vLLM", old.URL, nil, []string{old.URL, "version 0.10.1", "older than 0.11.1", "--reward-allow-old-vllm"}},
		{"unreachable", dead, nil, []string{dead, "/version"}},
		{"unreachable, old allowed", dead, []string{"--reward-allow-old-vllm"}, []string{dead}},
		{"old vLLM allowed", old.URL, []string{"--reward-allow-old-vllm"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chat := tpotest.NewChatServer(t, tpotest.ChatOptions{Respond: improvedReply})
			args := append([]string{"run", "--store", filepath.Join(t.TempDir(), "tpo.db"),
				"--policy-url", chat.URL(), "--policy-model", tpotest.DefaultChatModel,
				"--reward", "vllm", "--reward-url", tt.url, "--width", "2", "--depth", "1", "--progress", "off", "Say something."},
				tt.extra...)
			code, _, stderr := cli(t, "", args...)
			if tt.want == nil {
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				if !strings.Contains(stderr, "older than 0.11.1 allowed") {
					t.Errorf("stderr lacks the warning about the old server:\n%s", stderr)
				}
				return
			}
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if n := len(chat.ChatRequests()); n != 0 {
				t.Errorf("%d chat requests before the reward server was found wrong, want 0", n)
			}
		})
	}
}

func TestServeChecksRewardServer(t *testing.T) {
	chat := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	old := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{HideVersion: true})
	env := newEnviron(strings.NewReader(""), io.Discard, io.Discard)
	// Were the server let through, serve would run until the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := cmdServe(ctx, []string{"--addr", "127.0.0.1:0",
		"--policy-url", chat.URL(), "--policy-model", tpotest.DefaultChatModel,
		"--reward", "vllm", "--reward-url", old.URL, "--store", filepath.Join(t.TempDir(), "s.db")}, env)
	if err == nil || !strings.Contains(err.Error(), old.URL) || !strings.Contains(err.Error(), "cannot tell its version") {
		t.Errorf("serve with a vLLM of unknown version: %v, want a refusal naming %s", err, old.URL)
	}
}

func TestEvalRewardChecksAndTruncates(t *testing.T) {
	dir := t.TempDir()
	long := strings.TrimSpace(strings.Repeat("good ", 30))
	res := writeTemp(t, dir, "a.jsonl", jsonLines(t, kv{"id": "x", "response": "fine"}, kv{"id": "y", "response": long}))
	data := writeTemp(t, dir, "d.jsonl", jsonLines(t, kv{"id": "x", "prompt": "Q1"}, kv{"id": "y", "prompt": "Q2"}))
	base := []string{"eval", "reward", "--results", res, "--data", data, "--json"}

	// vLLM: the version is checked before scoring.
	old := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{Version: "0.11.1rc2"})
	code, _, stderr := cli(t, "", append(base, "--reward", "vllm", "--reward-url", old.URL)...)
	if code != 1 || !strings.Contains(stderr, old.URL) || !strings.Contains(stderr, "0.11.1rc2") {
		t.Errorf("old vLLM: exit %d, %q; want 1 and an error naming the server and version", code, stderr)
	}
	if n := old.Count("/tokenize") + old.Count("/classify"); n != 0 {
		t.Errorf("%d scoring requests to a refused server", n)
	}

	// TEI: the long answer is an error, unless --reward-truncate; the
	// batch size is capped by /info.
	tei := tpotest.NewTEIServer(t, tpotest.TEIOptions{MaxInputLength: 20, MaxBatch: 1})
	args := append(base, "--reward", "tei", "--reward-url", tei.URL)
	code, _, stderr = cli(t, "", args...)
	if code == 0 || !strings.Contains(stderr, "--reward-truncate") || !strings.Contains(stderr, "the limit is 20") {
		t.Errorf("over-long answer without --reward-truncate: exit %d, %q; want a failure naming the limit and the flag", code, stderr)
	}
	code, stdout, stderr := cli(t, "", append(args, "--reward-truncate")...)
	var got struct {
		MeanReward    float64 `json:"mean_reward"`
		Scored        int     `json:"scored"`
		ScoreFailures int     `json:"score_failures"`
	}
	lastJSON(t, stdout, &got)
	want := (tpotest.TextReward("fine") + tpotest.TextReward(strings.Repeat("good ", 20-3-1))) / 2
	if code != 0 || got.Scored != 2 || got.ScoreFailures != 0 || !near(got.MeanReward, want) {
		t.Errorf("with --reward-truncate: exit %d, %+v, want 2 scored, mean %v; stderr %s", code, got, want, stderr)
	}
	for _, r := range tei.Requests() {
		if strings.Contains(string(r.Body), "],[") {
			t.Errorf("a /predict batch of more than 1 pair despite max_client_batch_size 1: %s", r.Body)
		}
	}
}

// A judge on a server of its own is checked before any sampling too.
func TestRunChecksJudgeServer(t *testing.T) {
	dead := deadURL(t)
	other := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	for _, tc := range []struct {
		name, url, model string
		want             []string
	}{
		{"unreachable", dead + "/v1", "judge-model", []string{dead, "/models"}},
		{"unserved model", other.URL(), "no-such-judge", []string{"no-such-judge"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chat := tpotest.NewChatServer(t, tpotest.ChatOptions{Respond: improvedReply})
			code, _, stderr := cli(t, "", "run", "--store", filepath.Join(t.TempDir(), "tpo.db"),
				"--policy-url", chat.URL(), "--policy-model", tpotest.DefaultChatModel, "--retries", "0",
				"--reward", "judge", "--reward-url", tc.url, "--reward-model", tc.model, "--progress", "off", "Say something.")
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if n := len(chat.ChatRequests()); n != 0 {
				t.Errorf("%d chat requests before the judge was found wrong, want 0", n)
			}
		})
	}
}
