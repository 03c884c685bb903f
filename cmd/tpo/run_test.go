package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tpoproject/tpo/sim"
	"github.com/tpoproject/tpo/tpotest"
)

// cli runs tpo in process and returns its exit status and output.
func cli(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return cliCtx(context.Background(), t, stdin, args...)
}

// cliCtx is cli under ctx: cancelling it is a Ctrl-C.
func cliCtx(ctx context.Context, t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	env := newEnviron(strings.NewReader(stdin), &o, &e)
	code = runMain(ctx, args, env)
	return code, o.String(), e.String()
}

// simServer starts a fast simulated policy + reward server.
func simServer(t *testing.T, opts sim.Options) string {
	t.Helper()
	if opts.TimeScale == 0 {
		opts.TimeScale = 0.0005
	}
	if opts.MeanTokens == 0 {
		opts.MeanTokens = 40
	}
	s := sim.New(opts)
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close() })
	return hs.URL
}

func backendArgs(url string) []string {
	return []string{"--policy-url", url + "/v1", "--policy-model", "sim-policy",
		"--reward", "vllm", "--reward-url", url, "--reward-model", "sim-reward", "--progress", "off"}
}

func TestRunOnePrompt(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 3})
	store := filepath.Join(t.TempDir(), "tpo.db")
	args := append([]string{"run", "--store", store, "-v", "What is a monad?"}, backendArgs(url)...)
	code, stdout, stderr := cli(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "[q=") {
		t.Errorf("stdout does not hold a simulated response: %q", stdout)
	}
	for _, want := range []string{"step 0: scores", "step 2: critique", "instructions", "best score"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("-v trajectory lacks %q:\n%s", want, stderr)
		}
	}

	// The prompt may come on stdin too.
	args = append([]string{"run", "--store", store, "--mode", "bon"}, backendArgs(url)...)
	code, stdout, stderr = cli(t, "What is a functor?\n", args...)
	if code != 0 || !strings.Contains(stdout, "[q=") {
		t.Fatalf("stdin prompt: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
}

func TestRunDataset(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 4})
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	os.WriteFile(data, []byte(`{"id": "a", "prompt": "first"}
{"id": "b", "text": "no prompt field"}
{"id": "c", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "third"}]}
not json
{"prompt": "fifth, without id"}
`), 0o644)
	out := filepath.Join(dir, "out.jsonl")
	store := filepath.Join(dir, "tpo.db")
	args := append([]string{"run", "--data", data, "--out", out, "--store", store, "--width", "2", "--depth", "1"}, backendArgs(url)...)
	code, _, stderr := cli(t, "", args...)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (two bad lines); stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "2 of 5 items failed") {
		t.Errorf("stderr lacks the failure count:\n%s", stderr)
	}
	lines := readLines(t, out)
	if len(lines) != 5 {
		t.Fatalf("out: %d lines, want 5", len(lines))
	}
	wantIDs := []string{"a", "b", "c", "4", "5"}
	for i, l := range lines {
		if l["id"] != wantIDs[i] {
			t.Errorf("line %d: id %v, want %s", i+1, l["id"], wantIDs[i])
		}
		for _, k := range []string{"id", "prompt", "response", "score", "steps", "usage", "error"} {
			if _, ok := l[k]; !ok {
				t.Errorf("line %d lacks %q", i+1, k)
			}
		}
	}
	if e, _ := lines[1]["error"].(string); !strings.Contains(e, "d.jsonl:2") || !strings.Contains(e, "prompt") {
		t.Errorf("bad line error: %q, want file, line and field", e)
	}
	if e, _ := lines[3]["error"].(string); !strings.Contains(e, "d.jsonl:4") {
		t.Errorf("invalid JSON error: %q", e)
	}
	if lines[2]["error"] != nil || len(lines[2]["steps"].([]any)) != 2 {
		t.Errorf("good item: error %v, %d steps", lines[2]["error"], len(lines[2]["steps"].([]any)))
	}

	// Fix the bad lines and run again: only they are computed.
	os.WriteFile(data, []byte(`{"id": "a", "prompt": "first"}
{"id": "b", "prompt": "now with a prompt"}
{"id": "c", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "third"}]}
{"prompt": "fourth"}
{"prompt": "fifth, without id"}
`), 0o644)
	code, _, stderr = cli(t, "", args...)
	if code != 0 {
		t.Fatalf("rerun: exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "2 done, 0 failed, 3 already done") {
		t.Errorf("rerun summary:\n%s", stderr)
	}
	if got := len(readLines(t, out)); got != 5 {
		t.Errorf("out after rerun: %d lines, want 5", got)
	}
}

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

func TestRunErrors(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 5})
	dir := t.TempDir()
	store := filepath.Join(dir, "tpo.db")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"unknown flag", []string{"run", "--wdith", "3", "q"}, 2, []string{"wdith"}},
		{"bad mode", []string{"run", "--mode", "best", "q"}, 2, []string{"mode", "best"}},
		{"bad width", []string{"run", "--width", "0", "q"}, 2, []string{"width"}},
		{"both", []string{"run", "--data", "x.jsonl", "q"}, 2, []string{"either --data or a PROMPT"}},
		{"missing data", []string{"run", "--data", filepath.Join(dir, "nope.jsonl")}, 2, []string{"nope.jsonl"}},
		{"unknown command", []string{"rnu"}, 2, []string{"unknown command"}},
		{"wrong model", append([]string{"run", "--store", store, "q"}, append(backendArgs(url), "--policy-model", "llama-9000")...), 2,
			[]string{"llama-9000", "sim-policy"}},
		{"unreachable", []string{"run", "--store", store, "--policy-url", "http://127.0.0.1:1/v1", "--policy-model", "m", "--retries", "0", "q"}, 1,
			[]string{"cannot reach the policy server at http://127.0.0.1:1/v1 (dial tcp 127.0.0.1:1: connect: connection refused)", "--policy-url", "--sim"}},
		{"exec without cmd", append([]string{"run", "--store", store, "q"}, append(backendArgs(url), "--reward", "exec")...), 2, []string{"--reward-cmd"}},
		{"token level without pooling", append([]string{"run", "--store", store, "q"}, append(backendArgs(url), "--reward-token-level")...), 2, []string{"pooling"}},
		{"vllm without url", []string{"run", "--store", store, "--policy-url", url + "/v1", "--reward", "vllm", "q"}, 2, []string{"--reward-url"}},
		{"out in a missing directory", []string{"run", "--out", filepath.Join(dir, "nope", "out.jsonl"), "q"}, 2,
			[]string{"--out", filepath.Join(dir, "nope") + " does not exist"}},
		{"unreachable, no model", []string{"run", "--store", store, "--policy-url", "http://127.0.0.1:1/v1", "--retries", "0", "q"}, 1,
			[]string{"cannot reach the policy server at http://127.0.0.1:1/v1", "--policy-url", "--sim"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := cli(t, "", tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func TestRunConfigFile(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 6})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tpo.yaml")
	os.WriteFile(cfg, []byte(`policy-url: `+url+`/v1
policy_model: sim-policy
reward: vllm
reward-url: [`+url+`]
reward-model: sim-reward
mode: bogus
depth: 1
progress: "off"
`), 0o644)
	store := filepath.Join(dir, "tpo.db")
	// The config's bad mode is overridden by the flag.
	code, stdout, stderr := cli(t, "", "run", "--config", cfg, "--store", store, "--mode", "revision", "hello")
	if code != 0 || !strings.Contains(stdout, "[q=") {
		t.Fatalf("exit %d stdout %q stderr:\n%s", code, stdout, stderr)
	}
	// Without the override the config's value is used, and reported with its line.
	code, _, stderr = cli(t, "", "run", "--config", cfg, "--store", store, "hello")
	if code != 2 || !strings.Contains(stderr, "bogus") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	os.WriteFile(cfg, []byte("policy-url: http://x\nwidht: 3\n"), 0o644)
	code, _, stderr = cli(t, "", "run", "--config", cfg, "hello")
	if code != 2 || !strings.Contains(stderr, "tpo.yaml:2") || !strings.Contains(stderr, "widht") {
		t.Errorf("unknown key: exit %d, stderr:\n%s", code, stderr)
	}
}

// TestRunSingleModelServers runs the quickstart's setting, one local model
// as policy and judge, against servers that ignore n (Ollama) or refuse it
// (llama.cpp): every sample and update still gets N responses.
func TestRunSingleModelServers(t *testing.T) {
	for _, flavor := range []tpotest.Flavor{tpotest.Ollama, tpotest.LlamaCPP} {
		t.Run(string(flavor), func(t *testing.T) {
			var samples atomic.Int32 // single requests all have choice 0: number them
			chat := tpotest.NewChatServer(t, tpotest.ChatOptions{Flavor: flavor, Models: []string{"qwen2.5:7b-instruct"},
				Respond: func(req tpotest.ChatRequestRecord, choice int) string {
					switch {
					case req.Logprobs: // the judge
						return "6"
					case strings.Contains(req.Prompt(), "<improved_response>"):
						return "<improved_response>better answer</improved_response>"
					case req.Prompt() == "Why is the sky blue?":
						return fmt.Sprintf("sample %d: Rayleigh scattering", samples.Add(1))
					}
					return tpotest.DefaultChatReply(req, choice)
				}})
			store := filepath.Join(t.TempDir(), "tpo.db")
			out := filepath.Join(t.TempDir(), "out.jsonl")
			code, stdout, stderr := cli(t, "", "run", "--policy-url", chat.URL(), "--policy-model", "qwen2.5:7b-instruct",
				"--store", store, "--out", out, "--width", "3", "--depth", "1", "--progress", "off", "-v", "Why is the sky blue?")
			if code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, stderr)
			}
			if strings.TrimSpace(stdout) == "" {
				t.Error("no answer printed")
			}
			l := readLines(t, out)[0]
			steps := l["steps"].([]any)
			for i, s := range steps {
				if n := len(s.(map[string]any)["candidates"].([]any)); n != 3 {
					t.Errorf("step %d: %d candidates, want 3", i, n)
				}
			}
			// After the server showed it does not honour n, no request asks for it.
			var withN, judged int
			for _, r := range chat.ChatRequests() {
				if r.Chat.Choices() > 1 {
					withN++
				}
				if r.Chat.Logprobs {
					judged++
				}
			}
			if withN > 1 {
				t.Errorf("%d requests asked for n > 1; want at most the first", withN)
			}
			if judged != 4 { // 3 samples + 1 distinct update text
				t.Errorf("judge requests: got %d, want 4", judged)
			}
			// The policy's tokens are in usage, the judge's in score_usage:
			// together what the server reported; -v says both.
			tokens := func(field string) int {
				u := l[field].(map[string]any)
				return int(u["prompt_tokens"].(float64) + u["completion_tokens"].(float64))
			}
			policy, judge, all := tokens("usage"), tokens("score_usage"), chat.Usage()
			if judge == 0 || policy+judge != all.TotalTokens() {
				t.Errorf("usage %d + score_usage %d tokens; the server reported %d", policy, judge, all.TotalTokens())
			}
			if want := fmt.Sprintf(" policy requests, %d policy tokens and %d judge tokens;", policy, judge); !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		})
	}
}
