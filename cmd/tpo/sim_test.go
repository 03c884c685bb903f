package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestSimCommand(t *testing.T) {
	pr, pw := io.Pipe()
	var stderr lockedBuffer
	env := newEnviron(strings.NewReader(""), pw, &stderr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, []string{"sim", "--addr", "127.0.0.1:0", "--time-scale", "0.001", "--mean-tokens", "20",
			"--log-every", "20ms", "--fail-500", "0.5", "--faults", "policy", "--seed", "3"}, env)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the URL: %v; stderr:\n%s", err, stderr.String())
	}
	go io.Copy(io.Discard, pr)
	url := strings.TrimSpace(line)
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("first line %q, want the base URL", url)
	}

	post := func(path, body string) int {
		resp, err := http.Post(url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// Policy faults only: about half the chat requests fail, no reward
	// request does.
	statuses := map[int]int{}
	for range 20 {
		statuses[post("/v1/chat/completions", `{"model":"sim-policy","messages":[{"role":"user","content":"hi"}],"max_tokens":16}`)]++
	}
	if statuses[200] == 0 || statuses[500] == 0 || statuses[200]+statuses[500] != 20 {
		t.Errorf("chat statuses %v, want a mix of 200 and 500", statuses)
	}
	for range 10 {
		if st := post("/tokenize", `{"model":"sim-reward","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}`); st != 200 {
			t.Errorf("tokenize: status %d, want 200 (faults apply to the policy only)", st)
		}
	}
	resp, err := http.Get(url + "/sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Faults map[string]int `json:"faults"`
	}
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Faults["500"] != statuses[500] {
		t.Errorf("stats count %d faults, the client saw %d", st.Faults["500"], statuses[500])
	}

	// Wait for a utilization line, then shut down.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "utilization=") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tpo sim did not stop")
	}
	out := stderr.String()
	for _, want := range []string{"utilization=", "injecting faults into the policy endpoints", "stopped after"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
}

func TestSimUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"sim", "--fail-500", "1.5"},
		{"sim", "--fail-500", "0.6", "--fail-503", "0.6"},
		{"sim", "--faults", "everything"},
		{"sim", "--error-style", "klingon"},
		{"sim", "--slots", "0"},
		{"sim", "--time-scale", "-1"},
		{"sim", "--hang", "-1s"},
		{"sim", "--prefix-cache-blocks", "-1"},
		{"bench", "tokens", "--prefix-cache-blocks", "-5"},
		{"sim", "extra"},
	} {
		if code, _, stderr := cli(t, "", args...); code != 2 {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, stderr)
		}
	}
}

func TestSimFlagsPrefixCache(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int // sim.Options.PrefixCacheBlocks
	}{
		{nil, 32768},
		{[]string{"--prefix-cache-blocks", "64"}, 64},
		{[]string{"--prefix-cache-blocks", "0"}, -1}, // sim: negative means no cache
	} {
		fs := flag.NewFlagSet("sim", flag.ContinueOnError)
		var sf simFlags
		sf.register(fs, 1)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		if err := sf.check(); err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if got := sf.options().PrefixCacheBlocks; got != tt.want {
			t.Errorf("%q: PrefixCacheBlocks %d, want %d", tt.args, got, tt.want)
		}
	}
}
