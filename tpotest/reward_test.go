package tpotest

import (
	"encoding/json"
	"fmt"
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

func TestVLLMRewardServerVersions(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"good"}]`
	raw := TextReward("good")
	sig := 1 / (1 + math.Exp(-raw))
	tests := []struct {
		version string
		fields  string
		want    float64
	}{
		{"0.10.1", `"use_activation":false`, sig},
		{"0.10.1", `"activation":false`, raw},
		{"0.10.0", `"activation":false`, sig},
		{"0.9.2", `"softmax":false`, raw},
		{"0.11.1rc2", `"use_activation":false`, sig},
		{"0.11.1", `"use_activation":false`, raw},
		{"0.11.1", `"use_activation":false,"activation":false`, sig},
		{"0.12.0", `"use_activation":false`, raw},
		{"0.12.0", `"use_activation":true`, sig},
		{"0.12.0", `"softmax":false`, sig},
	}
	for _, tt := range tests {
		t.Run(tt.version+" "+tt.fields, func(t *testing.T) {
			s := NewVLLMRewardServer(t, VLLMRewardOptions{Version: tt.version})
			if status, body := get(t, s.URL+"/version"); status != 200 || body != `{"version":"`+tt.version+`"}`+"\n" {
				t.Errorf("GET /version = %d %s", status, body)
			}
			for _, path := range []string{"/pooling", "/classify"} {
				var got float64
				if path == "/pooling" {
					got = poolingScore(t, s, `{"task":"classify",`+msgs+`,`+tt.fields+`}`)
				} else {
					got = classifyScore(t, s, msgs, tt.fields)
				}
				if math.Abs(got-tt.want) > 1e-12 {
					t.Errorf("%s score = %v, want %v", path, got, tt.want)
				}
			}
		})
	}
	hidden := NewVLLMRewardServer(t, VLLMRewardOptions{HideVersion: true})
	if status, _ := get(t, hidden.URL+"/version"); status != 404 {
		t.Errorf("GET /version with HideVersion = %d, want 404", status)
	}
}

// poolingScore posts body to /pooling and returns the score.
func poolingScore(t *testing.T, s *VLLMRewardServer, body string) float64 {
	t.Helper()
	status, resp := post(t, s.URL+"/pooling", body)
	var r struct {
		Data []struct {
			Data []float64 `json:"data"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(resp), &r); status != 200 || err != nil || len(r.Data) != 1 || len(r.Data[0].Data) != 1 {
		t.Fatalf("/pooling: %d %s (%v)", status, resp, err)
	}
	return r.Data[0].Data[0]
}

// classifyScore tokenizes msgs and classifies the ids with fields.
func classifyScore(t *testing.T, s *VLLMRewardServer, msgs, fields string) float64 {
	t.Helper()
	status, resp := post(t, s.URL+"/tokenize", `{`+msgs+`,"add_generation_prompt":false}`)
	var tok struct {
		Tokens []int `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(resp), &tok); status != 200 || err != nil {
		t.Fatalf("/tokenize: %d %s", status, resp)
	}
	ids, _ := json.Marshal([][]int{tok.Tokens})
	status, resp = post(t, s.URL+"/classify", `{"input":`+string(ids)+`,`+fields+`}`)
	var r struct {
		Data []struct {
			Probs []float64 `json:"probs"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(resp), &r); status != 200 || err != nil || len(r.Data) != 1 {
		t.Fatalf("/classify: %d %s", status, resp)
	}
	return r.Data[0].Probs[0]
}

func TestVLLMRewardServerBF16(t *testing.T) {
	s := NewVLLMRewardServer(t, VLLMRewardOptions{BF16: true, Reward: func([]tpo.Message) float64 { return 7 }})
	const msgs = `"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]`
	if got := poolingScore(t, s, `{"task":"classify",`+msgs+`}`); got != 1 {
		t.Errorf("sigmoid(7) in bf16 = %v, want exactly 1", got)
	}
	if got := poolingScore(t, s, `{"task":"classify",`+msgs+`,"use_activation":false}`); got != 7 {
		t.Errorf("raw score = %v, want 7 (not rounded)", got)
	}
}

func TestVLLMRewardServerRefuseTokenIDs(t *testing.T) {
	s := NewVLLMRewardServer(t, VLLMRewardOptions{RefuseTokenIDs: true})
	status, body := post(t, s.URL+"/classify", `{"input":[[1,2,3]],"use_activation":false}`)
	var e struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    int    `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); status != 400 || err != nil ||
		!strings.Contains(e.Error.Message, "Input should be a valid string") || e.Error.Code != 400 {
		t.Errorf("/classify with token ids: %d %s, want vLLM's 400 with pydantic's message", status, body)
	}
	// /pooling still works.
	const msgs = `"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"good"}]`
	if got := poolingScore(t, s, `{"task":"classify",`+msgs+`,"use_activation":false}`); got != TextReward("good") {
		t.Errorf("/pooling score = %v", got)
	}
}

func TestVLLMRewardServerGenerationPrompt(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"good"}]`
	good, empty := TextReward("good"), TextReward("")
	tests := []struct {
		name  string
		old   bool
		field string
		want  float64
	}{
		{"current, absent", false, ``, good},
		{"current, false", false, `,"add_generation_prompt":false`, good},
		{"current, true", false, `,"add_generation_prompt":true`, empty},
		{"very old, absent", true, ``, empty},
		{"very old, false", true, `,"add_generation_prompt":false`, good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewVLLMRewardServer(t, VLLMRewardOptions{PoolingGenerationPrompt: tt.old})
			if got := poolingScore(t, s, `{"task":"classify","use_activation":false,`+msgs+tt.field+`}`); got != tt.want {
				t.Errorf("score = %v, want %v", got, tt.want)
			}
		})
	}
	// /tokenize adds the generation prompt unless told not to, and
	// /classify then scores the empty turn after it.
	s := NewVLLMRewardServer(t, VLLMRewardOptions{})
	status, resp := post(t, s.URL+"/tokenize", `{`+msgs+`}`)
	var tok struct {
		Tokens []int `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(resp), &tok); status != 200 || err != nil {
		t.Fatalf("/tokenize: %d %s", status, resp)
	}
	ids, _ := json.Marshal([][]int{tok.Tokens})
	status, resp = post(t, s.URL+"/classify", `{"input":`+string(ids)+`,"use_activation":false}`)
	if status != 200 || !strings.Contains(resp, fmt.Sprintf(`"probs":[%v]`, empty)) {
		t.Errorf("/classify of a rendering with the generation prompt: %d %s, want score %v", status, resp, empty)
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
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
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

func TestTEIServerVersions(t *testing.T) {
	long := strings.TrimSpace(strings.Repeat("good ", 10)) // 3+1+10 = 14 tokens with the prompt "q"
	tests := []struct {
		version      string
		invalid      int  // status of validation errors
		autoTruncate bool // truncate when the request does not say
	}{
		{"1.8.3", 413, false},
		{"1.2.3", 413, false},
		{"1.9.0", 422, true},
		{"1.9.3", 422, true},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			s := NewTEIServer(t, TEIOptions{MaxBatch: 2, Version: tt.version, MaxInputLength: 10})
			status, body := post(t, s.URL+"/predict", `{"inputs":[["q","a"],["q","b"],["q","c"]]}`)
			if want := `{"error":"batch size 3 > maximum allowed batch size 2","error_type":"Validation"}` + "\n"; status != tt.invalid || body != want {
				t.Errorf("over the batch limit: %d %q, want %d %q", status, body, tt.invalid, want)
			}
			tooLong := `{"error":"Input validation error: ` + "`inputs`" + ` must have less than 10 tokens. Given: 14","error_type":"Validation"}` + "\n"
			status, body = post(t, s.URL+"/predict", `{"inputs":[["q","a"],["q","`+long+`"]],"raw_scores":true,"truncate":false}`)
			if status != tt.invalid || body != tooLong {
				t.Errorf("too long, truncate false: %d %q, want %d %q", status, body, tt.invalid, tooLong)
			}
			// Truncated: 6 words of the response are left (3 + 1 + 6 = 10).
			truncated := fmt.Sprintf(`[[{"score":%v,"label":"LABEL_0"}]]`, TextReward(strings.Repeat("good ", 6))) + "\n"
			status, body = post(t, s.URL+"/predict", `{"inputs":[["q","`+long+`"]],"raw_scores":true,"truncate":true}`)
			if status != 200 || body != truncated {
				t.Errorf("too long, truncate true: %d %q, want 200 %q", status, body, truncated)
			}
			status, body = post(t, s.URL+"/predict", `{"inputs":[["q","`+long+`"]],"raw_scores":true}`)
			if tt.autoTruncate && (status != 200 || body != truncated) {
				t.Errorf("too long, truncate absent: %d %q, want it truncated", status, body)
			}
			if !tt.autoTruncate && (status != tt.invalid || body != tooLong) {
				t.Errorf("too long, truncate absent: %d %q, want it refused", status, body)
			}

			status, body = get(t, s.URL+"/info")
			var info struct {
				ModelID            string `json:"model_id"`
				MaxInputLength     int    `json:"max_input_length"`
				MaxClientBatchSize int    `json:"max_client_batch_size"`
				AutoTruncate       bool   `json:"auto_truncate"`
				Version            string `json:"version"`
				ModelType          struct {
					Classifier *struct {
						ID2Label map[string]string `json:"id2label"`
					} `json:"classifier"`
				} `json:"model_type"`
			}
			if err := json.Unmarshal([]byte(body), &info); status != 200 || err != nil || info.ModelID == "" ||
				info.MaxInputLength != 10 || info.MaxClientBatchSize != 2 || info.AutoTruncate != tt.autoTruncate ||
				info.Version != tt.version || info.ModelType.Classifier == nil || info.ModelType.Classifier.ID2Label["0"] != "LABEL_0" {
				t.Errorf("/info: %d %s", status, body)
			}
		})
	}
}

func TestTEIServerPayloadLimit(t *testing.T) {
	s := NewTEIServer(t, TEIOptions{PayloadLimit: 40})
	if status, body := post(t, s.URL+"/predict", `{"inputs":[["q","a"]]}`); status != 200 {
		t.Errorf("small body: %d %s", status, body)
	}
	status, body := post(t, s.URL+"/predict", `{"inputs":[["q","a"],["q","b"],["q","c"]],"raw_scores":true}`)
	if status != 413 || body != "Failed to buffer the request body: length limit exceeded" {
		t.Errorf("large body: %d %q, want axum's plain-text 413", status, body)
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
