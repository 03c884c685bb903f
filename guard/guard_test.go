package guard

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawConn dials the test server; the test writes requests by hand.
func rawConn(t *testing.T, ts *httptest.Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestMisdirectedClosesWithoutReadingBody: a request for another host gets
// a 421 at once and its connection is closed, though the client has not
// sent the body it announced.
func TestMisdirectedClosesWithoutReadingBody(t *testing.T) {
	hosts, _ := ParseHosts(LoopbackHosts)
	var called atomic.Bool
	ts := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called.Store(true) }),
		Options{Hosts: hosts}))
	t.Cleanup(ts.Close)

	c := rawConn(t, ts)
	io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: evil.example:8080\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n{\"messages\":")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the connection was not closed after the response: %v", err)
	}
	if resp.StatusCode != http.StatusMisdirectedRequest || !resp.Close {
		t.Errorf("status %d, close %v; want 421 and the connection closed", resp.StatusCode, resp.Close)
	}
	if !strings.Contains(string(body), `"evil.example:8080"`) || !strings.Contains(string(body), "--allowed-host") || strings.Contains(string(body), "127.0.0.1") {
		t.Errorf("body %q: want the host refused and the flag, not the hosts allowed", body)
	}
	if called.Load() {
		t.Error("the handler ran for a refused host")
	}

	// An allowed host reaches the handler.
	c2 := rawConn(t, ts)
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil || resp.StatusCode != 200 || !called.Load() {
		t.Errorf("allowed host: %v, %v, handler called %v", resp, err, called.Load())
	}
}

// TestWriteTimeoutDropsSlowReader: a client with a small receive buffer
// that never reads makes a write fail within the write timeout.
func TestWriteTimeoutDropsSlowReader(t *testing.T) {
	const timeout = 200 * time.Millisecond
	failed := make(chan time.Duration, 1)
	ts := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 64<<10))
		rc := http.NewResponseController(w)
		var last time.Time
		for {
			last = time.Now()
			if _, err := w.Write(chunk); err != nil {
				break
			}
			if err := rc.Flush(); err != nil {
				break
			}
		}
		failed <- time.Since(last)
	}), Options{WriteTimeout: timeout}))
	t.Cleanup(ts.Close)

	c := rawConn(t, ts)
	c.(*net.TCPConn).SetReadBuffer(1024)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	select {
	case d := <-failed:
		if d < timeout {
			t.Errorf("the write failed after %v, before the timeout of %v", d, timeout)
		}
	case <-time.After(timeout + 10*time.Second):
		t.Fatal("a client that reads nothing holds the handler past the write timeout")
	}
}

// TestReadTimeout: a body that does not arrive in time fails the read; a
// body that did arrive lifts the deadline, so that a long handler after it
// keeps its context.
func TestReadTimeout(t *testing.T) {
	const timeout = 150 * time.Millisecond
	type outcome struct {
		err       error
		cancelled bool
	}
	got := make(chan outcome, 1)
	ts := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err == nil {
			time.Sleep(3 * timeout) // a long optimization
		}
		got <- outcome{err, r.Context().Err() != nil}
	}), Options{ReadTimeout: timeout}))
	t.Cleanup(ts.Close)

	c := rawConn(t, ts)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n{\"a")
	select {
	case o := <-got:
		if !BodyTimedOut(o.err) {
			t.Errorf("reading a trickled body: %v, want a timeout", o.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a trickled body holds the handler past the read timeout")
	}

	resp, err := http.Post(ts.URL, "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if o := <-got; o.err != nil || o.cancelled {
		t.Errorf("a body sent at once: read error %v, context cancelled %v", o.err, o.cancelled)
	}
}

// TestDeadlinesRenewedOnKeepAlive: a connection idle for longer than the
// write timeout serves its next request.
func TestDeadlinesRenewedOnKeepAlive(t *testing.T) {
	const timeout = 100 * time.Millisecond
	ts := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}), Options{WriteTimeout: timeout, ReadTimeout: timeout}))
	t.Cleanup(ts.Close)
	c := rawConn(t, ts)
	br := bufio.NewReader(c)
	for i := range 2 {
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "ok" {
			t.Errorf("request %d: body %q", i, b)
		}
		time.Sleep(3 * timeout)
	}
}
