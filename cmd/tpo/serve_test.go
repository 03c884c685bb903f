package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/proc"
	"github.com/tpoproject/tpo/sqlite"
	"github.com/tpoproject/tpo/tpotest"
)

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// improvedReply answers update requests with an <improved_response> block
// and everything else with the fake's default reply.
func improvedReply(req tpotest.ChatRequestRecord, choice int) string {
	if strings.Contains(req.Prompt(), "<improved_response>") {
		return "<improved_response>a good improved answer " + strings.Repeat("good ", choice+1) + "</improved_response>"
	}
	return tpotest.DefaultChatReply(req, choice)
}

var listenRE = regexp.MustCompile(`listening on (http://\S+/v1)`)

// startServe runs cmdServe in process and returns its base URL, its
// result channel and stderr.
func startServe(t *testing.T, ctx context.Context, args []string) (string, <-chan error, *syncBuffer) {
	t.Helper()
	stderr := &syncBuffer{}
	env := newEnviron(strings.NewReader(""), io.Discard, stderr)
	errc := make(chan error, 1)
	go func() { errc <- cmdServe(ctx, args, env) }()
	deadline := time.After(10 * time.Second)
	for {
		if m := listenRE.FindStringSubmatch(stderr.String()); m != nil {
			return m[1], errc, stderr
		}
		select {
		case err := <-errc:
			t.Fatalf("cmdServe ended before listening: %v\nstderr:\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("cmdServe did not start listening\nstderr:\n%s", stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestServe(t *testing.T) {
	hold := make(chan struct{})
	held := make(chan struct{})
	var once sync.Once
	chat := tpotest.NewChatServer(t, tpotest.ChatOptions{
		Respond: improvedReply,
		Before: func(r *http.Request, n int) {
			// Chat request 4 (the first of the second optimization) waits
			// until released: it is in flight when shutdown starts.
			if n == 4 {
				once.Do(func() { close(held) })
				select {
				case <-hold:
				case <-r.Context().Done():
				}
			}
		},
	})
	rm := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{})
	store := filepath.Join(t.TempDir(), "serve.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, errc, stderr := startServe(t, ctx, []string{
		"--addr", "127.0.0.1:0", "--api-key", "sekret",
		"--policy-url", chat.URL(), "--policy-model", tpotest.DefaultChatModel,
		"--reward", "vllm", "--reward-url", rm.URL, "--reward-model", "rm",
		"--width", "2", "--depth", "1", "--store", store, "--shutdown-timeout", "10s",
	})

	post := func(body string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, base+"/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sekret")
		req.Header.Set("Content-Type", "application/json")
		return http.DefaultClient.Do(req)
	}
	body := `{"model":"` + tpotest.DefaultChatModel + `","messages":[{"role":"user","content":"Say something good."}]}`
	resp, err := post(body)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
		TPO struct {
			RunID    string `json:"run_id"`
			Requests int    `json:"requests"`
		} `json:"tpo"`
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Choices) != 1 || !strings.Contains(c.Choices[0].Message.Content, "improved answer") {
		t.Errorf("answer = %s, want the improved response (the reward prefers \"good\")", data)
	}
	if c.TPO.Requests != 4 || c.Usage.TotalTokens == 0 || c.TPO.RunID == "" {
		t.Errorf("usage %d, tpo %+v", c.Usage.TotalTokens, c.TPO)
	}
	if strings.Contains(stderr.String(), "sekret") {
		t.Error("the API key was logged")
	}

	// A second request is in flight when the signal comes: it finishes.
	second := make(chan int, 1)
	go func() {
		resp, err := post(body)
		if err != nil {
			second <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		second <- resp.StatusCode
	}()
	<-held
	cancel()
	// Shutdown has begun once the listener is closed.
	for i := 0; ; i++ {
		if _, err := http.Get(base + "/../healthz"); err != nil {
			break
		}
		if i > 1000 {
			t.Fatal("the server still accepts connections after the signal")
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(hold)
	if s := <-second; s != 200 {
		t.Errorf("the request in flight during shutdown got %d, want 200", s)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("cmdServe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cmdServe did not return after shutdown")
	}

	// Both optimizations are in the store.
	db, err := sqlite.Open(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	run, err := db.GetRun(context.Background(), c.TPO.RunID)
	if err != nil || run.Kind != "serve" {
		t.Errorf("run %q: %+v, %v", c.TPO.RunID, run, err)
	}
	runs, err := db.ListRuns(context.Background())
	if err != nil || len(runs) != 2 {
		t.Errorf("%d runs in the store (%v), want 2", len(runs), err)
	}
}

func TestServeRefusesOpenAddressWithoutKeys(t *testing.T) {
	t.Setenv("TPO_API_KEYS", "")
	env := newEnviron(strings.NewReader(""), io.Discard, io.Discard)
	err := cmdServe(context.Background(), []string{"--addr", "0.0.0.0:0"}, env)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--insecure-no-auth") {
		t.Errorf("cmdServe on 0.0.0.0 without keys = %v, want a usage error naming --insecure-no-auth", err)
	}
	for addr, want := range map[string]bool{"127.0.0.1:80": true, "localhost:1": true, "[::1]:8080": true, ":8080": false, "0.0.0.0:1": false, "10.0.0.1:80": false} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestServeRewardOverride checks that a request can pick the judge on the
// policy server when the server is configured with another reward backend.
func TestServeRewardOverride(t *testing.T) {
	var judged sync.Map
	chat := tpotest.NewChatServer(t, tpotest.ChatOptions{Respond: func(req tpotest.ChatRequestRecord, choice int) string {
		if req.Logprobs { // only the judge asks for logprobs
			judged.Store(req.Prompt(), true)
			return "8"
		}
		return improvedReply(req, choice)
	}})
	rw := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, errc, stderr := startServe(t, ctx, []string{"--addr", "127.0.0.1:0", "--store", filepath.Join(t.TempDir(), "s.db"),
		"--policy-url", chat.URL(), "--policy-model", chat.Model(), "--reward", "vllm", "--reward-url", rw.URL, "--width", "2", "--depth", "1"})
	post := func(body string) map[string]any {
		t.Helper()
		resp, err := http.Post(url+"/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %v", resp.StatusCode, m)
		}
		return m
	}
	classifyBefore := rw.Count("/classify")
	m := post(`{"model": "` + chat.Model() + `", "messages": [{"role": "user", "content": "judge me"}], "tpo": {"reward": "judge"}}`)
	if got := m["tpo"].(map[string]any)["reward"]; got != "judge" {
		t.Errorf("tpo.reward: got %v, want judge", got)
	}
	if score := m["tpo"].(map[string]any)["score"].(float64); score < 7.5 || score > 8.5 {
		t.Errorf("score %v, want about 8 (the judge's grade)", score)
	}
	n := 0
	judged.Range(func(any, any) bool { n++; return true })
	if n == 0 {
		t.Error("the judge was never asked")
	}
	if rw.Count("/classify") != classifyBefore {
		t.Error("the vLLM reward server was used for a request that asked for the judge")
	}
	// The configured backend stays the default.
	m = post(`{"model": "` + chat.Model() + `", "messages": [{"role": "user", "content": "score me"}]}`)
	if got := m["tpo"].(map[string]any)["reward"]; got != "vllm" {
		t.Errorf("default tpo.reward: got %v, want vllm", got)
	}
	if rw.Count("/classify") == classifyBefore {
		t.Error("the vLLM reward server was not used by default")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("cmdServe: %v\n%s", err, stderr.String())
	}
}

// hostStatus sends GET base+path with the Host header host.
func hostStatus(t *testing.T, base, path, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Host = host
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeAllowedHosts: tpo serve answers to loopback names and the
// listen address by default, to what --allowed-host names instead when
// given, and gets 421 for other hosts on the API and the UI.
func TestServeAllowedHosts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, errc, stderr := startServe(t, ctx, []string{"--sim", "--addr", "127.0.0.1:0", "--store", filepath.Join(t.TempDir(), "s.db")})
	root := strings.TrimSuffix(base, "/v1")
	if !strings.Contains(stderr.String(), "answering to the host names localhost, *.localhost, 127.0.0.1, ::1; others get 421") {
		t.Errorf("the start-up lines do not say which hosts are answered:\n%s", stderr.String())
	}
	for _, p := range []string{"/v1/models", "/healthz", "/ui/", "/"} {
		if code, body := hostStatus(t, root, p, "rebound.example:8080"); code != http.StatusMisdirectedRequest || !strings.Contains(body, "--allowed-host") {
			t.Errorf("GET %s for rebound.example: %d %s", p, code, body)
		}
		for _, host := range []string{"localhost:8080", "127.0.0.1"} {
			if code, _ := hostStatus(t, root, p, host); code == http.StatusMisdirectedRequest || code >= 500 {
				t.Errorf("GET %s for %s: %d", p, host, code)
			}
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	base, errc, _ = startServe(t, ctx, []string{"--sim", "--addr", "127.0.0.1:0", "--store", filepath.Join(t.TempDir(), "s.db"),
		"--allowed-host", "tpo.lab.example", "--allowed-host", "*.tpo.example"})
	root = strings.TrimSuffix(base, "/v1")
	for host, want := range map[string]int{"tpo.lab.example": 200, "a.tpo.example:80": 200, "127.0.0.1": 421, "localhost": 421, "tpo.example": 421} {
		if code, _ := hostStatus(t, root, "/healthz", host); code != want {
			t.Errorf("--allowed-host given: host %s: %d, want %d", host, code, want)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestListenFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--sim", "--allowed-host", "gpu-box:8080"},
		{"serve", "--sim", "--allowed-host", "http://gpu-box"},
		{"serve", "--sim", "--write-timeout", "-1s"},
		{"ui", "--allowed-host", "a b"},
		{"ui", "--read-timeout", "-1s"},
		{"serve", "--sim", "--max-tokens", "4096", "--max-tokens-cap", "1000"},
		{"serve", "--sim", "--critique-max-tokens", "4096", "--critique-max-tokens-cap", "1000"},
		{"serve", "--sim", "--max-tokens-cap", "0"},
	} {
		code, _, stderr := cli(t, "", args...)
		if code != 2 || !strings.Contains(stderr, strings.TrimPrefix(args[len(args)-2], "--")) {
			t.Errorf("%q: exit %d, want 2 naming the flag:\n%s", args, code, stderr)
		}
		if strings.Contains(stderr, "listening on") || strings.Contains(stderr, "simulated model server at") {
			t.Errorf("%q: started before the usage error:\n%s", args, stderr)
		}
	}
}

// TestServeMarksInterruptedRuns: tpo serve, starting, marks as
// interrupted the runs that a killed tpo serve of this machine left
// unfinished, and no other.
func TestServeMarksInterruptedRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	// A process that ran, and was killed.
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Skip(err)
	}
	host, _ := os.Hostname()
	dead := &tpo.Owner{Host: host, PID: child.Process.Pid, Started: time.Now()}
	child.Process.Kill()
	child.Wait()
	self, err := proc.Self()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for id, owner := range map[string]*tpo.Owner{
		"killed": dead, "live": &self, "remote": {Host: "elsewhere.example", PID: dead.PID, Started: dead.Started}, "tporun": nil,
	} {
		if _, _, err := db.OpenRun(ctx, tpo.Run{ID: id, Kind: "serve", Source: "api", ItemCount: 1, Owner: owner}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.StartItem(ctx, id, 0, tpo.Item{ID: "chatcmpl-" + id, Messages: []tpo.Message{{Role: "user", Content: "q"}}}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, errc, stderr := startServe(t, sctx, []string{"--sim", "--addr", "127.0.0.1:0", "--store", path})
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if want := "tpo serve: 1 run left unfinished by a tpo serve that ended (killed or crashed) marked as interrupted: killed\n"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}
	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for id, want := range map[string]bool{"killed": true, "live": false, "remote": false, "tporun": false} {
		r, err := db.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if (r.Interrupted != nil) != want || want && (r.Failed != 1 || r.Pending != 0) {
			t.Errorf("run %s: interrupted %v, failed %d, pending %d; want interrupted %v", id, r.Interrupted, r.Failed, r.Pending, want)
		}
	}
}

// TestBlankAPIKeysRefused: a key that is blank after trimming, from the
// command line, $TPO_API_KEYS or a config file, stops tpo serve and tpo ui
// before they listen, with an error naming where it came from: a blank
// key would leave a server that was meant to need one open to all.
func TestBlankAPIKeysRefused(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "s.db")
	tests := []struct {
		name, env, config string
		args              []string
		want              string
	}{
		{name: "flag blank", args: []string{"serve", "--sim", "--api-key", " "}, want: `invalid value " " for flag -api-key: blank API key`},
		{name: "flag empty", args: []string{"serve", "--sim", "--api-key", "good", "--api-key", ""}, want: `invalid value "" for flag -api-key: blank API key`},
		{name: "ui flag", args: []string{"ui", "--api-key", "\t"}, want: `invalid value "\t" for flag -api-key: blank API key`},
		{name: "env blank", env: " ", args: []string{"serve", "--sim"}, want: "$TPO_API_KEYS: key 1 of 1 is blank"},
		{name: "env comma", env: ",", args: []string{"serve", "--sim"}, want: "$TPO_API_KEYS: key 1 of 2 is blank"},
		{name: "env empty entry", env: "a,,b", args: []string{"serve", "--sim", "--api-key", "c"}, want: "$TPO_API_KEYS: key 2 of 3 is blank"},
		{name: "ui env trailing comma", env: "a, ", args: []string{"ui"}, want: "$TPO_API_KEYS: key 2 of 2 is blank"},
		{name: "config", config: "api-key: \" \"\n", args: []string{"serve", "--sim"}, want: `c.yaml:1: api-key: invalid value " ": blank API key`},
		{name: "config list", config: "api-key:\n  - k\n  - ''\n", args: []string{"serve", "--sim"}, want: `c.yaml:3: api-key: invalid value "": blank API key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TPO_API_KEYS", tt.env)
			args := append(tt.args, "--addr", "127.0.0.1:0", "--store", store)
			if tt.config != "" {
				cfg := filepath.Join(dir, "c.yaml")
				if err := os.WriteFile(cfg, []byte(tt.config), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", cfg)
			}
			// A server that starts anyway is stopped, and fails the test.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var stderr bytes.Buffer
			code := runMain(ctx, args, newEnviron(strings.NewReader(""), io.Discard, &stderr))
			if code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("%q: exit %d, stderr:\n%s\nwant exit 2 and %q", args, code, stderr.String(), tt.want)
			}
			for _, started := range []string{"listening on", "serving the runs", "simulated model server at"} {
				if strings.Contains(stderr.String(), started) {
					t.Errorf("%q: started before refusing the key:\n%s", args, stderr.String())
				}
			}
		})
	}
}

// TestAPIKeysTrimmed: spaces around a key of --api-key or $TPO_API_KEYS
// are not part of it, for the API and the UI.
func TestAPIKeysTrimmed(t *testing.T) {
	t.Setenv("TPO_API_KEYS", " e1 , e2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, errc, _ := startServe(t, ctx, []string{"--sim", "--addr", "127.0.0.1:0", "--store", filepath.Join(t.TempDir(), "s.db"),
		"--api-key", " k "})
	for _, key := range []string{"k", "e1", "e2"} {
		req, _ := http.NewRequest(http.MethodGet, base+"/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /v1/models with key %q: %d, want 200", key, resp.StatusCode)
		}
		req, _ = http.NewRequest(http.MethodGet, strings.TrimSuffix(base, "/v1")+"/ui/", nil)
		req.SetBasicAuth("me", key)
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /ui/ with password %q: %d, want 200", key, resp.StatusCode)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestIdleTimeout: tpo serve and tpo ui close a keep-alive connection that
// stays idle for --idle-timeout after a response, and not before.
func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serveBase, errc, _ := startServe(t, ctx, []string{"--sim", "--addr", "127.0.0.1:0", "--store", path, "--idle-timeout", idle.String()})
	uiBase := startUI(t, ctx, "--store", path, "--idle-timeout", idle.String())
	for name, u := range map[string]string{"serve": strings.TrimSuffix(serveBase, "/v1") + "/healthz", "ui": uiBase + "/ui/"} {
		t.Run(name, func(t *testing.T) {
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := net.Dial("tcp", pu.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", pu.Path, pu.Host)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Close {
				t.Fatalf("GET %s: %d, close %v; want 200 on a connection kept alive", pu.Path, resp.StatusCode, resp.Close)
			}
			t0 := time.Now()
			conn.SetReadDeadline(t0.Add(idle + 5*time.Second))
			n, err := br.Read(make([]byte, 1))
			took := time.Since(t0)
			if n != 0 || !errors.Is(err, io.EOF) {
				t.Fatalf("idle connection after %v: read %d bytes, %v; want it closed by the server (EOF)", took.Round(time.Millisecond), n, err)
			}
			if took < idle/2 {
				t.Errorf("idle connection closed after %v, before the idle timeout %v", took, idle)
			}
		})
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
