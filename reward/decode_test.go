package reward

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestSigmoidSuspected(t *testing.T) {
	tests := []struct {
		scores []float64
		want   bool
	}{
		{nil, false},
		{[]float64{0.5}, true},
		{[]float64{0.99, 0.01, 0.7}, true},
		{[]float64{0.99, 1}, true}, // bf16 rounds a sigmoid above about +6 to exactly 1
		{[]float64{1, 1, 1}, true},
		{[]float64{0, 0.5}, true},
		{[]float64{0}, true},
		{[]float64{1.0000001, 0.5}, false},
		{[]float64{-0.0000001, 0.5}, false},
		{[]float64{0.5, -0.2}, false},
		{[]float64{3.4}, false},
		{[]float64{math.NaN()}, false},
	}
	for _, tt := range tests {
		if got := SigmoidSuspected(tt.scores); got != tt.want {
			t.Errorf("SigmoidSuspected(%v) = %v, want %v", tt.scores, got, tt.want)
		}
	}
}

func TestDecodeClassify(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		n       int
		want    []float64
		wantErr string
	}{
		{"in order", `{"data":[{"index":0,"label":"LABEL_0","probs":[3.41],"num_classes":1},{"index":1,"probs":[-0.5]}]}`, 2, []float64{3.41, -0.5}, ""},
		{"out of order", `{"data":[{"index":2,"probs":[2]},{"index":0,"probs":[0]},{"index":1,"probs":[1]}]}`, 3, []float64{0, 1, 2}, ""},
		{"several classes", `{"data":[{"index":0,"probs":[1.5,-1.5]}]}`, 1, []float64{1.5}, ""},
		{"too few", `{"data":[{"index":0,"probs":[1]}]}`, 2, nil, "1 results for 2 inputs"},
		{"duplicate index", `{"data":[{"index":0,"probs":[1]},{"index":0,"probs":[2]}]}`, 2, nil, "index 0 twice"},
		{"index out of range", `{"data":[{"index":5,"probs":[1]}]}`, 1, nil, "index 5"},
		{"negative index", `{"data":[{"index":-1,"probs":[1]}]}`, 1, nil, "index -1"},
		{"no index", `{"data":[{"probs":[1]}]}`, 1, nil, "no index"},
		{"no probs", `{"data":[{"index":0,"probs":[]}]}`, 1, nil, "no probs"},
		{"null prob", `{"data":[{"index":0,"probs":[null]}]}`, 1, nil, "no probs"},
		{"not json", `<html>`, 1, nil, "decoding /classify response"},
		{"wrong type", `{"data":[{"index":"0","probs":[1]}]}`, 1, nil, "decoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeClassify([]byte(tt.body), tt.n)
			checkResult(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestDecodePooling(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		tokenLevel bool
		want       float64
		wantErr    string
	}{
		{"classify", `{"data":[{"index":0,"object":"pooling","data":[3.41]}]}`, false, 3.41, ""},
		{"classify two classes", `{"data":[{"index":0,"data":[-1.25,7]}]}`, false, -1.25, ""},
		{"bare number", `{"data":[{"index":0,"data":2.5}]}`, false, 2.5, ""},
		{"one row", `{"data":[{"index":0,"data":[[0.75]]}]}`, false, 0.75, ""},
		{"token rows", `{"data":[{"index":0,"data":[[0.1],[0.2],[-4.5]]}]}`, true, -4.5, ""},
		{"token flat", `{"data":[{"index":0,"data":[0.1,0.2,6]}]}`, true, 6, ""},
		{"token rows without token level", `{"data":[{"index":0,"data":[[0.1],[0.2]]}]}`, false, 0, "per-token values"},
		{"empty", `{"data":[]}`, false, 0, "no data"},
		{"null data", `{"data":[{"index":0,"data":null}]}`, false, 0, "no data"},
		{"empty list", `{"data":[{"index":0,"data":[]}]}`, false, 0, "empty list"},
		{"empty row", `{"data":[{"index":0,"data":[[]]}]}`, true, 0, "empty list"},
		{"base64", `{"data":[{"index":0,"data":"AAAA"}]}`, false, 0, "base64"},
		{"string in list", `{"data":[{"index":0,"data":["x"]}]}`, false, 0, "non-number"},
		{"null in list", `{"data":[{"index":0,"data":[null]}]}`, false, 0, "non-number"},
		{"object", `{"data":[{"index":0,"data":{"a":1}}]}`, false, 0, "neither a number nor a list"},
		{"not json", `oops`, false, 0, "decoding /pooling"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodePooling([]byte(tt.body), tt.tokenLevel)
			var want []float64
			if tt.wantErr == "" {
				want = []float64{tt.want}
			}
			var gotSlice []float64
			if err == nil {
				gotSlice = []float64{got}
			}
			checkResult(t, gotSlice, err, want, tt.wantErr)
		})
	}
}

func TestDecodePredict(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		n       int
		label   string
		want    []float64
		wantErr string
	}{
		{"batch", `[[{"score":2.71,"label":"LABEL_0"}],[{"score":-0.33,"label":"LABEL_0"}]]`, 2, "", []float64{2.71, -0.33}, ""},
		{"single unwrapped", `[{"score":1.5,"label":"LABEL_0"}]`, 1, "", []float64{1.5}, ""},
		{"only entry, any label", `[[{"score":1.5,"label":"reward"}]]`, 1, "", []float64{1.5}, ""},
		{"multi label sorted by score picks LABEL_0", `[[{"score":3,"label":"LABEL_1"},{"score":-2,"label":"LABEL_0"}]]`, 1, "", []float64{-2}, ""},
		{"label name", `[[{"score":3,"label":"good"},{"score":-2,"label":"bad"}]]`, 1, "good", []float64{3}, ""},
		{"label name missing", `[[{"score":3,"label":"good"}]]`, 1, "helpful", nil, `no label "helpful" among "good"`},
		{"multi label without LABEL_0", `[[{"score":3,"label":"pos"},{"score":-2,"label":"neg"}]]`, 1, "", nil, "choose one with a label name"},
		{"wrong count", `[[{"score":1,"label":"LABEL_0"}]]`, 2, "", nil, "1 results for 2 inputs"},
		{"unwrapped for two", `[{"score":1,"label":"LABEL_0"}]`, 2, "", nil, "decoding /predict"},
		{"empty predictions", `[[]]`, 1, "", nil, "no predictions"},
		{"no score", `[[{"label":"LABEL_0"}]]`, 1, "", nil, "has no score"},
		{"not json", `{"error":"x"}`, 1, "", nil, "decoding /predict"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodePredict([]byte(tt.body), tt.n, tt.label)
			checkResult(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestDecodeExecOutput(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		n       int
		want    []float64
		wantErr string
	}{
		{"ok", "[1, -2.5, 3e2]\n", 3, []float64{1, -2.5, 300}, ""},
		{"empty array", "[]", 0, []float64{}, ""},
		{"nothing", "  \n", 1, nil, "printed nothing"},
		{"not json", "score: 1", 1, nil, "not a JSON array"},
		{"object", `{"scores":[1]}`, 1, nil, "not a JSON array"},
		{"wrong length", "[1,2]", 3, nil, "2 numbers for 3 responses"},
		{"string", `[1,"2"]`, 2, nil, "element 1 is not a number"},
		{"null", `[null]`, 1, nil, "element 0 is not a number"},
		{"bool", `[1,true]`, 2, nil, "element 1 is not a number"},
		{"nested", `[[1]]`, 1, nil, "element 0 is not a number"},
		{"overflow", `[1e999]`, 1, nil, "element 0 is not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeExecOutput([]byte(tt.out), tt.n)
			checkResult(t, got, err, tt.want, tt.wantErr)
		})
	}
}

// checkResult compares a decoder's result with the wanted scores or error.
func checkResult(t *testing.T, got []float64, err error, want []float64, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil {
			t.Fatalf("got %v, want an error containing %q", got, wantErr)
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error %q does not contain %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func FuzzDecodeClassify(f *testing.F) {
	f.Add([]byte(`{"data":[{"index":1,"probs":[1]},{"index":0,"probs":[2]}]}`), 2)
	f.Add([]byte(`{"data":[{"index":0,"probs":[null]}]}`), 1)
	f.Add([]byte(`{"data":null}`), 0)
	f.Add([]byte(`[]`), 3)
	f.Fuzz(func(t *testing.T, body []byte, n int) {
		if n < 0 || n > 1000 {
			return
		}
		got, err := decodeClassify(body, n)
		if err == nil && len(got) != n {
			t.Fatalf("got %d scores for %d inputs", len(got), n)
		}
		for _, v := range got {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("non-finite score %v", v)
			}
		}
	})
}

func FuzzDecodePooling(f *testing.F) {
	f.Add([]byte(`{"data":[{"index":0,"data":[3.41]}]}`), false)
	f.Add([]byte(`{"data":[{"index":0,"data":[[0.1],[2]]}]}`), true)
	f.Add([]byte(`{"data":[{"index":0,"data":[[]]}]}`), true)
	f.Add([]byte(`{"data":[{"data":[[null]]}]}`), false)
	f.Add([]byte(`{"data":[{"data":"abc"}]}`), false)
	f.Fuzz(func(t *testing.T, body []byte, tokenLevel bool) {
		v, err := decodePooling(body, tokenLevel)
		if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("non-finite score %v", v)
		}
	})
}

func FuzzDecodePredict(f *testing.F) {
	f.Add([]byte(`[[{"score":2.71,"label":"LABEL_0"}],[{"score":-0.33,"label":"LABEL_0"}]]`), 2, "")
	f.Add([]byte(`[{"score":1,"label":"x"},{"score":0,"label":"LABEL_0"}]`), 1, "")
	f.Add([]byte(`[[{"score":1,"label":"good"}]]`), 1, "good")
	f.Add([]byte(`[[]]`), 1, "")
	f.Fuzz(func(t *testing.T, body []byte, n int, label string) {
		if n < 0 || n > 1000 {
			return
		}
		got, err := decodePredict(body, n, label)
		if err == nil && len(got) != n {
			t.Fatalf("got %d scores for %d inputs", len(got), n)
		}
	})
}

func FuzzDecodeExecOutput(f *testing.F) {
	f.Add([]byte("[1,2,3]"), 3)
	f.Add([]byte(`[1,"x"]`), 2)
	f.Add([]byte(``), 0)
	f.Add([]byte(`[1e400]`), 1)
	f.Fuzz(func(t *testing.T, out []byte, n int) {
		if n < 0 || n > 1000 {
			return
		}
		got, err := decodeExecOutput(out, n)
		if err == nil && len(got) != n {
			t.Fatalf("got %d scores for %d responses", len(got), n)
		}
	})
}

func TestDecodeVersion(t *testing.T) {
	tests := []struct {
		body    string
		want    string
		wantErr string
	}{
		{`{"version":"0.11.1"}`, "0.11.1", ""},
		{`{"version": "0.12.0+cu128"}`, "0.12.0+cu128", ""},
		{`{"version":"0.11.1.dev123+gabcdef"}`, "0.11.1.dev123+gabcdef", ""},
		{`{"version":"main"}`, "", "not a PEP 440 version"},
		{`{"version":null}`, "", "no version"},
		{`{}`, "", "no version"},
		{`{"version":11}`, "", `answered {"version":11}, not`},
		{`<html>`, "", "answered <html>, not"},
	}
	for _, tt := range tests {
		v, err := decodeVersion([]byte(tt.body))
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("decodeVersion(%s) error = %v, want one containing %q", tt.body, err, tt.wantErr)
		case tt.wantErr == "" && err != nil:
			t.Errorf("decodeVersion(%s): %v", tt.body, err)
		case tt.wantErr == "" && v.String() != tt.want:
			t.Errorf("decodeVersion(%s) = %s, want %s", tt.body, v, tt.want)
		}
	}
}

func FuzzDecodeVersion(f *testing.F) {
	f.Add([]byte(`{"version":"0.11.1"}`))
	f.Add([]byte(`{"version":"0.11.1rc2"}`))
	f.Add([]byte(`{"version":"0.6.3.post1+cu124"}`))
	f.Add([]byte(`{"version":"v1!2"}`))
	f.Add([]byte(`{"version":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := decodeVersion(body)
		if err == nil && len(v.Release) == 0 {
			t.Fatalf("decodeVersion(%q) = a version without a release", body)
		}
	})
}

func TestParseTEIRefusal(t *testing.T) {
	tests := []struct {
		msg  string
		want teiRefusal
		desc string
	}{
		{"batch size 64 > maximum allowed batch size 32", teiRefusal{kind: refusedBatch, given: 64, limit: 32}, ""},
		{"Input validation error: `inputs` must have less than 512 tokens. Given: 600",
			teiRefusal{kind: refusedTooLong, limit: 512, given: 600, unit: "tokens"}, "600 tokens, the limit is 512"},
		{"Input validation error: `inputs` must have less than 2048 characters. Given: 3000",
			teiRefusal{kind: refusedTooLong, limit: 2048, given: 3000, unit: "characters"}, "3000 characters, the limit is 2048"},
		{"inputs must have less than 512 tokens", teiRefusal{kind: refusedTooLong, limit: 512, unit: "tokens"}, "the limit is 512 tokens"},
		{"must have less than 99999999999999999999999 tokens. Given: 1", teiRefusal{kind: refusedTooLong, given: 1, unit: "tokens"}, "over its limit"},
		{"Failed to buffer the request body: length limit exceeded", teiRefusal{}, ""},
		{"Model is overloaded", teiRefusal{}, ""},
		{"", teiRefusal{}, ""},
	}
	for _, tt := range tests {
		got := parseTEIRefusal(tt.msg)
		if got != tt.want {
			t.Errorf("parseTEIRefusal(%q) = %+v, want %+v", tt.msg, got, tt.want)
		}
		if tt.desc != "" && got.String() != tt.desc {
			t.Errorf("parseTEIRefusal(%q).String() = %q, want %q", tt.msg, got, tt.desc)
		}
	}
}

func FuzzParseTEIRefusal(f *testing.F) {
	f.Add("batch size 64 > maximum allowed batch size 32")
	f.Add("Input validation error: `inputs` must have less than 512 tokens. Given: 600")
	f.Add("must have less than 1 characters. Given: 99999999999999999999")
	f.Fuzz(func(t *testing.T, msg string) {
		r := parseTEIRefusal(msg)
		if r.limit < 0 || r.given < 0 {
			t.Fatalf("parseTEIRefusal(%q) = %+v: negative number", msg, r)
		}
		if r.kind == refusedOther && r != (teiRefusal{}) {
			t.Fatalf("parseTEIRefusal(%q) = %+v: fields without a kind", msg, r)
		}
		_ = r.String()
	})
}

const teiInfoBody = `{"model_id":"OpenAssistant/reward-model-deberta-v3-large-v2","model_sha":null,"model_dtype":"float16",` +
	`"model_type":{"classifier":{"id2label":{"0":"LABEL_0"},"label2id":{"LABEL_0":0}}},"max_concurrent_requests":512,` +
	`"max_input_length":512,"max_batch_tokens":16384,"max_batch_requests":null,"max_client_batch_size":32,` +
	`"auto_truncate":true,"tokenization_workers":4,"version":"1.9.3","sha":null,"docker_label":null}`

func TestDecodeTEIInfo(t *testing.T) {
	got, err := decodeTEIInfo([]byte(teiInfoBody))
	want := teiInfo{ModelID: "OpenAssistant/reward-model-deberta-v3-large-v2", ModelType: "classifier", MaxInputLength: 512,
		MaxClientBatchSize: 32, AutoTruncate: true, Version: "1.9.3"}
	if err != nil || got != want {
		t.Errorf("decodeTEIInfo = %+v, %v; want %+v", got, err, want)
	}
	for _, tt := range []struct{ body, wantErr string }{
		{`{"detail":"Not Found"}`, "not a text-embeddings-inference server"},
		{`[]`, "not a text-embeddings-inference server"},
		{strings.Replace(teiInfoBody, `"max_client_batch_size":32`, `"max_client_batch_size":0`, 1), "max_client_batch_size is 0"},
		{strings.Replace(teiInfoBody, `"version":"1.9.3"`, `"v":"1.9.3"`, 1), "without model_id"},
		{strings.Replace(teiInfoBody, `"classifier"`, `"embedding"`, 1), `type "embedding"`},
	} {
		if _, err := decodeTEIInfo([]byte(tt.body)); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("decodeTEIInfo(%s) error = %v, want one containing %q", tt.body, err, tt.wantErr)
		}
	}
}

func FuzzDecodeTEIInfo(f *testing.F) {
	f.Add([]byte(teiInfoBody))
	f.Add([]byte(`{"model_id":"m","model_type":{"reranker":{}},"max_client_batch_size":1,"version":""}`))
	f.Add([]byte(`{"model_id":"m","model_type":{},"max_client_batch_size":-1,"version":"1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		info, err := decodeTEIInfo(body)
		if err == nil && (info.MaxClientBatchSize < 1 || (info.ModelType != "classifier" && info.ModelType != "reranker")) {
			t.Fatalf("decodeTEIInfo(%q) = %+v without an error", body, info)
		}
	})
}
