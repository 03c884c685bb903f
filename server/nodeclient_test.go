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

	"fmt"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// TestNodeClient drives the server with the official openai npm package
// (testdata/nodeclient/client.mjs): non-streamed and streamed requests with
// TPO overrides, the stream helper, an error and a pass-through. It needs
// node and `npm ci` run in testdata/nodeclient; without them it skips,
// except under CI (the CI environment variable set), where it fails.
func TestNodeClient(t *testing.T) {
	node := nodeClient(t)

	e := newTestEnv(t, func(o *Options) { o.APIKeys = []string{"node-test-key"} })
	e.up.policy.Err = func(_ int, req tpo.GenerateRequest) error {
		if mentions(req, "unknown model") {
			return statusErr("policy", 404, "The model `no-such-model` does not exist.", "NotFoundError", "404", "model")
		}
		return nil
	}
	e.up.setChat(`{"id":"chatcmpl-up","object":"chat.completion","created":1,"model":"policy-model","choices":[{"index":0,"message":{"role":"assistant","content":"relayed"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`, nil)

	stdout := runNode(t, node, "client.mjs", e.ts.URL)
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
	if err := json.Unmarshal(stdout, &out); err != nil {
		t.Fatalf("node output %q: %v", stdout, err)
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

// nodeClient returns the path of node, with the openai npm package
// installed in testdata/nodeclient; without them the test skips, except
// under CI (the CI environment variable set), where it fails.
func nodeClient(t *testing.T) string {
	t.Helper()
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
	if _, err := os.Stat(filepath.Join("testdata", "nodeclient", "node_modules", "openai", "package.json")); err != nil {
		missing("the openai npm package is not installed; run (cd server/testdata/nodeclient && npm ci --no-audit --no-fund): %v", err)
	}
	return node
}

// runNode runs a script of testdata/nodeclient against the server at
// url (with the key node-test-key) and returns what it printed.
func runNode(t *testing.T, node, script, url string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = filepath.Join("testdata", "nodeclient")
	cmd.Env = append(os.Environ(), "TPO_BASE_URL="+url+"/v1", "TPO_API_KEY=node-test-key")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\nstderr:\n%s\nstdout:\n%s", script, err, stderr.String(), stdout.String())
	}
	return stdout.Bytes()
}

// TestNodeClientAPIs drives the Responses, Files and Batch APIs, a
// preset model name and a tool call with the official openai npm package
// (testdata/nodeclient/api.mjs): a response plain and streamed, continued,
// a background response polled to completion and one cancelled, a batch
// of 20 requests through files and batches to its output file, and a tool
// call passed through (chat, streamed, and as a response).
func TestNodeClientAPIs(t *testing.T) {
	node := nodeClient(t)
	e := newTestEnv(t, func(o *Options) {
		o.APIKeys = []string{"node-test-key"}
		o.Owner = &tpo.Owner{Host: "node-test", PID: 1}
	})
	e.up.mu.Lock()
	e.up.block = func(ctx context.Context, _ int, req tpo.GenerateRequest) error {
		if mentions(req, "hold me") {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	e.up.toolCall = func(req openai.ChatRequest, i int) *openai.ToolCall {
		last := req.Messages[len(req.Messages)-1]
		city, ok := strings.CutPrefix(strings.TrimSuffix(last.Content, "?"), "What is the weather in ")
		if !ok {
			city, ok = strings.CutPrefix(strings.TrimSuffix(last.Content, "?"), "Weather in ")
		}
		if last.Role != "user" || !ok {
			return nil
		}
		return &openai.ToolCall{ID: fmt.Sprintf("call_%s_%d", city, i), Type: "function",
			Function: openai.FunctionCall{Name: "get_weather", Arguments: `{"city":"` + city + `"}`}}
	}
	e.up.mu.Unlock()
	stdout := runNode(t, node, "api.mjs", e.ts.URL)
	var out struct {
		Response struct {
			ID, Text string
			RunID    string `json:"run_id"`
		}
		Background struct {
			ID       string
			Statuses []string
			Text     string
		}
		Cancelled struct{ ID, Status string }
		Batch     struct {
			ID           string
			OutputFileID string   `json:"output_file_id"`
			CustomIDs    []string `json:"custom_ids"`
		}
		Preset struct{ Model string }
		Tool   struct {
			ID, Name, Arguments string
			ResponseCall        string `json:"response_call"`
		}
	}
	if err := json.Unmarshal(stdout, &out); err != nil {
		t.Fatalf("node output %q: %v", stdout, err)
	}
	// What the client parsed agrees with what the server recorded.
	items := e.store.Items(out.Response.RunID)
	if len(items) != 1 || items[0].Result == nil || items[0].Result.Response != out.Response.Text {
		t.Errorf("run %q in the store = %+v; the client got %q", out.Response.RunID, items, out.Response.Text)
	}
	job, err := e.store.GetJob(context.Background(), kindResponse, out.Background.ID)
	if err != nil || job.Status != "completed" || job.Finished == nil || job.Owner != nil {
		t.Errorf("background response in the store: %+v, %v", job, err)
	}
	if out.Cancelled.Status != "cancelled" {
		t.Errorf("cancelled response is %q", out.Cancelled.Status)
	}
	if len(out.Batch.CustomIDs) != 20 || out.Batch.CustomIDs[0] != "request-0" {
		t.Errorf("batch output custom ids %v", out.Batch.CustomIDs)
	}
	batchItems := 0
	for _, r := range e.store.Runs() {
		if r.Kind == "batch" {
			batchItems += len(e.store.Items(r.ID))
		}
	}
	if batchItems != 20 {
		t.Errorf("the batch's runs hold %d items, want 20", batchItems)
	}
	if out.Tool.Name != "get_weather" || out.Tool.Arguments != `{"city":"Paris"}` || out.Tool.ID != "call_Paris_0" || out.Tool.ResponseCall != "call_Oslo_0" {
		t.Errorf("tool call seen by the client: %+v", out.Tool)
	}
	if err := e.srv.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
