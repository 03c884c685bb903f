package sim

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
)

func TestVersionEndpoint(t *testing.T) {
	for _, tt := range []struct{ set, want string }{{"", "0.12.0"}, {"0.10.1", "0.10.1"}, {"main", "main"}} {
		s, ts := newTest(t, Options{VLLMVersion: tt.set, Faults: Faults{ServerError: 1}})
		resp, err := http.Get(ts.URL + EndpointVersion)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var v struct {
			Version string `json:"version"`
		}
		// Faults are not injected into /version.
		if resp.StatusCode != 200 || json.Unmarshal(body, &v) != nil || v.Version != tt.want {
			t.Errorf("VLLMVersion %q: GET /version = %d %s, want version %q", tt.set, resp.StatusCode, body, tt.want)
		}
		if n := s.Stats().Requests[EndpointVersion]; n != 1 {
			t.Errorf("%d /version requests counted, want 1", n)
		}
	}
}

// poolingScore posts body to /pooling and returns its score.
func poolingScore(t *testing.T, url string, body map[string]any) float64 {
	t.Helper()
	resp, data := post(t, nil, url+EndpointPooling, body)
	var pr struct {
		Data []struct {
			Data []float64 `json:"data"`
		} `json:"data"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(data, &pr) != nil || len(pr.Data) != 1 || len(pr.Data[0].Data) != 1 {
		t.Fatalf("pooling: %d %s", resp.StatusCode, data)
	}
	return pr.Data[0].Data[0]
}

func TestPoolingVersions(t *testing.T) {
	const answer = "[q=1.5 id=0a] an answer"
	tests := []struct {
		version   string
		fields    map[string]any
		activated bool
	}{
		{"0.12.0", map[string]any{"use_activation": false}, false},
		{"0.12.0", map[string]any{}, true},
		{"0.12.0", map[string]any{"use_activation": false, "activation": false}, true},
		{"0.11.1", map[string]any{"use_activation": false}, false},
		{"0.11.1rc1", map[string]any{"use_activation": false}, true},
		{"0.11.0", map[string]any{"activation": false}, false},
		{"0.10.0", map[string]any{"activation": false}, true},
		{"0.9.2", map[string]any{"softmax": false}, false},
		{"main", map[string]any{"use_activation": false}, false}, // behaves as the current version
	}
	for _, tt := range tests {
		s, ts := newTest(t, Options{VLLMVersion: tt.version, RewardNoise: -1})
		body := map[string]any{"task": "classify", "messages": msgs("user", "q", "assistant", answer)}
		for k, v := range tt.fields {
			body[k] = v
		}
		want := s.Reward(answer)
		if tt.activated {
			want = bf16(sigmoid(want))
		}
		if got := poolingScore(t, ts.URL, body); got != want {
			t.Errorf("vLLM %s, %v: score %v, want %v", tt.version, tt.fields, got, want)
		}
	}
}

func TestPoolingGenerationPrompt(t *testing.T) {
	const answer = "[q=2.5 id=0b] an answer"
	s, ts := newTest(t, Options{RewardNoise: -1})
	body := func(addGen any) map[string]any {
		b := map[string]any{"task": "classify", "use_activation": false, "messages": msgs("user", "q", "assistant", answer)}
		if addGen != nil {
			b["add_generation_prompt"] = addGen
		}
		return b
	}
	for _, addGen := range []any{nil, false} {
		if got := poolingScore(t, ts.URL, body(addGen)); got != s.Reward(answer) {
			t.Errorf("add_generation_prompt %v: score %v, want %v", addGen, got, s.Reward(answer))
		}
	}
	// With the generation prompt the score is read after an empty turn: the
	// score of a text with no marker.
	emptyTurn := func(got float64) bool { return got >= -4 && got < -2 && math.Abs(got-s.Reward(answer)) >= 1 }
	if got := poolingScore(t, ts.URL, body(true)); !emptyTurn(got) {
		t.Errorf("add_generation_prompt true: score %v, want one of an empty turn, in [-4, -2)", got)
	}
	// A very old vLLM added it when the request did not say: only an
	// explicit false reads the answer's score.
	_, old := newTest(t, Options{RewardNoise: -1, PoolingGenerationPrompt: true})
	if got := poolingScore(t, old.URL, body(nil)); !emptyTurn(got) {
		t.Errorf("PoolingGenerationPrompt, add_generation_prompt unset: score %v, want one of an empty turn", got)
	}
	if got := poolingScore(t, old.URL, body(false)); got != s.Reward(answer) {
		t.Errorf("PoolingGenerationPrompt, add_generation_prompt false: score %v, want %v", got, s.Reward(answer))
	}
}

func TestClassifyRefusesTokenIDs(t *testing.T) {
	_, ts := newTest(t, Options{RefuseTokenIDs: true})
	for _, tt := range []struct {
		input any
		want  int
	}{
		{[][]int{{1, 2, 3}}, 400},
		{[]int{1, 2, 3}, 400},
		{"<|user|>q<|assistant|>[q=1 id=0c] a", 200},
		{[]string{"<|user|>q<|assistant|>[q=1 id=0c] a"}, 200},
	} {
		resp, data := post(t, nil, ts.URL+EndpointClassify, map[string]any{"input": tt.input, "use_activation": false})
		if resp.StatusCode != tt.want {
			t.Errorf("input %v: %d %s, want %d", tt.input, resp.StatusCode, data, tt.want)
		}
		if tt.want == 400 && !strings.Contains(string(data), "Input should be a valid string") {
			t.Errorf("input %v: %s, want pydantic's message", tt.input, data)
		}
	}
}

func TestPoolingTaskIgnoredBeforeUseActivation(t *testing.T) {
	body := map[string]any{"task": "embed", "use_activation": false, "messages": msgs("user", "q", "assistant", "x")}
	_, old := newTest(t, Options{VLLMVersion: "0.10.1"})
	if resp, data := post(t, nil, old.URL+EndpointPooling, body); resp.StatusCode != 200 {
		t.Errorf("vLLM 0.10.1, task embed: %d %s, want 200 (task ignored)", resp.StatusCode, data)
	}
	_, cur := newTest(t, Options{})
	if resp, _ := post(t, nil, cur.URL+EndpointPooling, body); resp.StatusCode != 400 {
		t.Errorf("current vLLM, task embed: %d, want 400", resp.StatusCode)
	}
}
