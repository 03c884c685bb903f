package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

const convo = `"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"What is 2+2?"},{"role":"assistant","content":"4"},{"role":"user","content":"And 3+3?"}]`

func TestChatCompletion(t *testing.T) {
	e := newTestEnv(t, nil)
	var c completion
	decodeJSON(t, e.post(t, `{"model":"llama",`+convo+`}`), http.StatusOK, &c)

	if !strings.HasPrefix(c.ID, "chatcmpl-") || c.Object != "chat.completion" || c.Model != "llama" || c.Created == 0 {
		t.Errorf("header = id %q object %q model %q created %d", c.ID, c.Object, c.Model, c.Created)
	}
	if len(c.Choices) != 1 || c.Choices[0].FinishReason != "stop" || c.Choices[0].Message.Role != "assistant" {
		t.Fatalf("choices = %+v", c.Choices)
	}
	// The length reward prefers the longest text; the default policy's
	// update texts are "improved k.i".
	if got := c.Choices[0].Message.Content; got != "answer 0 to: And 3+3?" && !strings.HasPrefix(got, "improved") && !strings.HasPrefix(got, "answer") {
		t.Errorf("content = %q", got)
	}

	// Usage sums what the fake upstream reported over every call.
	e.up.mu.Lock()
	rep, models := e.up.reported, e.up.genModels
	e.up.mu.Unlock()
	if want := usageOf(rep); *c.Usage != want || want.TotalTokens == 0 {
		t.Errorf("usage = %+v, want %+v (the fake's sum)", c.Usage, want)
	}
	if len(models) != 7 { // 1 + 3D with D=2
		t.Errorf("%d policy requests, want 7", len(models))
	}
	for _, m := range models {
		if m != "llama" {
			t.Errorf("a policy request went to model %q, want llama", m)
		}
	}
	// The whole conversation is the context of the initial samples.
	calls := e.up.policy.Calls()
	if len(calls[0].Messages) != 4 || calls[0].Messages[0].Content != "You are terse." || calls[0].Messages[2].Role != "assistant" {
		t.Errorf("sample request messages = %+v, want the whole conversation", calls[0].Messages)
	}

	s := c.TPO
	if s == nil {
		t.Fatal("no tpo object")
	}
	if s.Requests != 7 || s.RewardCalls != 3 || s.Steps != 3 || s.Mode != tpo.ModeTPO || s.Width != 3 || s.Depth != 2 || s.Reward != "len" {
		t.Errorf("summary = %+v", s)
	}
	var stageReqs, stageTokens int
	for st, u := range s.Stages {
		if st != tpo.StageScore {
			stageReqs += u.Requests
			stageTokens += u.TotalTokens
		}
	}
	if stageReqs != 7 || stageTokens != c.Usage.TotalTokens || s.Stages[tpo.StageScore].Requests != 3 {
		t.Errorf("stages = %+v: want 7 policy requests and %d tokens", s.Stages, c.Usage.TotalTokens)
	}
	if s.Score < s.InitialBest || s.Gain != s.Score-s.InitialBest {
		t.Errorf("score %v, initial best %v, gain %v", s.Score, s.InitialBest, s.Gain)
	}

	// The store has the run, with its one item and every step.
	run, ok := e.store.Run(s.RunID)
	if !ok || run.Kind != "serve" || run.Finished == nil {
		t.Fatalf("store run %q = %+v, %v", s.RunID, run, ok)
	}
	items := e.store.Items(s.RunID)
	if len(items) != 1 || !items[0].Done || items[0].Result == nil || len(items[0].Steps) != 3 {
		t.Fatalf("store items = %+v", items)
	}
	if items[0].Result.Response != c.Choices[0].Message.Content || items[0].Item.ID != c.ID {
		t.Errorf("stored result %q (item %q), answered %q (id %q)", items[0].Result.Response, items[0].Item.ID, c.Choices[0].Message.Content, c.ID)
	}
}

func TestChatCompletionN(t *testing.T) {
	e := newTestEnv(t, nil)
	var c completion
	decodeJSON(t, e.post(t, `{"model":"m","n":4,`+convo+`}`), http.StatusOK, &c)
	if len(c.Choices) != 4 {
		t.Fatalf("%d choices, want 4", len(c.Choices))
	}
	seen := map[string]bool{}
	for i, ch := range c.Choices {
		if ch.Index != i || seen[ch.Message.Content] {
			t.Errorf("choice %d = %+v (duplicate or misnumbered)", i, ch)
		}
		seen[ch.Message.Content] = true
		if i > 0 && c.TPO.Scores[i] > c.TPO.Scores[i-1] {
			t.Errorf("scores %v not best first", c.TPO.Scores)
		}
		if want := float64(len(ch.Message.Content)); c.TPO.Scores[i] != want {
			t.Errorf("choice %d score %v, want %v", i, c.TPO.Scores[i], want)
		}
	}
	if c.TPO.Scores[0] != c.TPO.Score {
		t.Errorf("first choice scores %v, best %v", c.TPO.Scores[0], c.TPO.Score)
	}
}

func TestChatOverrides(t *testing.T) {
	e := newTestEnv(t, nil)
	var c completion
	decodeJSON(t, e.post(t, `{"model":"m",`+convo+`,"temperature":0.1,"top_p":0.5,"max_completion_tokens":77,"seed":42,
		"tpo":{"mode":"tpo","width":2,"depth":1,"reward":"words","critique_max_tokens":33}}`), http.StatusOK, &c)
	calls := e.up.policy.Calls()
	if len(calls) != 4 {
		t.Fatalf("%d policy requests, want 4 (depth 1)", len(calls))
	}
	for _, call := range calls {
		switch call.Stage {
		case tpo.StageSample, tpo.StageUpdate:
			if call.N != 2 || call.Sampling != (tpo.Sampling{Temperature: 0.1, TopP: 0.5, MaxTokens: 77}) {
				t.Errorf("%s request: n %d, sampling %+v", call.Stage, call.N, call.Sampling)
			}
		default:
			if call.N != 1 || call.Sampling.MaxTokens != 33 || call.Sampling.Temperature != 0.7 {
				t.Errorf("%s request: n %d, sampling %+v", call.Stage, call.N, call.Sampling)
			}
		}
		if call.Seed == nil {
			t.Errorf("%s request without a seed", call.Stage)
		}
	}
	if *calls[0].Seed != 42 {
		t.Errorf("first seed = %d, want 42", *calls[0].Seed)
	}
	if c.TPO.Reward != "words" || c.TPO.Width != 2 || c.TPO.Depth != 1 {
		t.Errorf("summary = %+v", c.TPO)
	}
	if len(e.reward.Calls()) != 0 {
		t.Errorf("the default reward was called; the override named words")
	}

	// Best of N: one sample request, one score call.
	e2 := newTestEnv(t, nil)
	decodeJSON(t, e2.post(t, `{"model":"m",`+convo+`,"tpo":{"mode":"bon","width":5}}`), http.StatusOK, &c)
	if n := len(e2.up.policy.Calls()); n != 1 || c.TPO.Requests != 1 || c.TPO.Depth != 0 {
		t.Errorf("bon: %d policy requests, summary %+v", n, c.TPO)
	}
}

func TestChatErrors(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.MaxBody = 1000 })
	tests := []struct {
		name   string
		do     func() *http.Response
		status int
		typ    string
		param  string
	}{
		{"unknown route", func() *http.Response { return get(t, e.ts.URL+"/v1/embeddings", "") }, 404, typeNotFound, ""},
		{"wrong method", func() *http.Response { return get(t, e.ts.URL+"/v1/chat/completions", "") }, 405, typeInvalidRequest, ""},
		{"too large", func() *http.Response {
			return e.post(t, `{"messages":[{"role":"user","content":"`+strings.Repeat("x", 2000)+`"}]}`)
		}, 413, typeInvalidRequest, ""},
		{"bad json", func() *http.Response { return e.post(t, `{"messages":`) }, 400, typeInvalidRequest, ""},
		{"width", func() *http.Response { return e.post(t, `{"tpo":{"width":99},`+convo+`}`) }, 400, typeInvalidRequest, "tpo.width"},
		{"image", func() *http.Response {
			return e.post(t, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:,"}}]}]}`)
		}, 400, typeInvalidRequest, "messages[0].content[0]"},
		{"assistant last", func() *http.Response {
			return e.post(t, `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}`)
		}, 400, typeInvalidRequest, "messages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.do()
			var b errorBody
			decodeJSON(t, resp, tt.status, &b)
			if b.Error.Type != tt.typ || b.Error.Message == "" {
				t.Errorf("error = %+v, want type %q and a message", b.Error, tt.typ)
			}
			param := ""
			if b.Error.Param != nil {
				param = *b.Error.Param
			}
			if param != tt.param {
				t.Errorf("param = %q, want %q", param, tt.param)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type = %q", ct)
			}
		})
	}
	if allow := get(t, e.ts.URL+"/v1/chat/completions", "").Header.Get("Allow"); allow != "POST" {
		t.Errorf("Allow = %q, want POST", allow)
	}
	if n := e.up.generations(); n != 0 {
		t.Errorf("%d generations for requests that all failed validation", n)
	}
}

func get(t *testing.T, url, key string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestAuth(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.APIKeys = []string{"k1", "second-key"} })
	body := `{"model":"m",` + convo + `}`
	tests := []struct {
		name   string
		header []string
		status int
		code   string
	}{
		{"no key", nil, 401, "missing_api_key"},
		{"wrong key", []string{"Authorization", "Bearer nope"}, 401, "invalid_api_key"},
		{"prefix of a key", []string{"Authorization", "Bearer k"}, 401, "invalid_api_key"},
		{"basic auth", []string{"Authorization", "Basic azE6"}, 401, "missing_api_key"},
		{"first key", []string{"Authorization", "Bearer k1"}, 200, ""},
		{"second key, lower-case scheme", []string{"Authorization", "bearer second-key"}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.post(t, body, tt.header...)
			if tt.status == 200 {
				var c completion
				decodeJSON(t, resp, 200, &c)
				return
			}
			var b errorBody
			decodeJSON(t, resp, tt.status, &b)
			if b.Error.Type != typeAuthentication || b.Error.Code == nil || *b.Error.Code != tt.code {
				t.Errorf("error = %+v, want %s", b.Error, tt.code)
			}
			if strings.Contains(b.Error.Message, "nope") {
				t.Errorf("the error repeats the key: %q", b.Error.Message)
			}
		})
	}
	// Health needs no key; models and metrics do.
	if s := get(t, e.ts.URL+"/healthz", "").StatusCode; s != 200 {
		t.Errorf("healthz without key: %d", s)
	}
	for _, p := range []string{"/v1/models", "/metrics"} {
		if s := get(t, e.ts.URL+p, "").StatusCode; s != 401 {
			t.Errorf("%s without key: %d, want 401", p, s)
		}
		if s := get(t, e.ts.URL+p, "k1").StatusCode; s != 200 {
			t.Errorf("%s with key: %d, want 200", p, s)
		}
	}
}

// TestAPIKeysTrimmed: a key is trimmed, as the one a client sends is, and
// a key that is blank after trimming is refused: it would let in no one,
// or everyone, depending on the caller's reading of an empty list.
func TestAPIKeysTrimmed(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.APIKeys = []string{" k1 ", "\tk2\n"} })
	for _, key := range []string{"k1", "k2"} {
		if s := get(t, e.ts.URL+"/v1/models", key).StatusCode; s != 200 {
			t.Errorf("key %q, configured with spaces around it: %d, want 200", key, s)
		}
	}
	for _, keys := range [][]string{{""}, {" "}, {"k", "\t\n"}} {
		_, err := New(Options{Policy: e.up, Scorers: testScorers(), DefaultReward: "rm", Config: tpo.DefaultConfig(), APIKeys: keys})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("API key %d of %d is blank", len(keys), len(keys))) {
			t.Errorf("New with keys %q: %v, want an error naming the blank key", keys, err)
		}
	}
}

// blockAt makes generation number call wait for ctx, reporting that it
// started on started and that it ended on ended.
func blockAt(call int, started, ended chan<- struct{}) func(context.Context, int, tpo.GenerateRequest) error {
	return func(ctx context.Context, c int, _ tpo.GenerateRequest) error {
		if c != call {
			return nil
		}
		close(started)
		<-ctx.Done()
		if ended != nil {
			close(ended)
		}
		return ctx.Err()
	}
}

func TestBusy(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	e := newTestEnv(t, func(o *Options) { o.MaxConcurrent = 1; o.QueueWait = 20 * time.Millisecond })
	e.up.block = func(ctx context.Context, c int, _ tpo.GenerateRequest) error {
		if c == 0 {
			close(started)
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	first := make(chan int, 1)
	go func() {
		resp, err := http.Post(e.ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m",`+convo+`}`))
		if err != nil {
			first <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-started
	if got := e.srv.InFlight(); len(got) != 1 || got[0].Model != "m" || got[0].Prompt != "And 3+3?" {
		t.Errorf("InFlight = %+v", got)
	}
	resp := e.post(t, `{"model":"m",`+convo+`}`)
	var b errorBody
	decodeJSON(t, resp, http.StatusTooManyRequests, &b)
	if resp.Header.Get("Retry-After") == "" || b.Error.Type != typeRateLimit {
		t.Errorf("429: Retry-After %q, error %+v", resp.Header.Get("Retry-After"), b.Error)
	}
	if want := "the server is running its maximum of 1 optimization; retry later"; b.Error.Message != want {
		t.Errorf("429: message %q, want %q", b.Error.Message, want)
	}
	// Pass-through requests are not optimizations: they are not limited.
	e.up.setChat(`{"id":"x","object":"chat.completion","choices":[]}`, nil)
	if s := e.post(t, `{"model":"m","tpo":{"mode":"off"},`+convo+`}`).StatusCode; s != 200 {
		t.Errorf("pass-through while busy: %d", s)
	}
	close(release)
	if s := <-first; s != 200 {
		t.Errorf("first request: %d", s)
	}
	if got := e.srv.InFlight(); len(got) != 0 {
		t.Errorf("InFlight after the end = %+v", got)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("502", func(t *testing.T) {
		e := newTestEnv(t, nil)
		e.up.policy.Err = func(call int, _ tpo.GenerateRequest) error {
			if call == 1 {
				return upErr("policy", "http://gpu7:8000/v1", 500, "CUDA out of memory", "")
			}
			return nil
		}
		var b errorBody
		decodeJSON(t, e.post(t, `{"model":"m",`+convo+`}`), http.StatusBadGateway, &b)
		for _, want := range []string{"policy server: POST /chat/completions: 500", "CUDA out of memory", "loss"} {
			if !strings.Contains(b.Error.Message, want) {
				t.Errorf("message %q does not mention %q", b.Error.Message, want)
			}
		}
		if strings.Contains(b.Error.Message, "gpu7") {
			t.Errorf("message %q shows the upstream's address", b.Error.Message)
		}
		if b.Error.Type != typeUpstream {
			t.Errorf("type = %q", b.Error.Type)
		}
		// The failure is recorded.
		runs := e.store.Items(runIDFrom(t, b.Error.Message))
		if len(runs) != 1 || runs[0].Result == nil || runs[0].Result.Error == "" {
			t.Errorf("stored item = %+v, want a recorded failure", runs)
		}
	})
	t.Run("reward 502", func(t *testing.T) {
		e := newTestEnv(t, nil)
		e.reward.Err = func(int) error { return errors.New("reward server http://rm:9000: connection refused") }
		var b errorBody
		decodeJSON(t, e.post(t, `{"model":"m",`+convo+`}`), http.StatusBadGateway, &b)
		if !strings.Contains(b.Error.Message, "reward server: connection refused") || strings.Contains(b.Error.Message, "rm:9000") {
			t.Errorf("message = %q: want the failure without the address", b.Error.Message)
		}
	})
	t.Run("504", func(t *testing.T) {
		e := newTestEnv(t, func(o *Options) { o.RequestTimeout = 30 * time.Millisecond })
		e.up.block = blockAt(0, make(chan struct{}), nil)
		var b errorBody
		decodeJSON(t, e.post(t, `{"model":"m",`+convo+`}`), http.StatusGatewayTimeout, &b)
		if b.Error.Type != typeTimeout || !strings.Contains(b.Error.Message, "timeout") {
			t.Errorf("error = %+v", b.Error)
		}
	})
	t.Run("upstream attempt timeout", func(t *testing.T) {
		e := newTestEnv(t, nil)
		e.up.policy.Err = func(int, tpo.GenerateRequest) error {
			return fmt.Errorf("policy server http://h/v1: POST /chat/completions: attempt timed out after 1s: %w", context.DeadlineExceeded)
		}
		var b errorBody
		decodeJSON(t, e.post(t, `{"model":"m",`+convo+`}`), http.StatusGatewayTimeout, &b)
		if !strings.Contains(b.Error.Message, "policy server: POST /chat/completions: attempt timed out after 1s") || strings.Contains(b.Error.Message, "http://") {
			t.Errorf("message = %q: want the timeout without the address", b.Error.Message)
		}
	})
}

// runIDFrom finds "(run ID)" in an error message.
func runIDFrom(t *testing.T, msg string) string {
	t.Helper()
	i := strings.LastIndex(msg, "(run ")
	if i < 0 {
		t.Fatalf("no run id in %q", msg)
	}
	return strings.TrimSuffix(msg[i+len("(run "):], ")")
}

func TestStream(t *testing.T) {
	var mu sync.Mutex
	var hooked []string
	e := newTestEnv(t, func(o *Options) {
		o.Events = func(runID string, ev tpo.Event) {
			mu.Lock()
			defer mu.Unlock()
			hooked = append(hooked, runID)
		}
	})
	// A long answer, so that it comes in several deltas.
	e.up.policy.Respond = func(call int, req tpo.GenerateRequest, i int) string {
		switch req.Stage {
		case tpo.StageLoss:
			return "critique"
		case tpo.StageGradient:
			return "instructions"
		case tpo.StageUpdate:
			return fmt.Sprintf("<improved_response>%s</improved_response>", strings.Repeat(fmt.Sprintf("better %d.%d ", call, i), 20))
		}
		return fmt.Sprintf("sample %d", i)
	}
	resp := e.post(t, `{"model":"m","stream":true,"stream_options":{"include_usage":true},`+convo+`}`)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := readSSE(t, resp.Body)
	if len(events) == 0 || events[len(events)-1].Data != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %+v", events)
	}
	var kinds []string
	var content string
	var last Progress
	var usageSeen *openai.Usage
	var summary Optimization
	var id string
	for _, ev := range events[:len(events)-1] {
		var c streamChunk
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
			t.Fatalf("chunk %q: %v", ev.Data, err)
		}
		if id == "" {
			id = c.ID
		}
		if c.ID != id || c.Object != "chat.completion.chunk" || c.Model != "m" {
			t.Errorf("chunk header %+v", c)
		}
		switch {
		case c.Usage != nil:
			kinds = append(kinds, "usage")
			if len(c.Choices) != 0 {
				t.Errorf("usage chunk has choices: %s", ev.Data)
			}
			usageSeen = c.Usage
		case len(c.Choices) != 1:
			t.Fatalf("chunk with %d choices: %s", len(c.Choices), ev.Data)
		case c.Choices[0].FinishReason != nil:
			kinds = append(kinds, "finish")
			if *c.Choices[0].FinishReason != "stop" || c.TPO == nil {
				t.Errorf("finish chunk %s", ev.Data)
			} else if err := json.Unmarshal(*c.TPO, &summary); err != nil {
				t.Fatal(err)
			}
		case c.Choices[0].Delta.Role == "assistant":
			kinds = append(kinds, "role")
		case c.TPO != nil:
			kinds = append(kinds, "progress")
			if err := json.Unmarshal(*c.TPO, &last); err != nil {
				t.Fatal(err)
			}
		case c.Choices[0].Delta.Content != nil:
			kinds = append(kinds, "content")
			content += *c.Choices[0].Delta.Content
		default:
			t.Errorf("unexpected chunk %s", ev.Data)
		}
	}
	got := collapse(kinds)
	want := "role progress*5 progress*4 content* finish usage"
	if got != "role progress* content* finish usage" || strings.Count(strings.Join(kinds, " "), "progress") != 9 {
		t.Errorf("chunk order = %s (%v), want %s", got, kinds, want)
	}
	if strings.Count(strings.Join(kinds, " "), "content") < 3 {
		t.Errorf("the answer came in %d deltas, want several", strings.Count(strings.Join(kinds, " "), "content"))
	}
	if last.Stage != "score" || last.Step != 2 || last.BestScore == nil || *last.BestScore != summary.Score {
		t.Errorf("last progress = %+v, summary score %v", last, summary.Score)
	}
	if float64(len(content)) != summary.Score { // the length reward
		t.Errorf("content %q scores %v, summary says %v", content, float64(len(content)), summary.Score)
	}
	e.up.mu.Lock()
	rep := e.up.reported
	e.up.mu.Unlock()
	if usageSeen == nil || *usageSeen != usageOf(rep) {
		t.Errorf("usage = %+v, want %+v", usageSeen, usageOf(rep))
	}
	items := e.store.Items(summary.RunID)
	if len(items) != 1 || items[0].Result == nil || items[0].Result.Response != content {
		t.Errorf("store items of run %q = %+v", summary.RunID, items)
	}
	mu.Lock()
	if len(hooked) == 0 || hooked[0] != summary.RunID {
		t.Errorf("the events hook saw runs %v, want %q", hooked, summary.RunID)
	}
	mu.Unlock()
}

// collapse writes kinds with runs of the same kind as "kind*".
func collapse(kinds []string) string {
	var out []string
	for i := 0; i < len(kinds); {
		j := i
		for j < len(kinds) && kinds[j] == kinds[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, kinds[i]+"*")
		} else {
			out = append(out, kinds[i])
		}
		i = j
	}
	return strings.Join(out, " ")
}

func TestStreamErrorAfterStart(t *testing.T) {
	e := newTestEnv(t, nil)
	e.up.policy.Err = func(call int, _ tpo.GenerateRequest) error {
		if call == 2 {
			return upErr("policy", "http://gpu:8000/v1", 503, "overloaded", "")
		}
		return nil
	}
	resp := e.post(t, `{"model":"m","stream":true,`+convo+`}`)
	events := readSSE(t, resp.Body)
	if len(events) < 3 || events[len(events)-1].Data != "[DONE]" {
		t.Fatalf("events = %+v", events)
	}
	var c streamChunk
	if err := json.Unmarshal([]byte(events[len(events)-2].Data), &c); err != nil {
		t.Fatal(err)
	}
	if c.Error == nil || strings.Contains(c.Error.Message, "http://gpu:8000/v1") || !strings.Contains(c.Error.Message, "policy server: POST /chat/completions: 503 Service Unavailable: overloaded") {
		t.Errorf("error event = %s", events[len(events)-2].Data)
	}
	if err := json.Unmarshal([]byte(events[0].Data), &c); err != nil || c.Choices[0].Delta.Role != "assistant" {
		t.Errorf("first event = %s, want the role chunk", events[0].Data)
	}
}

func TestStreamKeepAlive(t *testing.T) {
	started := make(chan struct{})
	e := newTestEnv(t, func(o *Options) { o.KeepAlive = 5 * time.Millisecond })
	e.up.block = func(ctx context.Context, c int, _ tpo.GenerateRequest) error {
		if c == 1 {
			close(started)
			select {
			case <-time.After(60 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	resp := e.post(t, `{"model":"m","stream":true,`+convo+`}`)
	events := readSSE(t, resp.Body)
	comments := 0
	for _, ev := range events {
		if ev.Comment == "keep-alive" {
			comments++
		}
	}
	if comments == 0 || events[len(events)-1].Data != "[DONE]" {
		t.Errorf("%d keep-alive comments in %d events", comments, len(events))
	}
}

func TestStreamClientDisconnectCancels(t *testing.T) {
	started, ended := make(chan struct{}), make(chan struct{})
	e := newTestEnv(t, nil)
	e.up.block = blockAt(1, started, ended)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.ts.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"m","stream":true,`+convo+`}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Headers and the role chunk arrived before the optimization ended.
	<-started
	var runID string
	for _, r := range e.srv.InFlight() {
		runID = r.RunID
	}
	events, stop := e.srv.Subscribe(runID)
	defer stop()
	cancel() // the client goes away during the loss call
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream call was not cancelled after the client left")
	}
	// The subscription ends with the optimization.
	for range events {
	}
	if n := e.up.generations(); n != 2 {
		t.Errorf("%d generations, want 2: none after the client left", n)
	}
	items := e.store.Items(runID)
	if len(items) != 1 || items[0].Result == nil || !strings.Contains(items[0].Result.Error, "canceled") {
		t.Errorf("stored item = %+v, want a recorded cancellation", items)
	}
}

func TestSubscribe(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	e := newTestEnv(t, nil)
	e.up.block = func(ctx context.Context, c int, _ tpo.GenerateRequest) error {
		if c == 1 {
			close(started)
			<-release
		}
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Post(e.ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m",`+convo+`}`))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-started
	inf := e.srv.InFlight()
	if len(inf) != 1 {
		t.Fatalf("InFlight = %+v", inf)
	}
	ch, cancel := e.srv.Subscribe(inf[0].RunID)
	defer cancel()
	close(release)
	var kinds []string
	for ev := range ch {
		kinds = append(kinds, fmt.Sprintf("%T", ev))
	}
	<-done
	if len(kinds) == 0 || kinds[0] != "tpo.Critique" || kinds[len(kinds)-1] != "tpo.Done" {
		t.Errorf("events = %v, want Critique ... Done", kinds)
	}
	// Unknown runs give a closed channel.
	ch2, _ := e.srv.Subscribe("nope")
	if _, ok := <-ch2; ok {
		t.Error("Subscribe(unknown) channel is open")
	}
}

func TestPassThrough(t *testing.T) {
	e := newTestEnv(t, nil)
	e.up.setChat(`{"id":"chatcmpl-up","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"raw"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`, nil)
	var c completion
	decodeJSON(t, e.post(t, `{"model":"m","tools":[{"type":"function","function":{"name":"f"}}],"tpo":{"mode":"off"},`+convo+`}`), 200, &c)
	if c.ID != "chatcmpl-up" || c.Choices[0].Message.Content != "raw" || c.TPO != nil {
		t.Errorf("pass-through answer = %+v", c)
	}
	var sent map[string]any
	if err := json.Unmarshal(e.up.passed()[0], &sent); err != nil {
		t.Fatal(err)
	}
	if _, ok := sent["tpo"]; ok || sent["tools"] == nil || sent["model"] != "m" {
		t.Errorf("relayed body = %s", e.up.passed()[0])
	}
	if e.up.generations() != 0 {
		t.Error("a pass-through request was optimized")
	}

	// An upstream 400 about the client's request keeps its status.
	e.up.setChat("", upErr("policy", "http://up/v1", 400, "bad tool schema", "tools"))
	var b errorBody
	decodeJSON(t, e.post(t, `{"model":"m","tpo":{"mode":"off"},`+convo+`}`), 400, &b)
	if !strings.Contains(b.Error.Message, "bad tool schema") || b.Error.Param == nil || *b.Error.Param != "tools" {
		t.Errorf("error = %+v", b.Error)
	}
	// A 500 is a bad gateway.
	e.up.setChat("", upErr("policy", "http://up/v1", 500, "boom", ""))
	decodeJSON(t, e.post(t, `{"model":"m","tpo":{"mode":"off"},`+convo+`}`), 502, &b)
}

func TestPassThroughStreamRelaysAsItArrives(t *testing.T) {
	e := newTestEnv(t, nil)
	gate := make(chan struct{})
	e.up.stream = func(w io.Writer) {
		io.WriteString(w, "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first\"}}]}\n\n")
		<-gate // the second event waits until the client has the first
		io.WriteString(w, "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"second\"}}]}\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
	}
	resp := e.post(t, `{"model":"m","stream":true,"tpo":{"mode":"off"},`+convo+`}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	buf := make([]byte, 4096)
	n, err := resp.Body.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "first") || strings.Contains(string(buf[:n]), "second") {
		t.Fatalf("first read = %q, %v; want the first event alone", buf[:n], err)
	}
	close(gate)
	rest, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(rest), "second") || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("rest = %q", rest)
	}
	if len(e.store.Items("run1")) != 0 {
		t.Error("a pass-through request was recorded")
	}
}

func TestModelsHealthMetrics(t *testing.T) {
	e := newTestEnv(t, nil)
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	decodeJSON(t, get(t, e.ts.URL+"/v1/models", ""), 200, &list)
	if list.Object != "list" || len(list.Data) != 3 || list.Data[0].ID != "m1" || list.Data[1].ID != "tpo/m1" || list.Data[2].ID != "off/m1" {
		t.Errorf("models = %+v, want m1 and the default presets tpo/m1 and off/m1", list)
	}
	var h map[string]any
	decodeJSON(t, get(t, e.ts.URL+"/healthz", ""), 200, &h)
	if h["status"] != "ok" {
		t.Errorf("healthz = %v", h)
	}
	var c completion
	decodeJSON(t, e.post(t, `{"model":"m",`+convo+`}`), 200, &c)
	e.post(t, `{}`)
	resp := get(t, e.ts.URL+"/metrics", "")
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`tpo_serve_requests_total{code="200",route="/v1/chat/completions"} 1`,
		`tpo_serve_requests_total{code="400",route="/v1/chat/completions"} 1`,
		`tpo_serve_stage_duration_seconds_count{stage="loss"} 2`,
		`tpo_serve_stage_duration_seconds_count{stage="score"} 3`,
		`tpo_serve_tokens_total{kind="completion",stage="sample"}`,
		`tpo_serve_optimizations_total{mode="tpo",outcome="ok"} 1`,
		`tpo_serve_optimizations_in_flight 0`,
		`tpo_serve_queue_length 0`,
		`tpo_serve_upstream_retries_total 0`,
		`tpo_serve_request_duration_seconds_bucket`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The Go runtime's and the process's collectors, in the server's own
	// registry (not the global one: tests make many servers).
	runtimeMetrics := []string{"go_goroutines ", "go_memstats_alloc_bytes ", "go_gc_duration_seconds"}
	if runtime.GOOS == "linux" {
		runtimeMetrics = append(runtimeMetrics, "process_open_fds ", "process_resident_memory_bytes ", "process_cpu_seconds_total ")
	}
	for _, want := range runtimeMetrics {
		if !strings.Contains(string(body), "\n"+want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestStoppingRulesPerRequest(t *testing.T) {
	e := newTestEnv(t, nil)
	// Every text scores its length: the samples ("answer 0 to: ...") beat
	// the updates ("improved ..."), so no round gains.
	var c completion
	decodeJSON(t, e.post(t, `{"model":"m",`+convo+`,"tpo":{"depth":4,"patience":1}}`), http.StatusOK, &c)
	if c.TPO.StopReason != tpo.StopPatience || c.TPO.Steps != 2 || len(e.up.policy.Calls()) != 4 {
		t.Errorf("patience 1: stop %q after %d steps and %d requests; want patience, 2 and 4", c.TPO.StopReason, c.TPO.Steps, len(e.up.policy.Calls()))
	}
	e2 := newTestEnv(t, nil)
	decodeJSON(t, e2.post(t, `{"model":"m",`+convo+`,"tpo":{"target_score":1}}`), http.StatusOK, &c)
	if c.TPO.StopReason != tpo.StopTarget || c.TPO.Steps != 1 {
		t.Errorf("target: stop %q after %d steps", c.TPO.StopReason, c.TPO.Steps)
	}
	e3 := newTestEnv(t, nil)
	decodeJSON(t, e3.post(t, `{"model":"m",`+convo+`}`), http.StatusOK, &c)
	if c.TPO.StopReason != tpo.StopDepth || c.TPO.Steps != 3 {
		t.Errorf("default: stop %q after %d steps", c.TPO.StopReason, c.TPO.Steps)
	}
	for _, body := range []string{`"patience":-1`, `"max_item_tokens":-5`, `"deadline_ms":0`, `"patience":"two"`} {
		resp := e3.post(t, `{"model":"m",`+convo+`,"tpo":{`+body+`}}`)
		var er struct{ Error errorObject }
		decodeJSON(t, resp, http.StatusBadRequest, &er)
		if er.Error.Param == nil || !strings.HasPrefix(*er.Error.Param, "tpo") {
			t.Errorf("%s: error %+v, want a 400 naming the tpo field", body, er.Error)
		}
	}
}

func TestDeadlineAnswersWithTheBestSoFar(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server time.Duration
		body   string
	}{
		{"request", 0, `"tpo":{"deadline_ms":200}`},
		{"server", 200 * time.Millisecond, `"tpo":{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, func(o *Options) { o.Deadline = tc.server })
			// The update call of step 1 hangs until its context ends.
			cancelled := make(chan struct{}, 1)
			e.up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
				if req.Stage == tpo.StageUpdate {
					<-ctx.Done()
					cancelled <- struct{}{}
					return ctx.Err()
				}
				return nil
			}
			t0 := time.Now()
			var c completion
			decodeJSON(t, e.post(t, `{"model":"m",`+convo+`,`+tc.body+`}`), http.StatusOK, &c)
			if c.TPO.StopReason != tpo.StopDeadline || c.TPO.Steps != 1 || len(c.Choices) != 1 || c.Choices[0].Message.Content == "" {
				t.Errorf("stop %q, %d steps, choices %+v; want the best step-0 sample at the deadline", c.TPO.StopReason, c.TPO.Steps, c.Choices)
			}
			if d := time.Since(t0); d < 200*time.Millisecond {
				t.Errorf("answered after %v, before the deadline", d)
			}
			select {
			case <-cancelled:
			default:
				t.Error("the update call in flight was not cancelled")
			}
		})
	}

	// Streaming clients see it in the final chunk.
	e := newTestEnv(t, nil)
	e.up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
		if req.Stage == tpo.StageGradient {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	resp := e.post(t, `{"model":"m","stream":true,`+convo+`,"tpo":{"deadline_ms":150}}`)
	events := readSSE(t, resp.Body)
	var final Optimization
	for _, ev := range events {
		var c streamChunk
		if ev.Data == "" || ev.Data == "[DONE]" || json.Unmarshal([]byte(ev.Data), &c) != nil || c.TPO == nil {
			continue
		}
		if len(c.Choices) == 1 && c.Choices[0].FinishReason != nil {
			_ = json.Unmarshal(*c.TPO, &final)
		}
	}
	if final.StopReason != tpo.StopDeadline {
		t.Errorf("final chunk's tpo object: %+v, want stop_reason deadline", final)
	}

	// Nothing scored by the deadline: a 504 that says so.
	e3 := newTestEnv(t, nil)
	e3.up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
		<-ctx.Done()
		return ctx.Err()
	}
	var er3 struct{ Error errorObject }
	decodeJSON(t, e3.post(t, `{"model":"m",`+convo+`,"tpo":{"deadline_ms":50}}`), http.StatusGatewayTimeout, &er3)
	if !strings.Contains(er3.Error.Message, "no response was scored before the answer was due") {
		t.Errorf("error %+v, want one saying nothing was scored in time", er3.Error)
	}

	// A deadline longer than the server's is refused.
	e2 := newTestEnv(t, func(o *Options) { o.Deadline = time.Second })
	var er struct{ Error errorObject }
	decodeJSON(t, e2.post(t, `{"model":"m",`+convo+`,"tpo":{"deadline_ms":5000}}`), http.StatusBadRequest, &er)
	if er.Error.Param == nil || *er.Error.Param != "tpo.deadline_ms" {
		t.Errorf("error %+v, want one naming tpo.deadline_ms", er.Error)
	}
}

// upErr is a model server's error answer at url as an Upstream reports it.
func upErr(role, url string, status int, msg, param string) *UpstreamError {
	return &UpstreamError{Role: role, Status: status, Message: msg, Param: param,
		Err: fmt.Errorf("%s server %s: POST /chat/completions: %d %s: %s", role, url, status, http.StatusText(status), msg)}
}
