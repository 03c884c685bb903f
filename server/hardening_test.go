package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/guard"
)

// smallBuffers gives accepted connections a small send buffer, as a
// saturated path does: a client that stops reading blocks the server's
// writes after a few kilobytes.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

// newSmallBufferEnv is newTestEnv whose listener has small send buffers;
// wrap, if set, wraps the server's handler.
func newSmallBufferEnv(t *testing.T, edit func(*Options), wrap func(http.Handler) http.Handler) *testEnv {
	t.Helper()
	e := newTestEnv(t, edit)
	e.ts.Close()
	var h http.Handler = e.srv
	if wrap != nil {
		h = wrap(h)
	}
	e.ts = httptest.NewUnstartedServer(h)
	e.ts.Listener = smallBuffers{e.ts.Listener}
	e.ts.Start()
	t.Cleanup(e.ts.Close)
	return e
}

// stalledClient sends a request by hand on a connection with a tiny
// receive buffer, and never reads the answer. The connection is closed
// when the test ends.
func stalledClient(t *testing.T, addr, body string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetReadBuffer(1024)
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return c
}

// mentions reports whether a message of req contains s.
func mentions(req tpo.GenerateRequest, s string) bool {
	for _, m := range req.Messages {
		if strings.Contains(m.Content, s) {
			return true
		}
	}
	return false
}

// inFlight reads the number of optimizations /healthz reports.
func inFlight(t *testing.T, e *testEnv) int {
	t.Helper()
	var h struct {
		InFlight int `json:"in_flight"`
	}
	decodeJSON(t, get(t, e.ts.URL+"/healthz", ""), 200, &h)
	return h.InFlight
}

// waitFor polls cond until it holds or limit passes.
func waitFor(limit time.Duration, cond func() bool) bool {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestSlowReadersFreeTheirSlots: streaming clients that stop reading while
// their optimization runs are dropped once a write has waited for the
// write timeout; their optimizations are cancelled, recorded as failed
// with the reason, and their slots serve other requests.
func TestSlowReadersFreeTheirSlots(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	e := newSmallBufferEnv(t, func(o *Options) {
		o.MaxConcurrent, o.QueueWait = 2, -1
		o.WriteTimeout = writeTimeout
		o.KeepAlive = time.Millisecond // fills the buffers fast
	}, nil)
	// Every optimization of the stalled clients waits in its loss call
	// until cancelled.
	e.up.block = func(ctx context.Context, _ int, req tpo.GenerateRequest) error {
		if req.Stage == tpo.StageLoss && mentions(req, "stall") {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"stall"}]}`
	for range 2 {
		stalledClient(t, e.ts.Listener.Addr().String(), body)
	}
	if !waitFor(10*time.Second, func() bool { return inFlight(t, e) == 2 }) {
		t.Fatalf("%d optimizations in flight, want the 2 stalled clients'", inFlight(t, e))
	}
	if s := e.post(t, `{"model":"m",`+convo+`}`).StatusCode; s != http.StatusTooManyRequests {
		t.Fatalf("a request while both slots are held: %d, want 429", s)
	}

	// Within the write timeout (plus a margin for the buffers to fill and
	// a busy machine), both slots are free again.
	if !waitFor(writeTimeout+10*time.Second, func() bool { return inFlight(t, e) == 0 }) {
		t.Fatalf("%d slots still held by clients that read nothing", inFlight(t, e))
	}
	var c completion
	decodeJSON(t, e.post(t, `{"model":"m",`+convo+`}`), http.StatusOK, &c)

	failed := 0
	for _, r := range e.srv.InFlight() {
		t.Errorf("still in flight: %+v", r)
	}
	for _, run := range e.store.Runs() {
		items := e.store.Items(run.ID)
		if len(items) != 1 || items[0].Item.Prompt() != "stall" {
			continue
		}
		res := items[0].Result
		want := fmt.Sprintf("cancelled: the client read nothing for %v (the write timeout)", writeTimeout)
		if res == nil || res.Error != want || run.Finished == nil {
			t.Errorf("stalled client's run %s: result %+v, finished %v; want the error %q", run.ID, res, run.Finished, want)
		}
		failed++
	}
	if failed != 2 {
		t.Errorf("%d runs of stalled clients recorded as failed, want 2", failed)
	}
}

// TestSlowReaderOfAnAnswer: a client that reads nothing of a large
// non-streamed answer holds no slot while it is written, and is dropped
// after the write timeout.
func TestSlowReaderOfAnAnswer(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	done := make(chan struct{})
	e := newSmallBufferEnv(t, func(o *Options) { o.MaxConcurrent, o.QueueWait, o.WriteTimeout = 1, -1, writeTimeout },
		func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h.ServeHTTP(w, r)
				if r.URL.Path == "/v1/chat/completions" {
					close(done)
				}
			})
		})
	e.up.policy.Respond = func(_ int, req tpo.GenerateRequest, _ int) string {
		if req.Stage == tpo.StageUpdate {
			return "<improved_response>short</improved_response>"
		}
		return strings.Repeat("long answer ", 1<<16) // 768 KiB
	}
	stalledClient(t, e.ts.Listener.Addr().String(), `{"model":"m","messages":[{"role":"user","content":"long"}]}`)
	select {
	case <-done:
	case <-time.After(writeTimeout + 10*time.Second):
		t.Fatal("the handler still writes to a client that reads nothing")
	}
	if n := inFlight(t, e); n != 0 {
		t.Errorf("%d slots held after the answer was dropped", n)
	}
}

// TestRefusedWithoutReadingTheBody: a request without a key, for another
// host or of another content type is answered at once and its connection
// closed, although the client has not sent the body it announced.
func TestRefusedWithoutReadingTheBody(t *testing.T) {
	hosts, _ := guard.ParseHosts(guard.LoopbackHosts)
	e := newTestEnv(t, func(o *Options) { o.APIKeys = []string{"k"}; o.AllowedHosts = hosts })
	tests := []struct {
		name   string
		header string
		status int
		code   string
	}{
		{"no key", "Host: 127.0.0.1\r\nContent-Type: application/json\r\n", 401, "missing_api_key"},
		{"other host", "Host: rebound.example:8080\r\nAuthorization: Bearer k\r\nContent-Type: application/json\r\n", 421, "misdirected_request"},
		{"text/plain", "Host: localhost\r\nAuthorization: Bearer k\r\nContent-Type: text/plain\r\n", 415, "unsupported_media_type"},
		{"unknown route", "Host: localhost\r\nAuthorization: Bearer k\r\nContent-Type: application/json\r\n", 404, "unknown_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.ts.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			path := "/v1/chat/completions"
			if tt.status == 404 {
				path = "/v1/nothing"
			}
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\n%sContent-Length: 100000\r\n\r\n{\"model\":", path, tt.header)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer before the body: %v", err)
			}
			data, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("the connection stays open after the answer: %v", err)
			}
			var b errorBody
			if err := json.Unmarshal(data, &b); err != nil || resp.StatusCode != tt.status || b.Error.Code == nil || *b.Error.Code != tt.code {
				t.Errorf("status %d, body %s; want %d %s", resp.StatusCode, data, tt.status, tt.code)
			}
			if !resp.Close {
				t.Error("the answer does not say Connection: close")
			}
		})
	}
	if n := e.up.generations(); n != 0 {
		t.Errorf("%d generations for refused requests", n)
	}
}

// TestCrossSiteForm: what a form of another site can send (text/plain,
// urlencoded, multipart) or a script without a type, gets a 415 and starts
// nothing; JSON types pass.
func TestCrossSiteForm(t *testing.T) {
	e := newTestEnv(t, nil)
	body := `{"model":"m",` + convo + `}`
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "application/jsonx", "json"} {
		resp := e.post(t, body, "Content-Type", ct)
		var b errorBody
		decodeJSON(t, resp, http.StatusUnsupportedMediaType, &b)
		if b.Error.Type != typeInvalidRequest || !strings.Contains(b.Error.Message, "Content-Type: application/json") {
			t.Errorf("Content-Type %q: error %+v", ct, b.Error)
		}
	}
	if n := e.up.generations(); n != 0 {
		t.Errorf("%d generations started by requests that are not JSON", n)
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"} {
		if s := e.post(t, body, "Content-Type", ct).StatusCode; s != 200 {
			t.Errorf("Content-Type %q: status %d, want 200", ct, s)
		}
	}
}

// TestMisdirected: a request whose Host the server does not answer to
// gets a 421 in the OpenAI error shape, on every route.
func TestMisdirected(t *testing.T) {
	hosts, _ := guard.ParseHosts([]string{"localhost", "127.0.0.1", "tpo.internal"})
	e := newTestEnv(t, func(o *Options) { o.AllowedHosts = hosts })
	for _, host := range []string{"rebound.example", "rebound.example:8080", "127.0.0.1.nip.example"} {
		for _, path := range []string{"/v1/models", "/healthz", "/metrics"} {
			req, _ := http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var b errorBody
			decodeJSON(t, resp, http.StatusMisdirectedRequest, &b)
			if !strings.Contains(b.Error.Message, fmt.Sprintf("%q", host)) || strings.Contains(b.Error.Message, "tpo.internal") {
				t.Errorf("%s %s: message %q: want the host named, not the allowed ones", host, path, b.Error.Message)
			}
		}
	}
	for _, host := range []string{"localhost:8080", "TPO.internal", "127.0.0.1"} {
		req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/healthz", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("host %s: %d", host, resp.StatusCode)
		}
	}
	resp := get(t, e.ts.URL+"/metrics", "")
	data, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(data), `tpo_serve_requests_total{code="421",route="misdirected"} 9`) {
		t.Errorf("the metrics do not count the 421s:\n%s", data)
	}
}

// TestSlowBody: a body that does not arrive within the read timeout gets a
// 408, and the connection is closed.
func TestSlowBody(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.ReadTimeout = 100 * time.Millisecond })
	c, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a trickled body: %v", err)
	}
	var b errorBody
	decodeJSON(t, resp, http.StatusRequestTimeout, &b)
	if b.Error.Message != "the request body did not arrive within 100ms" || !resp.Close {
		t.Errorf("error %+v, close %v", b.Error, resp.Close)
	}
}
