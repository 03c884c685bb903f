package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tpoproject/tpo/openai"
)

var simURLRE = regexp.MustCompile(`simulated model server at (http://127\.0\.0\.1:\d+) plays ([^;]+);`)

// simNote checks the note --sim prints and returns the simulator's URL.
func simNote(t *testing.T, stderr, roles string) string {
	t.Helper()
	m := simURLRE.FindStringSubmatch(stderr)
	if m == nil || m[2] != roles || !strings.Contains(stderr, "its texts are synthetic") || !strings.Contains(stderr, "drop --sim") {
		t.Fatalf("stderr lacks the note that %s are simulated with synthetic texts:\n%s", roles, stderr)
	}
	return m[1]
}

// assertDown checks that nothing listens at url any more.
func assertDown(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url + "/v1/models")
	if err == nil {
		resp.Body.Close()
		t.Errorf("the simulated server at %s still answers after the command ended", url)
	}
}

func TestRunSim(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		roles string
	}{
		{"judge", nil, "the policy model and the judge"},
		{"vllm reward", []string{"--reward", "vllm"}, "the policy model and the reward model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := filepath.Join(t.TempDir(), "tpo.db")
			args := append([]string{"run", "--sim", "--sim-time-scale", "0.0005", "--store", store, "-v"}, tt.args...)
			code, stdout, stderr := cli(t, "", append(args, "Explain TCP slow start.")...)
			if code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, stderr)
			}
			url := simNote(t, stderr, tt.roles)
			if !strings.HasPrefix(stdout, "[q=") {
				t.Errorf("stdout %.80q: want the best simulated response", stdout)
			}
			for _, want := range []string{"step 0: scores", "step 2: critique", "instructions", "best score"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("-v trajectory lacks %q:\n%s", want, stderr)
				}
			}
			// Responses are named "step 0 #3", never as Go structs.
			if !regexp.MustCompile(`critique of step \d #\d against step \d #\d:`).MatchString(stderr) ||
				regexp.MustCompile(`\{\d+ \d+\}`).MatchString(stderr) {
				t.Errorf("-v names responses wrongly (want \"critique of step 0 #3 against step 0 #1:\"):\n%s", stderr)
			}
			assertDown(t, url)
		})
	}
}

func TestRunSimData(t *testing.T) {
	dir := t.TempDir()
	data, out := filepath.Join(dir, "d.jsonl"), filepath.Join(dir, "out.jsonl")
	os.WriteFile(data, []byte(`{"id": "a", "instruction": "What is a monad?"}
{"id": "b", "instruction": "Explain TCP slow start."}
{"id": "c", "instruction": "Write a haiku about garbage collection."}
`), 0o644)
	code, _, stderr := cli(t, "", "run", "--sim", "--sim-time-scale", "0.0005", "--store", filepath.Join(dir, "tpo.db"),
		"--data", data, "--out", out, "--progress", "off")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	simNote(t, stderr, "the policy model and the judge")
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d results, want 3:\n%s", len(lines), b)
	}
	for _, l := range lines {
		var r struct {
			ID          string   `json:"id"`
			Response    string   `json:"response"`
			Score       *float64 `json:"score"`
			InitialBest float64  `json:"initial_best"`
			Error       *string  `json:"error"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		// The judge's expected grades: within the scale, and never worse
		// than the best initial sample.
		if r.Error != nil || r.Score == nil || *r.Score < 1 || *r.Score > 10 || *r.Score < r.InitialBest || !strings.HasPrefix(r.Response, "[q=") {
			t.Errorf("item %s: %s", r.ID, l[:min(len(l), 300)])
		}
	}
}

func TestRunSimUsage(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--sim", "--reward", "tei", "x"},
		{"run", "--sim", "--sim-time-scale", "0", "x"},
		{"run", "--sim", "--policy-url", "http://127.0.0.1:1/v1", "--reward", "vllm", "--reward-url", "http://127.0.0.1:1", "x"},
	} {
		code, _, stderr := cli(t, "", args...)
		if code != 2 || !strings.Contains(stderr, "sim") {
			t.Errorf("%q: exit %d, want 2 with a message on --sim:\n%s", args, code, stderr)
		}
		if strings.Contains(stderr, "simulated model server at") {
			t.Errorf("%q: the simulator started before the usage error:\n%s", args, stderr)
		}
	}
}

func TestServeSim(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, errc, stderr := startServe(t, ctx, []string{"--sim", "--sim-time-scale", "0.0005", "--addr", "127.0.0.1:0",
		"--store", filepath.Join(t.TempDir(), "serve.db"), "--width", "3", "--depth", "1"})
	url := simNote(t, stderr.String(), "the policy model and the judge")
	post := func(body string) *http.Response {
		t.Helper()
		resp, err := http.Post(base+"/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	// An optimized answer, scored by the simulated judge.
	resp := post(`{"model":"sim-policy","messages":[{"role":"user","content":"Explain TCP slow start."}]}`)
	var c struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		TPO struct {
			Score  float64 `json:"score"`
			Reward string  `json:"reward"`
		} `json:"tpo"`
	}
	err := json.NewDecoder(resp.Body).Decode(&c)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(c.Choices) != 1 || !strings.HasPrefix(c.Choices[0].Message.Content, "[q=") ||
		c.TPO.Reward != "judge" || c.TPO.Score < 1 || c.TPO.Score > 10 {
		t.Fatalf("optimized answer: status %d, %+v, %v", resp.StatusCode, c, err)
	}

	// A streamed pass-through request, relayed chunk by chunk.
	resp = post(`{"model":"sim-policy","messages":[{"role":"user","content":"Explain TCP slow start."}],"n":2,"max_tokens":40,
		"stream":true,"stream_options":{"include_usage":true},"tpo":{"mode":"off"}}`)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: status %d: %s", resp.StatusCode, b)
	}
	st := openai.NewStream(resp.Body, "tpo serve")
	defer st.Close()
	texts := make([]string, 2)
	var usage *openai.Usage
	chunks := 0
	for {
		ch, err := st.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("stream after %d chunks: %v", chunks, err)
		}
		chunks++
		for _, cc := range ch.Choices {
			texts[cc.Index] += cc.Delta.Content
		}
		if ch.Usage != nil {
			usage = ch.Usage
		}
	}
	for i, text := range texts {
		if !strings.HasPrefix(text, "[q=") || len(text) > 160 {
			t.Errorf("streamed choice %d: %q, want a simulated response of at most 40 tokens", i, text)
		}
	}
	if usage == nil || usage.CompletionTokens == 0 || chunks < 6 {
		t.Errorf("%d chunks, usage %+v: want role, content and finish chunks for 2 choices, and the usage", chunks, usage)
	}

	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("serve: %v\n%s", err, stderr.String())
	}
	assertDown(t, url)
}

func TestRunStoppingRules(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	os.WriteFile(data, []byte("\"What is a monad?\"\n\"Explain TCP slow start.\"\n\"Name a prime.\"\n"), 0o644)
	for _, tc := range []struct {
		flags []string
		want  string // "": what patience 1 calls for, from the scores
		steps int    // at most
	}{
		{nil, "depth", 5},
		{[]string{"--target-score", "1"}, "target", 1},    // every judge grade is at least 1
		{[]string{"--max-item-tokens", "1"}, "budget", 1}, // step 0 only
		{[]string{"--target-score", "1000"}, "depth", 5},  // never reached
		{[]string{"--patience", "1", "--reward", "vllm"}, "", 5},
		// Updates cut at 12 tokens, before their <improved_response> tag:
		// no round adds a candidate, so the first round gains nothing.
		{[]string{"--patience", "1", "--reward", "vllm", "--max-tokens", "12"}, "patience", 2},
	} {
		out := filepath.Join(dir, "out.jsonl")
		args := append([]string{"run", "--sim", "--sim-time-scale", "0.0005", "--store", filepath.Join(dir, "tpo.db"),
			"--depth", "4", "--data", data, "--out", out, "--progress", "off"}, tc.flags...)
		code, _, stderr := cli(t, "", args...)
		if code != 0 {
			t.Fatalf("%q: exit %d; stderr:\n%s", tc.flags, code, stderr)
		}
		b, _ := os.ReadFile(out)
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var r struct {
				StopReason string `json:"stop_reason"`
				Steps      []struct {
					Candidates []struct {
						Score float64 `json:"score"`
					} `json:"candidates"`
				} `json:"steps"`
			}
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == "" {
				// The simulator's updates mostly gain, but the reward's
				// noise can hide a gain: the scores say which rule ended
				// the item.
				var bests []float64
				for _, s := range r.Steps {
					best := math.Inf(-1)
					if n := len(bests); n > 0 {
						best = bests[n-1]
					}
					for _, c := range s.Candidates {
						best = max(best, c.Score)
					}
					bests = append(bests, best)
				}
				want = patienceOne(bests, 4)
			}
			if r.StopReason != want || len(r.Steps) > tc.steps {
				t.Errorf("%q: stop_reason %q after %d steps, want %q within %d", tc.flags, r.StopReason, len(r.Steps), want, tc.steps)
			}
		}
	}
}

// patienceOne returns why an item of depth d stops under --patience 1,
// given the best score after each of its steps: at the first round that
// did not raise it, or after the last; "wrong steps" when the item ran on
// after a round without a gain or stopped before its last round with every
// round gaining.
func patienceOne(bests []float64, d int) string {
	for i := 1; i < len(bests); i++ {
		if bests[i] <= bests[i-1] {
			if i != len(bests)-1 {
				return "wrong steps"
			}
			return "patience"
		}
	}
	if len(bests) != d+1 {
		return "wrong steps"
	}
	return "depth"
}
