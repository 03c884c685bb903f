package tpotest

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
)

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestVLLMRewardServerActivation(t *testing.T) {
	const msgs = `[{"role":"user","content":"q"},{"role":"assistant","content":"good"}]`
	raw := LastReplyReward([]tpo.Message{{Role: "assistant", Content: "good"}}) // 1.1
	tests := []struct {
		name   string
		old    bool
		field  string
		wantSg bool
	}{
		{"absent", false, ``, true},
		{"true", false, `,"use_activation":true`, true},
		{"false", false, `,"use_activation":false`, false},
		{"false on old vLLM", true, `,"use_activation":false`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewVLLMRewardServer(t, VLLMRewardOptions{IgnoreUseActivation: tt.old})
			status, body := post(t, s.URL+"/pooling", `{"task":"classify","messages":`+msgs+tt.field+`}`)
			if status != 200 {
				t.Fatalf("status %d: %s", status, body)
			}
			var r struct {
				Data []struct {
					Data []float64 `json:"data"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(body), &r); err != nil || len(r.Data) != 1 || len(r.Data[0].Data) != 1 {
				t.Fatalf("body %s: %v", body, err)
			}
			want := raw
			if tt.wantSg {
				want = 1 / (1 + math.Exp(-raw))
			}
			if got := r.Data[0].Data[0]; math.Abs(got-want) > 1e-12 {
				t.Errorf("score = %v, want %v", got, want)
			}
		})
	}
}

func TestVLLMRewardServerTokenize(t *testing.T) {
	s := NewVLLMRewardServer(t, VLLMRewardOptions{MaxModelLen: 100})
	status, body := post(t, s.URL+"/tokenize", `{"messages":[{"role":"user","content":"hi"}],"add_generation_prompt":false}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	ids := TokenIDs("<|user|>\nhi<|end|>\n")
	wantIDs, _ := json.Marshal(ids)
	var r struct {
		Count       int   `json:"count"`
		MaxModelLen int   `json:"max_model_len"`
		Tokens      []int `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	gotIDs, _ := json.Marshal(r.Tokens)
	if string(gotIDs) != string(wantIDs) || r.Count != len(ids) || r.MaxModelLen != 100 {
		t.Errorf("tokenize = %s, want tokens %s, count %d, max_model_len 100", body, wantIDs, len(ids))
	}
	// /classify refuses ids that /tokenize did not produce.
	status, body = post(t, s.URL+"/classify", `{"input":[[1,2,3]]}`)
	if status != 400 || !strings.Contains(body, "not produced by /tokenize") {
		t.Errorf("classify of unknown ids: %d %s, want a 400", status, body)
	}
	if n := s.Count("/tokenize"); n != 1 {
		t.Errorf("Count(/tokenize) = %d, want 1", n)
	}
}

func TestTEIServerShapes(t *testing.T) {
	s := NewTEIServer(t, TEIOptions{MaxBatch: 2})
	// A single pair gets a flat list; a sigmoid without raw_scores.
	status, body := post(t, s.URL+"/predict", `{"inputs":["q","good"]}`)
	want := 1 / (1 + math.Exp(-TextReward("good")))
	var single []struct {
		Score float64 `json:"score"`
		Label string  `json:"label"`
	}
	if err := json.Unmarshal([]byte(body), &single); status != 200 || err != nil || len(single) != 1 ||
		math.Abs(single[0].Score-want) > 1e-12 || single[0].Label != "LABEL_0" {
		t.Errorf("single pair: %d %s, want [{score %v, LABEL_0}]", status, body, want)
	}
	// A batch gets nested lists of raw scores.
	status, body = post(t, s.URL+"/predict", `{"inputs":[["q","a b"],["q","bad"]],"raw_scores":true}`)
	var batch [][]struct {
		Score float64 `json:"score"`
	}
	if err := json.Unmarshal([]byte(body), &batch); status != 200 || err != nil || len(batch) != 2 ||
		batch[0][0].Score != TextReward("a b") || batch[1][0].Score != TextReward("bad") {
		t.Errorf("batch: %d %s", status, body)
	}
	// Beyond the batch limit: TEI's 413.
	status, body = post(t, s.URL+"/predict", `{"inputs":[["q","a"],["q","b"],["q","c"]]}`)
	if status != 413 || body != `{"error":"batch size 3 > maximum allowed batch size 2","error_type":"validation"}`+"\n" {
		t.Errorf("over the limit: %d %q", status, body)
	}
}

func TestTEIServerLabelsSorted(t *testing.T) {
	s := NewTEIServer(t, TEIOptions{Labels: []string{"LABEL_0", "LABEL_1", "LABEL_2"},
		Reward: func(_, _ string) float64 { return 0 }})
	_, body := post(t, s.URL+"/predict", `{"inputs":[["q","r"]],"raw_scores":true}`)
	want := `[[{"score":0,"label":"LABEL_0"},{"score":-1,"label":"LABEL_1"},{"score":-2,"label":"LABEL_2"}]]` + "\n"
	if body != want {
		t.Errorf("body = %s, want %s", body, want)
	}
}
