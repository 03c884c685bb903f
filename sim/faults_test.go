package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func newHTTPServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

func jsonBody(t *testing.T, v any) io.Reader {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

var faultChat = chatReq{Messages: msgs("user", "hello"), MaxTokens: 20}

func TestFaultErrorStatuses(t *testing.T) {
	// path returns the value at a path of keys in a decoded JSON object.
	path := func(v any, keys ...string) any {
		for _, k := range keys {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		}
		return v
	}
	tests := []struct {
		style  ErrorStyle
		faults Faults
		status int
		check  func(v any) bool // the body's shape
	}{
		{StyleVLLM, Faults{RateLimited: 1}, 429, func(v any) bool {
			return path(v, "error", "code") == 429.0 && path(v, "error", "message") != nil
		}},
		{StyleVLLM, Faults{ServerError: 1}, 500, func(v any) bool { return path(v, "error", "type") == "InternalServerError" }},
		{StyleOpenAI, Faults{RateLimited: 1}, 429, func(v any) bool { return path(v, "error", "code") == "rate_limit_exceeded" }},
		{StyleOpenAI, Faults{Unavailable: 1}, 503, func(v any) bool { return path(v, "error", "type") == "server_error" }},
		{StyleFlat, Faults{ServerError: 1}, 500, func(v any) bool { return path(v, "object") == "error" && path(v, "code") == 500.0 }},
		{StyleLlamaCpp, Faults{Unavailable: 1}, 503, func(v any) bool {
			return path(v, "error", "type") == "unavailable_error" && path(v, "error", "message") == "Loading model"
		}},
		{StyleOllama, Faults{Unavailable: 1}, 503, func(v any) bool { return path(v, "error", "type") == "api_error" }},
		{StyleTGI, Faults{RateLimited: 1}, 429, func(v any) bool {
			_, isString := path(v, "error").(string)
			return isString && path(v, "error_type") == "overloaded"
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.style)+"/"+http.StatusText(tt.status), func(t *testing.T) {
			f := tt.faults
			f.Style = tt.style
			f.RetryAfter = 2 * time.Second
			s, ts := newTest(t, Options{Seed: 1, Faults: f})
			for _, ep := range []struct {
				path string
				body any
			}{
				{EndpointChat, faultChat},
				{EndpointClassify, map[string]any{"input": []string{"x"}}},
			} {
				resp, body := post(t, nil, ts.URL+ep.path, ep.body)
				var v any
				if err := json.Unmarshal(body, &v); err != nil {
					t.Fatalf("%s: body %s is not JSON: %v", ep.path, body, err)
				}
				if resp.StatusCode != tt.status || !tt.check(v) {
					t.Errorf("%s: got %d %s, want %d with the %s shape", ep.path, resp.StatusCode, body, tt.status, tt.style)
				}
				wantRetry := ""
				if tt.status != 500 {
					wantRetry = "2"
				}
				if got := resp.Header.Get("Retry-After"); got != wantRetry {
					t.Errorf("%s: Retry-After %q, want %q", ep.path, got, wantRetry)
				}
			}
			if got := s.Stats().Faults[faultKinds[0]] + s.Stats().Faults[faultKinds[1]] + s.Stats().Faults[faultKinds[2]]; got != 2 {
				t.Errorf("faults counted %v, want 2 error statuses", s.Stats().Faults)
			}
		})
	}
}

func TestFaultMixedStyle(t *testing.T) {
	_, ts := newTest(t, Options{Seed: 1, Faults: Faults{ServerError: 1, Style: StyleMixed}})
	shapes := make(map[string]bool)
	for range 40 {
		_, body := post(t, nil, ts.URL+EndpointChat, faultChat)
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		switch e := v["error"].(type) {
		case string:
			shapes["tgi"] = true
		case map[string]any:
			shapes[e["type"].(string)] = true
		default:
			shapes["flat"] = v["object"] == "error"
		}
	}
	if len(shapes) < 4 {
		t.Errorf("mixed style gave only the shapes %v", shapes)
	}
}

func TestFaultTimeout(t *testing.T) {
	s, ts := newTest(t, Options{Seed: 1, Faults: Faults{Timeout: 1}})
	client := &http.Client{Timeout: 50 * time.Millisecond}
	_, err := client.Post(ts.URL+EndpointChat, "application/json", jsonBody(t, faultChat))
	var netErr interface{ Timeout() bool }
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Errorf("client error %v, want a timeout", err)
	}
	if got := s.Stats().Faults[FaultTimeout]; got != 1 {
		t.Errorf("timeouts counted %d, want 1", got)
	}

	// A client that waits gets the answer after Hang.
	_, ts = newTest(t, Options{Seed: 1, Faults: Faults{Timeout: 1, Hang: 30 * time.Millisecond}})
	start := time.Now()
	resp, body := post(t, nil, ts.URL+EndpointChat, faultChat)
	if resp.StatusCode != http.StatusOK || time.Since(start) < 30*time.Millisecond {
		t.Errorf("after a hang: status %d after %v, want 200 after 30ms (%s)", resp.StatusCode, time.Since(start), body)
	}
}

func TestFaultDrop(t *testing.T) {
	for _, path := range []string{EndpointChat, EndpointTokenize} {
		_, ts := newTest(t, Options{Seed: 1, Faults: Faults{Drop: 1}})
		resp, err := http.Post(ts.URL+path, "application/json",
			jsonBody(t, map[string]any{"messages": msgs("user", "hello"), "max_tokens": 20}))
		if err != nil {
			t.Fatalf("%s: the headers should arrive: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !errors.Is(err, io.ErrUnexpectedEOF) || len(body) == 0 {
			t.Errorf("%s: status %d, read %d bytes, error %v; want 200, part of the body, unexpected EOF",
				path, resp.StatusCode, len(body), err)
		}
	}
}

func TestFaultMalformed(t *testing.T) {
	_, ts := newTest(t, Options{Seed: 1, Faults: Faults{Malformed: 1}})
	resp, body := post(t, nil, ts.URL+EndpointChat, faultChat)
	var v any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) == nil {
		t.Errorf("status %d, body %s: want 200 with a body that is not JSON", resp.StatusCode, body)
	}
}

func TestFaultSlowFirstByte(t *testing.T) {
	_, ts := newTest(t, Options{Seed: 1, Faults: Faults{SlowFirstByte: 1, FirstByteDelay: 40 * time.Millisecond}})
	client := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 10 * time.Millisecond}}
	if _, err := client.Post(ts.URL+EndpointChat, "application/json", jsonBody(t, faultChat)); err == nil {
		t.Error("a client with a 10ms header timeout got an answer")
	}
	start := time.Now()
	resp, body := post(t, nil, ts.URL+EndpointChat, faultChat)
	var cr chatResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &cr) != nil || time.Since(start) < 40*time.Millisecond {
		t.Errorf("status %d after %v: want a good answer after 40ms (%s)", resp.StatusCode, time.Since(start), body)
	}
}

func TestRewardFaultsSeparate(t *testing.T) {
	_, ts := newTest(t, Options{Seed: 1, Faults: Faults{ServerError: 1}, RewardFaults: &Faults{}})
	if resp, _ := post(t, nil, ts.URL+EndpointChat, faultChat); resp.StatusCode != 500 {
		t.Errorf("chat: status %d, want 500", resp.StatusCode)
	}
	if resp, body := post(t, nil, ts.URL+EndpointPooling, map[string]any{"messages": msgs("user", "a", "assistant", "b")}); resp.StatusCode != 200 {
		t.Errorf("pooling: status %d (%s), want 200", resp.StatusCode, body)
	}
	_, ts = newTest(t, Options{Seed: 1, RewardFaults: &Faults{Unavailable: 1}})
	if resp, _ := post(t, nil, ts.URL+EndpointChat, faultChat); resp.StatusCode != 200 {
		t.Errorf("chat: status %d, want 200", resp.StatusCode)
	}
	if resp, _ := post(t, nil, ts.URL+EndpointClassify, map[string]any{"input": "x"}); resp.StatusCode != 503 {
		t.Errorf("classify: status %d, want 503", resp.StatusCode)
	}
	// Models and stats never fail.
	for _, p := range []string{EndpointModels, EndpointStats} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: status %d, want 200", p, resp.StatusCode)
		}
	}
}

func TestFaultRates(t *testing.T) {
	s, ts := newTest(t, Options{Seed: 9, Faults: Faults{RateLimited: 0.2, ServerError: 0.1, Malformed: 0.1}})
	const n = 300
	got := make(map[int]int)
	bad := 0
	for range n {
		resp, body := post(t, nil, ts.URL+EndpointTokenize, map[string]any{"prompt": "hello"})
		got[resp.StatusCode]++
		var v any
		if resp.StatusCode == 200 && json.Unmarshal(body, &v) != nil {
			bad++
		}
	}
	st := s.Stats()
	if int64(got[429]) != st.Faults[FaultRateLimited] || int64(got[500]) != st.Faults[FaultServerError] ||
		int64(bad) != st.Faults[FaultMalformed] {
		t.Errorf("observed %v and %d malformed, counted %v", got, bad, st.Faults)
	}
	within := func(k int, p float64) bool { return float64(k) > 0.5*p*n && float64(k) < 1.5*p*n }
	if !within(got[429], 0.2) || !within(got[500], 0.1) || !within(bad, 0.1) {
		t.Errorf("observed %v and %d malformed of %d, want about 20%%, 10%%, 10%%", got, bad, n)
	}
}

func TestFaultsPick(t *testing.T) {
	f := Faults{RateLimited: 0.1, Timeout: 0.2, SlowFirstByte: -1}
	tests := []struct {
		u    float64
		want FaultKind
	}{
		{0, FaultRateLimited}, {0.099, FaultRateLimited}, {0.1, FaultTimeout}, {0.29, FaultTimeout}, {0.31, ""}, {0.99, ""},
	}
	for _, tt := range tests {
		if got := f.pick(tt.u); got != tt.want {
			t.Errorf("pick(%v) = %q, want %q", tt.u, got, tt.want)
		}
	}
}

func TestCloseEndsHang(t *testing.T) {
	s := New(Options{Seed: 1, TimeScale: 1e-5, Faults: Faults{Timeout: 1}})
	ts := newHTTPServer(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+EndpointChat, jsonBody(t, faultChat))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	waitFor(t, func() bool { return s.Stats().Faults[FaultTimeout] == 1 })
	s.Close()
	if got := <-done; got != http.StatusServiceUnavailable {
		t.Errorf("hanging request at Close: status %d, want 503", got)
	}
}
