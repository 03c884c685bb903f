package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fast returns options with millisecond backoff for tests.
func fast(urls ...string) Options {
	return Options{
		Name:        "policy",
		URLs:        urls,
		BaseBackoff: time.Millisecond,
		MaxBackoff:  5 * time.Millisecond,
		Timeout:     5 * time.Second,
	}
}

func newClient(t *testing.T, opts Options) *Client {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

type reply struct {
	OK bool `json:"ok"`
}

// failingThen answers the first n requests with status and body, then 200.
func failingThen(n int, status int, body string, hdr http.Header) (http.HandlerFunc, *atomic.Int32) {
	var count atomic.Int32
	return func(w http.ResponseWriter, r *http.Request) {
		k := count.Add(1)
		if int(k) <= n {
			for key, v := range hdr {
				w.Header()[key] = v
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	}, &count
}

func TestNew(t *testing.T) {
	tests := []struct {
		urls    []string
		wantErr string
		want    []string
	}{
		{urls: nil, wantErr: "no URL"},
		{urls: []string{"localhost:8000/v1"}, wantErr: `no scheme; did you mean "http://localhost:8000/v1"?`},
		{urls: []string{"127.0.0.1:8000"}, wantErr: `no scheme; did you mean "http://127.0.0.1:8000"?`},
		{urls: []string{"gpu-box/v1"}, wantErr: `did you mean "http://gpu-box/v1"?`},
		{urls: []string{"ftp://h/v1"}, wantErr: "absolute"},
		{urls: []string{"http://"}, wantErr: "no host"},
		{urls: []string{"http://user:secret@h/v1"}, wantErr: "credentials"},
		{urls: []string{"http://h/v1?x=1"}, wantErr: "query"},
		{urls: []string{"http://h:8000/v1/", "https://g/v1//"}, want: []string{"http://h:8000/v1", "https://g/v1"}},
		{urls: []string{"http://h/v1", "http://h/v1/"}, want: []string{"http://h/v1"}},
	}
	for _, tt := range tests {
		c, err := New(Options{Name: "policy", URLs: tt.urls})
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New(%q) error = %v, want it to mention %q", tt.urls, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("New(%q) error leaks a password: %v", tt.urls, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%q): %v", tt.urls, err)
			continue
		}
		if got := c.URLs(); fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("New(%q).URLs() = %q, want %q", tt.urls, got, tt.want)
		}
	}
}

func TestRetryOnStatus(t *testing.T) {
	for _, status := range []int{408, 429, 500, 502, 503, 504} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			h, count := failingThen(2, status, `{"error":{"message":"try later"}}`, nil)
			srv := httptest.NewServer(h)
			defer srv.Close()
			c := newClient(t, fast(srv.URL))
			var out reply
			info, err := c.PostJSON(context.Background(), "/x", map[string]int{"a": 1}, &out)
			if err != nil {
				t.Fatalf("PostJSON: %v", err)
			}
			if !out.OK {
				t.Errorf("out.OK = false, want true")
			}
			if info.Retries != 2 {
				t.Errorf("info.Retries = %d, want 2", info.Retries)
			}
			if got := count.Load(); got != 3 {
				t.Errorf("server saw %d requests, want 3", got)
			}
		})
	}
}

func TestRetriesExhausted(t *testing.T) {
	h, count := failingThen(100, 503, `{"object":"error","message":"overloaded","type":"ServiceUnavailable","code":503}`, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	opts := fast(srv.URL)
	opts.MaxRetries = 2
	c := newClient(t, opts)
	info, err := c.PostJSON(context.Background(), "/x", nil, nil)
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not a *StatusError", err)
	}
	if se.Status != 503 || se.Message != "overloaded" {
		t.Errorf("StatusError = %d %q, want 503 %q", se.Status, se.Message, "overloaded")
	}
	if got := count.Load(); got != 3 {
		t.Errorf("server saw %d requests, want 3 (1 + 2 retries)", got)
	}
	if info.Retries != 2 {
		t.Errorf("info.Retries = %d, want 2", info.Retries)
	}
	if !strings.Contains(err.Error(), "after 2 retries") {
		t.Errorf("error %q does not say how many retries were made", err)
	}

	// Negative MaxRetries: no retry at all.
	opts.MaxRetries = -1
	c = newClient(t, opts)
	count.Store(0)
	if _, err := c.PostJSON(context.Background(), "/x", nil, nil); err == nil {
		t.Fatal("PostJSON succeeded, want an error")
	}
	if got := count.Load(); got != 1 {
		t.Errorf("with MaxRetries -1 the server saw %d requests, want 1", got)
	}
}

func TestNoRetry(t *testing.T) {
	tests := []struct {
		status int
		body   string
	}{
		{400, `{"error":{"message":"bad","type":"BadRequestError","code":400}}`},
		{401, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`},
		{404, `{"object":"error","message":"The model x does not exist.","type":"NotFoundError","code":404}`},
		{422, `{"error":"Input validation error","error_type":"validation"}`},
		{429, `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}`},
		{501, `not implemented`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			h, count := failingThen(100, tt.status, tt.body, nil)
			srv := httptest.NewServer(h)
			defer srv.Close()
			c := newClient(t, fast(srv.URL))
			info, err := c.PostJSON(context.Background(), "/chat/completions", nil, nil)
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *StatusError", err)
			}
			if se.Status != tt.status {
				t.Errorf("Status = %d, want %d", se.Status, tt.status)
			}
			if se.Server != srv.URL || se.Path != "/chat/completions" || se.Name != "policy" {
				t.Errorf("StatusError names %q %q %q, want policy %q /chat/completions", se.Name, se.Server, se.Path, srv.URL)
			}
			if got := count.Load(); got != 1 {
				t.Errorf("server saw %d requests, want 1", got)
			}
			if info.Retries != 0 {
				t.Errorf("info.Retries = %d, want 0", info.Retries)
			}
		})
	}
}

// hijackClose closes the connection without answering.
func hijackClose(t *testing.T, w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		t.Error("response writer cannot hijack")
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	conn.Close()
}

func TestRetryDroppedConnection(t *testing.T) {
	var count atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch count.Add(1) {
		case 1:
			hijackClose(t, w)
		case 2:
			// Headers and half a body, then the connection drops.
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(200)
			io.WriteString(w, `{"ok":`)
			w.(http.Flusher).Flush()
			hijackClose(t, w)
		default:
			io.WriteString(w, `{"ok":true}`)
		}
	}))
	defer srv.Close()
	c := newClient(t, fast(srv.URL))
	var out reply
	info, err := c.PostJSON(context.Background(), "/x", struct{}{}, &out)
	if err != nil {
		t.Fatalf("PostJSON: %v", err)
	}
	if !out.OK || info.Retries != 2 {
		t.Errorf("got ok=%v retries=%d, want ok=true retries=2", out.OK, info.Retries)
	}
}

func TestMalformedBody(t *testing.T) {
	var count atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if count.Add(1) == 1 {
			io.WriteString(w, `<html>oops</html>`)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	c := newClient(t, fast(srv.URL))
	var out reply
	info, err := c.PostJSON(context.Background(), "/x", nil, &out)
	if err != nil || !out.OK || info.Retries != 1 {
		t.Fatalf("PostJSON = %+v, %v (ok=%v); want one retry and success", info, err, out.OK)
	}

	// Always malformed: the error says so and names the server.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ok":`)
	}))
	defer bad.Close()
	opts := fast(bad.URL)
	opts.MaxRetries = 1
	c = newClient(t, opts)
	_, err = c.PostJSON(context.Background(), "/x", nil, &out)
	if err == nil || !strings.Contains(err.Error(), "malformed response body from policy server "+bad.URL) {
		t.Errorf("error = %v, want it to say malformed response body from the server", err)
	}
}

func TestBodyCap(t *testing.T) {
	var count atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		fmt.Fprintf(w, `{"ok":true,"pad":%q}`, strings.Repeat("x", 1000))
	}))
	defer srv.Close()
	opts := fast(srv.URL)
	opts.MaxBodyBytes = 100
	c := newClient(t, opts)
	var out reply
	_, err := c.PostJSON(context.Background(), "/x", nil, &out)
	if err == nil || !strings.Contains(err.Error(), "exceeds 100 bytes") {
		t.Errorf("error = %v, want a body size error", err)
	}
	if got := count.Load(); got != 1 {
		t.Errorf("server saw %d requests, want 1 (an oversized body is not retried)", got)
	}
}

func TestRetryAfter(t *testing.T) {
	// With a one-hour backoff the test would hang unless Retry-After wins.
	t.Run("seconds", func(t *testing.T) {
		h, _ := failingThen(1, 429, `{"error":{"message":"slow down","type":"rate_limit_exceeded"}}`, http.Header{"Retry-After": {"0"}})
		srv := httptest.NewServer(h)
		defer srv.Close()
		opts := fast(srv.URL)
		opts.BaseBackoff = time.Hour
		opts.MaxBackoff = time.Hour
		c := newClient(t, opts)
		info, err := c.PostJSON(context.Background(), "/x", nil, nil)
		if err != nil || info.Retries != 1 {
			t.Fatalf("PostJSON = %+v, %v; want one retry", info, err)
		}
	})
	t.Run("capped", func(t *testing.T) {
		h, _ := failingThen(1, 503, `busy`, http.Header{"Retry-After": {"3600"}})
		srv := httptest.NewServer(h)
		defer srv.Close()
		opts := fast(srv.URL)
		opts.MaxBackoff = 2 * time.Millisecond
		c := newClient(t, opts)
		start := time.Now()
		info, err := c.PostJSON(context.Background(), "/x", nil, nil)
		if err != nil || info.Retries != 1 {
			t.Fatalf("PostJSON = %+v, %v; want one retry", info, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("call took %v; Retry-After was not capped by MaxBackoff", d)
		}
	})
	t.Run("date", func(t *testing.T) {
		past := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
		h, _ := failingThen(1, 503, `busy`, http.Header{"Retry-After": {past}})
		srv := httptest.NewServer(h)
		defer srv.Close()
		opts := fast(srv.URL)
		opts.BaseBackoff = time.Hour
		opts.MaxBackoff = time.Hour
		c := newClient(t, opts)
		info, err := c.PostJSON(context.Background(), "/x", nil, nil)
		if err != nil || info.Retries != 1 {
			t.Fatalf("PostJSON = %+v, %v; want one retry", info, err)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"5", 5 * time.Second, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"-3", 0, false},
		{"soon", 0, false},
		{"NaN", 0, false},
		{now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second, true},
		{now.Add(-10 * time.Second).Format(http.TimeFormat), 0, true},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	c := newClient(t, Options{URLs: []string{"http://h"}, BaseBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	for k := range 40 {
		ceil := min(10*time.Millisecond<<min(k, 20), 50*time.Millisecond)
		for range 20 {
			if d := c.backoff(k); d < 0 || d > ceil {
				t.Fatalf("backoff(%d) = %v, want within [0, %v]", k, d, ceil)
			}
		}
	}
}

func TestAttemptTimeout(t *testing.T) {
	var count atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // lets the server notice the client hanging up
		if count.Add(1) == 1 {
			select {
			case <-r.Context().Done(): // hang until the client gives up
			case <-time.After(5 * time.Second):
				t.Error("the client did not give up on a hanging attempt")
			}
			return
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	opts := fast(srv.URL)
	opts.Timeout = 50 * time.Millisecond
	c := newClient(t, opts)
	var out reply
	info, err := c.PostJSON(context.Background(), "/x", nil, &out)
	if err != nil || !out.OK || info.Retries != 1 {
		t.Fatalf("PostJSON = %+v, %v; want success after one retry", info, err)
	}
}

func TestAPIKey(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Method == http.MethodPost && r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", r.Header.Get("Content-Type"))
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	opts := fast(srv.URL)
	opts.APIKey = "sk-test-123"
	c := newClient(t, opts)
	if _, err := c.PostJSON(context.Background(), "/x", 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetJSON(context.Background(), "/models", nil); err != nil {
		t.Fatal(err)
	}
	c = newClient(t, fast(srv.URL))
	if _, err := c.GetJSON(context.Background(), "/models", nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"Bearer sk-test-123", "Bearer sk-test-123", ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Authorization headers = %q, want %q", got, want)
	}
}

func TestAPIKeyNotInErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(401)
		io.WriteString(w, `{"error":{"message":"Incorrect API key provided","code":"invalid_api_key"}}`)
	}))
	defer srv.Close()
	opts := fast(srv.URL)
	opts.APIKey = "sk-very-secret"
	c := newClient(t, opts)
	_, err := c.PostJSON(context.Background(), "/x", nil, nil)
	if err == nil || strings.Contains(err.Error(), "sk-very-secret") {
		t.Errorf("error = %v; want an error that does not contain the key", err)
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	var count atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		w.WriteHeader(503)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	opts := fast(srv.URL)
	opts.BaseBackoff = time.Hour
	opts.MaxBackoff = time.Hour
	// The client tells of the retry before it sleeps: cancel then.
	c := newClient(t, opts)
	_, err := c.PostJSON(WithRetryObserver(ctx, observerFunc(func(Retry) { cancel() })), "/x", nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	if !strings.Contains(err.Error(), "503") {
		t.Errorf("error %q does not mention the last failure", err)
	}
	if got := count.Load(); got != 1 {
		t.Errorf("server saw %d requests, want 1", got)
	}

	// A context that is already done sends nothing.
	_, err = c.GetJSON(ctx, "/x", nil)
	if !errors.Is(err, context.Canceled) || count.Load() != 1 {
		t.Errorf("with a cancelled ctx: err = %v, requests = %d; want context.Canceled and no request", err, count.Load())
	}
}

func TestMaxInFlight(t *testing.T) {
	const limit, callers = 3, 8
	arrived := make(chan struct{}, callers)
	gate := make(chan struct{})
	var cur, peak atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		arrived <- struct{}{}
		<-gate
		cur.Add(-1)
		io.WriteString(w, `{"ok":true}`)
	})
	a := httptest.NewServer(handler)
	defer a.Close()
	b := httptest.NewServer(handler)
	defer b.Close()
	opts := fast(a.URL, b.URL)
	opts.MaxInFlight = limit
	c := newClient(t, opts)

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			_, err := c.PostJSON(context.Background(), "/x", nil, nil)
			errs <- err
		})
	}
	for range limit {
		<-arrived
	}
	select {
	case <-arrived:
		t.Errorf("a request beyond MaxInFlight=%d reached the servers", limit)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if p := peak.Load(); p != limit {
		t.Errorf("peak concurrency = %d, want %d", p, limit)
	}

	// Waiting for a slot respects ctx.
	c2 := newClient(t, Options{URLs: []string{a.URL}, MaxInFlight: 1})
	c2.sem <- struct{}{} // occupy the only slot
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c2.GetJSON(ctx, "/x", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for a slot: error = %v, want context.DeadlineExceeded", err)
	}
}

func TestPick(t *testing.T) {
	now := time.Now()
	newC := func(n int) *Client {
		c := &Client{coolDown: time.Minute}
		for i := range n {
			c.replicas = append(c.replicas, &replica{url: fmt.Sprint("r", i)})
		}
		return c
	}
	t.Run("round robin on ties", func(t *testing.T) {
		c := newC(3)
		var got []string
		for range 4 {
			r := c.pick(nil, now)
			got = append(got, r.url)
			r.outstanding--
		}
		if want := "[r0 r1 r2 r0]"; fmt.Sprint(got) != want {
			t.Errorf("picks = %v, want %v", got, want)
		}
	})
	t.Run("fewest outstanding", func(t *testing.T) {
		c := newC(3)
		c.replicas[0].outstanding = 2
		c.replicas[1].outstanding = 1
		c.replicas[2].outstanding = 3
		if r := c.pick(nil, now); r.url != "r1" {
			t.Errorf("picked %s, want r1", r.url)
		}
		if r := c.pick(nil, now); r.url != "r0" { // r0 and r1 tie at 2; the rotation reaches r0 first
			t.Errorf("picked %s, want r0", r.url)
		}
	})
	t.Run("avoid", func(t *testing.T) {
		c := newC(2)
		c.replicas[1].outstanding = 5
		if r := c.pick(c.replicas[0], now); r.url != "r1" {
			t.Errorf("picked %s, want r1 (avoiding r0)", r.url)
		}
		c = newC(1)
		if r := c.pick(c.replicas[0], now); r.url != "r0" {
			t.Errorf("single replica: picked %s, want r0", r.url)
		}
	})
	t.Run("down skipped until cool-down", func(t *testing.T) {
		c := newC(2)
		c.replicas[0].down, c.replicas[0].downSince = true, now
		for range 3 {
			if r := c.pick(nil, now.Add(time.Second)); r.url != "r1" {
				t.Errorf("picked %s, want r1 while r0 is down", r.url)
			}
		}
		// After the cool-down r0 has fewer outstanding requests.
		if r := c.pick(nil, now.Add(2*time.Minute)); r.url != "r0" {
			t.Errorf("after cool-down picked %s, want r0", r.url)
		}
	})
	t.Run("all down", func(t *testing.T) {
		c := newC(3)
		for i, r := range c.replicas {
			r.down = true
			r.downSince = now.Add(time.Duration(-i) * time.Second)
		}
		if r := c.pick(nil, now); r.url != "r2" {
			t.Errorf("picked %s, want r2 (down longest)", r.url)
		}
	})
}

func TestFailover(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connections are now refused
	var count atomic.Int32
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		io.WriteString(w, `{"ok":true}`)
	}))
	defer live.Close()
	opts := fast(deadURL, live.URL)
	opts.CoolDown = time.Hour
	c := newClient(t, opts)
	info, err := c.PostJSON(context.Background(), "/x", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Retries != 1 || info.URL != live.URL {
		t.Errorf("first call: info = %+v, want 1 retry ending on %s", info, live.URL)
	}
	for range 3 {
		info, err := c.PostJSON(context.Background(), "/x", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if info.Retries != 0 || info.URL != live.URL {
			t.Errorf("later call: info = %+v, want no retry on %s (dead replica is down)", info, live.URL)
		}
	}
	if got := count.Load(); got != 4 {
		t.Errorf("live replica saw %d requests, want 4", got)
	}
}

func TestFailoverOn5xx(t *testing.T) {
	var aCount, bCount atomic.Int32
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		aCount.Add(1)
		w.WriteHeader(503)
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bCount.Add(1)
		io.WriteString(w, `{}`)
	}))
	defer b.Close()
	opts := fast(a.URL, b.URL)
	opts.CoolDown = time.Hour
	c := newClient(t, opts)
	for range 3 {
		if _, err := c.GetJSON(context.Background(), "/x", nil); err != nil {
			t.Fatal(err)
		}
	}
	if aCount.Load() != 1 || bCount.Load() != 3 {
		t.Errorf("requests a=%d b=%d, want a=1 b=3", aCount.Load(), bCount.Load())
	}
}

func TestStream(t *testing.T) {
	var count atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if count.Add(1) == 1 {
			w.WriteHeader(502)
			return
		}
		if got := r.Header.Get("Accept"); got != "text/event-stream" {
			t.Errorf("Accept = %q, want text/event-stream", got)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	defer srv.Close()
	opts := fast(srv.URL)
	opts.MaxInFlight = 1
	c := newClient(t, opts)
	for i := range 2 {
		resp, info, err := c.Stream(context.Background(), "/chat/completions", map[string]bool{"stream": true})
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := "data: 1\n\ndata: [DONE]\n\n"; string(body) != want {
			t.Errorf("body = %q, want %q", body, want)
		}
		wantRetries := 0
		if i == 0 {
			wantRetries = 1
		}
		if info.Retries != wantRetries {
			t.Errorf("call %d: retries = %d, want %d", i, info.Retries, wantRetries)
		}
	}
	// The second stream could only start because closing the first
	// released the in-flight slot.
	if len(c.sem) != 0 {
		t.Errorf("%d in-flight slots still held after closing", len(c.sem))
	}
}

func TestStreamError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		io.WriteString(w, `{"error":{"message":"stream_options requires stream","type":"BadRequestError","code":400}}`)
	}))
	defer srv.Close()
	c := newClient(t, fast(srv.URL))
	resp, _, err := c.Stream(context.Background(), "/chat/completions", nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 400 || se.Message != "stream_options requires stream" {
		t.Fatalf("Stream error = %v, want a 400 StatusError with the server's message", err)
	}
	if resp != nil {
		t.Error("Stream returned a response along with an error")
	}
}

func TestStreamTimeoutCoversHeadersOnly(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		time.Sleep(80 * time.Millisecond) // longer than the attempt timeout
		io.WriteString(w, "data: late\n\n")
	}))
	defer srv.Close()
	opts := fast(srv.URL)
	opts.Timeout = 30 * time.Millisecond
	c := newClient(t, opts)
	resp, _, err := c.Stream(context.Background(), "/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "data: late\n\n" {
		t.Errorf("body = %q, %v; want the late data", body, err)
	}
}

func TestPermanent(t *testing.T) {
	h, count := failingThen(100, 500, `{"error":{"code":500,"message":"Only one completion choice is allowed","type":"server_error"}}`, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	opts := fast(srv.URL)
	opts.Permanent = func(e *StatusError) bool { return strings.Contains(e.Message, "Only one completion choice") }
	c := newClient(t, opts)
	_, err := c.PostJSON(context.Background(), "/x", nil, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 500 {
		t.Fatalf("error = %v, want a 500 StatusError", err)
	}
	if got := count.Load(); got != 1 {
		t.Errorf("server saw %d requests, want 1 (a permanent error is not retried)", got)
	}
	if c.replicas[0].down {
		t.Error("a permanent error marked the replica down")
	}
}
