package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// newTest starts a server behind a loopback HTTP server. TimeScale defaults
// to 1e-5 (a simulated second takes 10µs).
func newTest(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	if opts.TimeScale == 0 {
		opts.TimeScale = 1e-5
	}
	s := New(opts)
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return s, ts
}

// post sends a JSON body and returns the response with its body read.
func post(t *testing.T, client *http.Client, url string, body any) (*http.Response, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading the body: %v", url, err)
	}
	return resp, data
}

func msgs(pairs ...string) []chatMessage {
	var m []chatMessage
	for i := 0; i+1 < len(pairs); i += 2 {
		m = append(m, chatMessage{Role: pairs[i], Content: pairs[i+1]})
	}
	return m
}

type chatReq struct {
	Model       string        `json:"model,omitempty"`
	Messages    []chatMessage `json:"messages"`
	N           int           `json:"n,omitempty"`
	Seed        *int64        `json:"seed,omitempty"`
	MaxTokens   int           `json:"max_tokens,omitempty"`
	Temperature *float64      `json:"temperature,omitempty"`
}

func ptr[T any](v T) *T { return &v }

// chat sends a chat request that must succeed.
func chat(t *testing.T, ts *httptest.Server, req chatReq) chatResponse {
	t.Helper()
	resp, body := post(t, nil, ts.URL+EndpointChat, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat: status %d: %s", resp.StatusCode, body)
	}
	var cr chatResponse
	if err := json.Unmarshal(body, &cr); err != nil {
		t.Fatalf("chat: decoding %s: %v", body, err)
	}
	return cr
}

func texts(cr chatResponse) []string {
	var out []string
	for _, c := range cr.Choices {
		out = append(out, c.Message.Content)
	}
	return out
}

func TestChatN(t *testing.T) {
	_, ts := newTest(t, Options{Seed: 1})
	cr := chat(t, ts, chatReq{Messages: msgs("user", "What is TPO?"), N: 5, Seed: ptr[int64](7), Temperature: ptr(0.7)})
	if len(cr.Choices) != 5 {
		t.Fatalf("got %d choices, want 5", len(cr.Choices))
	}
	seen := make(map[string]bool)
	ids := make(map[string]bool)
	completion := 0
	for i, c := range cr.Choices {
		if c.Index != i {
			t.Errorf("choice %d has index %d", i, c.Index)
		}
		if c.Message.Role != "assistant" || c.FinishReason != "stop" {
			t.Errorf("choice %d: role %q finish %q, want assistant, stop", i, c.Message.Role, c.FinishReason)
		}
		seen[c.Message.Content] = true
		m := ParseMarkers(c.Message.Content)
		if len(m.Responses) != 1 || !strings.HasPrefix(c.Message.Content, "[q=") {
			t.Errorf("choice %d does not start with one response marker: %.60q", i, c.Message.Content)
			continue
		}
		ids[m.Responses[0].ID] = true
		completion += tokenCount(c.Message.Content)
	}
	if len(seen) != 5 || len(ids) != 5 {
		t.Errorf("got %d distinct texts and %d distinct ids, want 5 and 5", len(seen), len(ids))
	}
	if cr.Usage.CompletionTokens != completion || cr.Usage.TotalTokens != completion+cr.Usage.PromptTokens {
		t.Errorf("usage %+v, want completion %d", cr.Usage, completion)
	}
	wantPrompt := tokenCount(render(msgs("user", "What is TPO?"), true))
	if cr.Usage.PromptTokens != wantPrompt {
		t.Errorf("prompt tokens %d, want %d", cr.Usage.PromptTokens, wantPrompt)
	}
	if cr.Object != "chat.completion" || cr.Model != "sim-policy" || !strings.HasPrefix(cr.ID, "chatcmpl-") {
		t.Errorf("response header fields: %q %q %q", cr.Object, cr.Model, cr.ID)
	}
}

func TestChatMaxTokens(t *testing.T) {
	_, ts := newTest(t, Options{Seed: 1, MeanTokens: 400})
	req := chatReq{Messages: msgs("user", "Explain batching."), N: 3, Seed: ptr[int64](1), Temperature: ptr(0.7)}
	full := chat(t, ts, req)
	req.MaxTokens = 5
	short := chat(t, ts, req)
	for i, c := range short.Choices {
		if c.FinishReason != "length" {
			t.Errorf("choice %d: finish %q, want length", i, c.FinishReason)
		}
		if got, want := c.Message.Content, full.Choices[i].Message.Content[:20]; got != want {
			t.Errorf("choice %d: capped text %q, want the prefix %q", i, got, want)
		}
	}
	if short.Usage.CompletionTokens != 15 {
		t.Errorf("completion tokens %d, want 15", short.Usage.CompletionTokens)
	}
	// max_completion_tokens wins over max_tokens.
	resp, body := post(t, nil, ts.URL+EndpointChat, map[string]any{
		"messages": msgs("user", "Explain batching."), "max_tokens": 100, "max_completion_tokens": 3,
	})
	var cr chatResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &cr) != nil || len(cr.Choices) != 1 {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	if got := cr.Choices[0].Message.Content; len(got) != 12 || cr.Choices[0].FinishReason != "length" {
		t.Errorf("max_completion_tokens 3: text %q finish %q, want 12 bytes and length", got, cr.Choices[0].FinishReason)
	}
	// Message content given as parts counts as its text.
	resp, body = post(t, nil, ts.URL+EndpointChat, map[string]any{
		"messages": []map[string]any{{"role": "user", "content": []map[string]string{{"type": "text", "text": "Explain batching."}}}},
		"n":        3, "seed": 1, "temperature": 0.7,
	})
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &cr) != nil {
		t.Fatalf("content parts: status %d body %s", resp.StatusCode, body)
	}
	if got, want := texts(cr), texts(full); !equal(got, want) {
		t.Errorf("content parts give other texts than the same content as a string")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDeterminism(t *testing.T) {
	req := chatReq{Messages: msgs("system", "Be brief.", "user", "Name a prime."), N: 4, Seed: ptr[int64](100), Temperature: ptr(0.7)}
	_, a := newTest(t, Options{Seed: 42})
	_, b := newTest(t, Options{Seed: 42})
	_, c := newTest(t, Options{Seed: 43})
	ta, tb, tc := texts(chat(t, a, req)), texts(chat(t, b, req)), texts(chat(t, c, req))
	if !equal(ta, tb) {
		t.Errorf("same seed, same request, different texts:\n%.80q\n%.80q", ta, tb)
	}
	if equal(ta, tc) {
		t.Error("different Options.Seed gave the same texts")
	}
	// Choice i of seed s is choice 0 of seed s+i, as with vLLM.
	req.Seed, req.N = ptr[int64](101), 1
	if got := texts(chat(t, a, req)); got[0] != ta[1] {
		t.Errorf("seed 101 choice 0 differs from seed 100 choice 1")
	}
	// Temperature 0 gives identical choices.
	req.Temperature, req.N = ptr(0.0), 3
	if got := texts(chat(t, a, req)); got[0] != got[1] || got[1] != got[2] {
		t.Error("temperature 0 gave different choices")
	}
	// Unseeded requests: the k-th request for a conversation is the same
	// on two servers and differs from the (k+1)-th.
	req.Seed, req.Temperature, req.N = nil, ptr(1.0), 2
	a1, a2 := texts(chat(t, a, req)), texts(chat(t, a, req))
	b1, b2 := texts(chat(t, b, req)), texts(chat(t, b, req))
	if !equal(a1, b1) || !equal(a2, b2) {
		t.Error("unseeded requests differ between servers with the same seed")
	}
	if equal(a1, a2) {
		t.Error("repeated unseeded request gave the same texts")
	}
}

var improvedRE = regexp.MustCompile(`(?s)<improved_response>\s*(.*?)\s*</improved_response>`)

// chain runs sample, critique and instructions for a query and returns what
// an update needs.
type chainResult struct {
	query, chosen, rejected, critique, instructions string
	bestQ                                           float64
}

func runChain(t *testing.T, s *Server, ts *httptest.Server, query string) chainResult {
	t.Helper()
	seed := ptr[int64](0)
	samples := texts(chat(t, ts, chatReq{Messages: msgs("user", query), N: 5, Seed: seed, Temperature: ptr(0.7), MaxTokens: 2048}))
	r := chainResult{query: query}
	best, worst := math.Inf(-1), math.Inf(1)
	for _, x := range samples {
		sc := s.Reward(x)
		if sc > best {
			best, r.chosen = sc, x
		}
		if sc < worst {
			worst, r.rejected = sc, x
		}
	}
	r.bestQ = ParseMarkers(r.chosen).Responses[0].Q
	lossSystem := "Compare the chosen response with the rejected one for the query.\nQuery: " + query + "\nRejected: " + r.rejected
	r.critique = chat(t, ts, chatReq{Messages: msgs("system", lossSystem, "user", r.chosen), Seed: seed, Temperature: ptr(0.7)}).Choices[0].Message.Content
	if m := ParseMarkers(r.critique); len(m.Critiques) != 1 || len(m.Responses) != 0 {
		t.Fatalf("critique has markers %+v, want one critique", m)
	}
	transcript := "System: " + lossSystem + "\nInput: " + r.chosen + "\nOutput: " + r.critique
	r.instructions = chat(t, ts, chatReq{Messages: msgs("system", "You give feedback.", "user", transcript), Seed: seed, Temperature: ptr(0.7)}).Choices[0].Message.Content
	if m := ParseMarkers(r.instructions); len(m.Instructions) != 1 || m.Instructions[0].From != ParseMarkers(r.critique).Critiques[0].Hash {
		t.Fatalf("instructions have markers %+v, want one instruction from the critique", m)
	}
	return r
}

// update asks for 5 improved versions of c.chosen following the given
// critique and instructions and returns the q of each parsed one and the
// count of unparsed ones.
func update(t *testing.T, ts *httptest.Server, c chainResult, critique, instructions string) (qs []float64, unparsed int) {
	t.Helper()
	user := "Text to improve (a chosen response to a user query): " + c.chosen +
		"\nRejected: " + c.rejected + "\nEvaluation: " + critique + "\nFeedback: " + instructions +
		"\nWrite the new text between <improved_response> and </improved_response>."
	cr := chat(t, ts, chatReq{Messages: msgs("system", "You improve texts.", "user", user), N: 5, Seed: ptr[int64](0), Temperature: ptr(0.7), MaxTokens: 2048})
	for _, x := range texts(cr) {
		g := improvedRE.FindStringSubmatch(x)
		if g == nil {
			unparsed++
			continue
		}
		m := ParseMarkers(g[1])
		if len(m.Responses) != 1 {
			t.Fatalf("improved response without a response marker: %.80q", g[1])
		}
		qs = append(qs, m.Responses[0].Q)
	}
	return qs, unparsed
}

func TestDynamics(t *testing.T) {
	s, ts := newTest(t, Options{Seed: 3})
	const prompts = 12
	chains := make([]chainResult, prompts)
	for i := range chains {
		chains[i] = runChain(t, s, ts, fmt.Sprintf("Question number %d: how do I sort a list?", i))
	}
	var matched, mismatched []float64
	unparsed := 0
	for i, c := range chains {
		qs, u := update(t, ts, c, c.critique, c.instructions)
		unparsed += u
		for _, q := range qs {
			if q <= c.bestQ {
				t.Errorf("prompt %d: matched update q %.3f not above the best q %.3f", i, q, c.bestQ)
			}
			matched = append(matched, q-c.bestQ)
		}
		other := chains[(i+1)%prompts]
		qs, u = update(t, ts, c, c.critique, other.instructions)
		unparsed += u
		for _, q := range qs {
			mismatched = append(mismatched, q-c.bestQ)
		}
	}
	mean := func(xs []float64) float64 {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	gm, gx := mean(matched), mean(mismatched)
	t.Logf("mean gain over the best q: matched %.3f (%d), mismatched %.3f (%d), unparsed %d",
		gm, len(matched), gx, len(mismatched), unparsed)
	if gm < 0.3 || gm > 0.8 {
		t.Errorf("matched mean gain %.3f, want about 0.5", gm)
	}
	if gx > gm-0.3 {
		t.Errorf("mismatched mean gain %.3f not clearly below matched %.3f", gx, gm)
	}
	if total := 2 * prompts * 5; unparsed == 0 || unparsed > total/5 {
		t.Errorf("%d of %d updates unparsed, want a few (5%% rate)", unparsed, total)
	}
}

func TestUpdateWithoutTagsRequest(t *testing.T) {
	_, ts := newTest(t, Options{Seed: 1, UnparsedRate: -1})
	// An instruction marker without a request for tags: plain updates.
	cr := chat(t, ts, chatReq{Messages: msgs("user", "[q=0.5 id=aa] [instr from="+CritiqueHash([]string{"aa"})+"]"), N: 3, Seed: ptr[int64](0)})
	for _, x := range texts(cr) {
		m := ParseMarkers(x)
		if strings.Contains(x, "improved_response") || len(m.Responses) != 1 || m.Responses[0].Q <= 0.5 {
			t.Errorf("update %.80q: want an untagged response with q above 0.5", x)
		}
	}
	// With UnparsedRate negative every requested tag is there.
	cr = chat(t, ts, chatReq{Messages: msgs("user", "[q=0.5 id=aa] [instr from=00000000] use <improved_response> tags"), N: 20, Seed: ptr[int64](0)})
	for _, x := range texts(cr) {
		if !improvedRE.MatchString(x) {
			t.Errorf("UnparsedRate<0: update without tags: %.80q", x)
		}
	}
}

func TestChatErrors(t *testing.T) {
	_, ts := newTest(t, Options{Seed: 1, MaxModelLen: 200})
	tests := []struct {
		name   string
		body   string
		status int
		msg    string // part of error.message
	}{
		{"unknown model", `{"model":"gpt-x","messages":[{"role":"user","content":"hi"}]}`, 404, "gpt-x"},
		{"reward model", `{"model":"sim-reward","messages":[{"role":"user","content":"hi"}]}`, 404, "does not exist"},
		{"top_logprobs without logprobs", `{"messages":[{"role":"user","content":"hi"}],"top_logprobs":5}`, 400, "logprobs must be set"},
		{"top_logprobs too many", `{"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":21}`, 400, "top_logprobs must be between 0 and 20"},
		{"top_logprobs negative", `{"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":-1}`, 400, "top_logprobs"},
		{"stream_options without stream", `{"messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}`, 400, "stream_options"},
		{"bad JSON", `{"messages":`, 400, "invalid JSON"},
		{"no messages", `{"messages":[]}`, 400, "messages"},
		{"n zero", `{"messages":[{"role":"user","content":"hi"}],"n":0}`, 400, "n must be"},
		{"max_tokens zero", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":0}`, 400, "max_tokens"},
		{"temperature", `{"messages":[{"role":"user","content":"hi"}],"temperature":3}`, 400, "temperature"},
		{"context", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":500}`, 400, "maximum context length is 200 tokens"},
		{"prompt too long", `{"messages":[{"role":"user","content":"` + strings.Repeat("x", 1000) + `"}]}`, 400, "maximum context length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(ts.URL+EndpointChat, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct {
				Error struct {
					Message string `json:"message"`
					Type    string `json:"type"`
					Code    int    `json:"code"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("decoding the error body: %v", err)
			}
			if resp.StatusCode != tt.status || e.Error.Code != tt.status || !strings.Contains(e.Error.Message, tt.msg) || e.Error.Type == "" {
				t.Errorf("got %d %+v, want %d with a message containing %q", resp.StatusCode, e.Error, tt.status, tt.msg)
			}
		})
	}
	// Without max_tokens a completion may use the rest of the window.
	cr := chat(t, ts, chatReq{Messages: msgs("user", "hi"), N: 4, Seed: ptr[int64](1)})
	for _, c := range cr.Choices {
		if cr.Usage.PromptTokens+tokenCount(c.Message.Content) > 200 {
			t.Errorf("completion of %d tokens overflows the window", tokenCount(c.Message.Content))
		}
	}
	resp, err := http.Get(ts.URL + EndpointChat)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: status %d, want 405", EndpointChat, resp.StatusCode)
	}
}

func TestModels(t *testing.T) {
	_, ts := newTest(t, Options{Model: "policy", RewardModel: "rm", MaxModelLen: 4096})
	resp, err := http.Get(ts.URL + EndpointModels)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID          string `json:"id"`
			Object      string `json:"object"`
			MaxModelLen int    `json:"max_model_len"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "policy" || list.Data[1].ID != "rm" ||
		list.Data[0].Object != "model" || list.Data[0].MaxModelLen != 4096 {
		t.Errorf("models = %+v", list)
	}
}

func TestRewardEndpoints(t *testing.T) {
	s, ts := newTest(t, Options{Seed: 5})
	samples := texts(chat(t, ts, chatReq{Messages: msgs("user", "Say something."), N: 3, Seed: ptr[int64](0), Temperature: ptr(0.7)}))
	samples = append(samples, "an answer with no marker")
	var ids [][]int64
	for _, x := range samples {
		resp, body := post(t, nil, ts.URL+EndpointTokenize, map[string]any{
			"model": "sim-reward", "messages": msgs("user", "Say something.", "assistant", x), "add_generation_prompt": false,
		})
		var tok struct {
			Count       int     `json:"count"`
			MaxModelLen int     `json:"max_model_len"`
			Tokens      []int64 `json:"tokens"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &tok) != nil {
			t.Fatalf("tokenize: %d %s", resp.StatusCode, body)
		}
		if tok.Count != len(tok.Tokens) || tok.MaxModelLen != 32768 || tok.Count == 0 {
			t.Errorf("tokenize: count %d, %d tokens, max_model_len %d", tok.Count, len(tok.Tokens), tok.MaxModelLen)
		}
		ids = append(ids, tok.Tokens)
	}
	type classifyResp struct {
		Data []struct {
			Index      int       `json:"index"`
			Label      string    `json:"label"`
			Probs      []float64 `json:"probs"`
			NumClasses int       `json:"num_classes"`
		} `json:"data"`
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"usage"`
	}
	for _, act := range []*bool{ptr(false), nil} {
		body := map[string]any{"model": "sim-reward", "input": ids}
		if act != nil {
			body["use_activation"] = *act
		}
		resp, data := post(t, nil, ts.URL+EndpointClassify, body)
		var cr classifyResp
		if resp.StatusCode != 200 || json.Unmarshal(data, &cr) != nil || len(cr.Data) != len(samples) {
			t.Fatalf("classify: %d %s", resp.StatusCode, data)
		}
		for i, d := range cr.Data {
			want := s.Reward(samples[i])
			if act == nil {
				want = bf16(sigmoid(want))
			}
			if d.Index != i || len(d.Probs) != 1 || d.Probs[0] != want || d.NumClasses != 1 || d.Label != "LABEL_0" {
				t.Errorf("activation %v: data[%d] = %+v, want score %v", act, i, d, want)
			}
		}
		if act == nil {
			continue
		}
		if last := cr.Data[len(samples)-1].Probs[0]; last < -4 || last >= -2 {
			t.Errorf("unmarked text scored %v, want in [-4, -2)", last)
		}
	}
	// /pooling with messages scores the last assistant turn.
	resp, data := post(t, nil, ts.URL+EndpointPooling, map[string]any{
		"model": "sim-reward", "task": "classify", "use_activation": false,
		"messages": msgs("user", "Say something.", "assistant", samples[1]),
	})
	var pr struct {
		Data []struct {
			Index  int       `json:"index"`
			Object string    `json:"object"`
			Data   []float64 `json:"data"`
		} `json:"data"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(data, &pr) != nil || len(pr.Data) != 1 {
		t.Fatalf("pooling: %d %s", resp.StatusCode, data)
	}
	if got, want := pr.Data[0], s.Reward(samples[1]); got.Object != "pooling" || len(got.Data) != 1 || got.Data[0] != want {
		t.Errorf("pooling data %+v, want score %v", got, want)
	}
	// Errors.
	for _, tt := range []struct {
		path string
		body any
		want int
	}{
		{EndpointClassify, map[string]any{"model": "other", "input": "x"}, 404},
		{EndpointClassify, map[string]any{"input": [][]int64{{0}}}, 400},
		{EndpointClassify, map[string]any{"input": []string{}}, 400},
		{EndpointPooling, map[string]any{"task": "embed", "messages": msgs("user", "x")}, 400},
		{EndpointPooling, map[string]any{"model": "sim-policy", "messages": msgs("user", "x")}, 404},
		{EndpointTokenize, map[string]any{"model": "sim-reward"}, 400},
	} {
		if resp, body := post(t, nil, ts.URL+tt.path, tt.body); resp.StatusCode != tt.want {
			t.Errorf("POST %s %v: status %d (%s), want %d", tt.path, tt.body, resp.StatusCode, body, tt.want)
		}
	}
}

func TestBF16(t *testing.T) {
	for _, tt := range []struct{ in, want float64 }{
		{1, 1}, {0.5, 0.5}, {0.99999, 1}, {0.1, 0.10009765625}, {-2, -2},
	} {
		if got := bf16(tt.in); got != tt.want {
			t.Errorf("bf16(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestReward(t *testing.T) {
	for _, x := range []string{"[q=1.500 id=aa] words", "[q=-2 id=bb]", "text [q=0 id=cc] [q=9 id=dd]"} {
		q := ParseMarkers(x).Responses[0].Q
		if got := Reward(x, 0.1); got < q-0.1 || got >= q+0.1 {
			t.Errorf("Reward(%q) = %v, want within 0.1 of %v", x, got, q)
		}
		if Reward(x, 0.1) != Reward(x, 0.1) {
			t.Errorf("Reward(%q) is not deterministic", x)
		}
	}
	if a, b := Reward("[q=1 id=aa] one", 0.1), Reward("[q=1 id=aa] two", 0.1); a == b {
		t.Error("reward noise does not depend on the text")
	}
	if got := Reward("[q=1 id=aa] one", 0); got != 1 {
		t.Errorf("Reward without noise = %v, want 1", got)
	}
}

func TestStatsEndpoint(t *testing.T) {
	s, ts := newTest(t, Options{Seed: 1, Slots: 8})
	completion := 0
	for i := range 3 {
		cr := chat(t, ts, chatReq{Messages: msgs("user", "q"+strconv.Itoa(i)), N: 2, Seed: ptr[int64](0)})
		completion += cr.Usage.CompletionTokens
	}
	post(t, nil, ts.URL+EndpointPooling, map[string]any{"messages": msgs("user", "a", "assistant", "b")})
	resp, err := http.Get(ts.URL + EndpointStats)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.GeneratedTokens != int64(completion) || st.CompletionTokens != int64(completion) || st.Sequences != 6 {
		t.Errorf("generated %d, completion %d, sequences %d; want %d, %d, 6", st.GeneratedTokens, st.CompletionTokens, st.Sequences, completion, completion)
	}
	if st.Requests[EndpointChat] != 3 || st.Requests[EndpointPooling] != 1 || st.Requests[EndpointStats] != 1 {
		t.Errorf("requests %v", st.Requests)
	}
	if st.RewardCalls != 1 || st.RewardInputs != 1 || st.Slots != 8 || st.MaxActive != 2 {
		t.Errorf("reward calls %d inputs %d slots %d max active %d", st.RewardCalls, st.RewardInputs, st.Slots, st.MaxActive)
	}
	if st.TokensPerSimSec <= 0 || st.TokensPerWallSec <= 0 || st.SimSeconds <= 0 || st.WallSeconds <= 0 || st.Steps <= 0 {
		t.Errorf("rates and clocks must be positive: %+v", st)
	}
	if want := float64(st.GeneratedTokens) / st.SimSeconds; math.Abs(st.TokensPerSimSec-want) > 1e-9*want {
		t.Errorf("tokens per sim second %v, want %v", st.TokensPerSimSec, want)
	}
	s.ResetStats()
	if st := s.Stats(); st.GeneratedTokens != 0 || len(st.Requests) != 0 || st.BusySlotSeconds != 0 || st.MaxActive != 0 {
		t.Errorf("after ResetStats: %+v", st)
	}
}

func TestFill(t *testing.T) {
	for _, tt := range []struct{ head, tail string }{
		{"[q=1.000 id=aa]", ""},
		{"<improved_response>\n[q=1.000 id=aa]", "\n</improved_response>"},
	} {
		for size := 0; size < 200; size += 7 {
			full := fill(tt.head, tt.tail, size, size, rand.New(rand.NewPCG(1, 2)))
			if len(full) != size {
				t.Errorf("fill(%q, %q, %d) has %d bytes", tt.head, tt.tail, size, len(full))
			}
			if size >= len(tt.head)+len(tt.tail) && (!strings.HasPrefix(full, tt.head) || !strings.HasSuffix(full, tt.tail)) {
				t.Errorf("fill(%q, %q, %d) = %q: want head and tail", tt.head, tt.tail, size, full)
			}
			for limit := 0; limit <= size+3; limit += 5 {
				got := fill(tt.head, tt.tail, size, limit, rand.New(rand.NewPCG(1, 2)))
				if want := full[:min(size, limit)]; got != want {
					t.Errorf("fill(size %d, limit %d) = %q, want the prefix %q", size, limit, got, want)
				}
			}
		}
	}
}
