package server

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// TestNodeClient drives the server with the official openai npm package
// (testdata/nodeclient/client.mjs): non-streamed and streamed requests with
// TPO overrides, the stream helper, an error and a pass-through. It needs
// node and `npm ci` run in testdata/nodeclient; without them it skips,
// except under CI (the CI environment variable set), where it fails.
func TestNodeClient(t *testing.T) {
	dir := filepath.Join("testdata", "nodeclient")
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
		missing("the openai npm package is not installed; run (cd server/testdata/nodeclient && npm ci --no-audit --no-fund): %v", err)
	}

	e := newTestEnv(t, func(o *Options) { o.APIKeys = []string{"node-test-key"} })
	e.up.policy.Err = func(_ int, req tpo.GenerateRequest) error {
		if mentions(req, "unknown model") {
			return statusErr("policy", 404, "The model `no-such-model` does not exist.", "NotFoundError", "404", "model")
		}
		return nil
	}
	e.up.setChat(`{"id":"chatcmpl-up","object":"chat.completion","created":1,"model":"policy-model","choices":[{"index":0,"message":{"role":"assistant","content":"relayed"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`, nil)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TPO_BASE_URL="+e.ts.URL+"/v1", "TPO_API_KEY=node-test-key")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node client.mjs: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	var out struct {
		Completion struct {
			Content string       `json:"content"`
			Usage   openai.Usage `json:"usage"`
			RunID   string       `json:"run_id"`
			Score   float64
		} `json:"completion"`
		Stream struct {
			Content  string       `json:"content"`
			Usage    openai.Usage `json:"usage"`
			Progress int          `json:"progress"`
		} `json:"stream"`
		Helper struct {
			Content string
			Usage   openai.Usage
		} `json:"helper"`
		Error struct {
			Status int
			Param  string
		} `json:"error"`
		UnknownModel struct {
			Status  int
			Code    string
			Param   string
			Message string
		} `json:"unknownModel"`
		Passthrough struct{ Content string } `json:"passthrough"`
		Models      []string                 `json:"models"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("node output %q: %v", stdout.String(), err)
	}

	// What the client parsed agrees with what the server recorded.
	items := e.store.Items(out.Completion.RunID)
	if len(items) != 1 || items[0].Result == nil || items[0].Result.Response != out.Completion.Content {
		t.Errorf("run %q in the store = %+v; the client got %q", out.Completion.RunID, items, out.Completion.Content)
	}
	if out.Completion.Score != float64(len(out.Completion.Content)) {
		t.Errorf("score %v for %q under the length reward", out.Completion.Score, out.Completion.Content)
	}
	if out.Stream.Progress != 1+2*4 { // sample, then loss, gradient, update, score per step
		t.Errorf("the client saw %d progress chunks, want 9", out.Stream.Progress)
	}
	if out.Error.Status != 400 || out.Error.Param != "tpo.width" {
		t.Errorf("error = %+v", out.Error)
	}
	// The SDK, retries on, did not retry the unknown model: one attempt.
	if u := out.UnknownModel; u.Status != 404 || u.Code != "model_not_found" || u.Param != "model" || strings.Contains(u.Message, "gpu7") {
		t.Errorf("unknown model: %+v", u)
	}
	attempts := 0
	for _, c := range e.up.policy.Calls() {
		if mentions(c, "unknown model") {
			attempts++
		}
	}
	if attempts != 1 {
		t.Errorf("the unknown model was asked for %d times, want once (no retry)", attempts)
	}
	if out.Passthrough.Content != "relayed" {
		t.Errorf("pass-through content = %q", out.Passthrough.Content)
	}
	if strings.Join(out.Models, " ") != "m1 tpo/m1 off/m1" {
		t.Errorf("models = %v", out.Models)
	}
	// Every policy call of the three optimizations is in the usage the
	// clients saw: together they equal the fake upstream's totals.
	e.up.mu.Lock()
	rep := usageOf(e.up.reported)
	e.up.mu.Unlock()
	sum := out.Completion.Usage.TotalTokens + out.Stream.Usage.TotalTokens + out.Helper.Usage.TotalTokens
	if sum != rep.TotalTokens || rep.TotalTokens == 0 {
		t.Errorf("usage seen by the client %d + %d + %d = %d, the upstream reported %d",
			out.Completion.Usage.TotalTokens, out.Stream.Usage.TotalTokens, out.Helper.Usage.TotalTokens, sum, rep.TotalTokens)
	}
}
