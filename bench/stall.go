package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tpoproject/tpo"
)

// StallResult is what became of the clients that stopped reading, and of
// the server once the load was over.
type StallResult struct {
	// Clients is the number of clients that stopped reading, of Requests.
	Clients      int     `json:"clients"`
	WriteTimeout float64 `json:"write_timeout_s"`
	// Dropped counts their connections the server had closed when the
	// load was over; Held is how long the server worked on each of their
	// requests before it gave up (optimization, then writing until the
	// write timeout).
	Dropped int     `json:"dropped"`
	Held    Latency `json:"held"`
	// At the end, after the clients that read closed their idle
	// connections (those that stopped reading still holding theirs):
	// requests of stalled clients the server still handles, optimization
	// slots held, connections the server still has open, and goroutines
	// (before the load, at the peak, at the end).
	StillHandled    int `json:"still_handled"`
	SlotsHeld       int `json:"slots_held"`
	OpenConns       int `json:"open_connections"`
	GoroutinesStart int `json:"goroutines_start"`
	GoroutinesPeak  int `json:"goroutines_peak"`
	GoroutinesEnd   int `json:"goroutines_end"`
}

// stallHeader marks the requests of clients that stop reading, for the
// server side of the benchmark.
const stallHeader = "X-Bench-Stall"

// stallN is the n the stalled clients ask for: their answers (some
// 100 KB of events at D2-N5) fill the socket buffers, so that the server's
// writes block.
const stallN = 16

// stallRun drives the clients that stop reading and watches the server.
type stallRun struct {
	addr string

	mu      sync.Mutex
	conns   []net.Conn        // the clients' ends
	served  map[net.Conn]bool // the server's ends of their connections
	dropped int               // of those, closed by the server
	held    []float64         // ms

	active atomic.Int64 // stalled requests the server is handling
	open   atomic.Int64 // connections the server has open
	peak   atomic.Int64
}

// stalled reports whether measured request i of n is one of a share
// frac of them, spread evenly.
func stalled(i int, frac float64) bool {
	return int(float64(i+1)*frac) > int(float64(i)*frac)
}

// wrap counts the server's stalled requests and times them.
func (s *stallRun) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(stallHeader) == "" {
			h.ServeHTTP(w, r)
			return
		}
		s.active.Add(1)
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			s.mu.Lock()
			s.served[c] = true
			s.mu.Unlock()
		}
		t0 := time.Now()
		defer func() {
			s.mu.Lock()
			s.held = append(s.held, float64(time.Since(t0))/float64(time.Millisecond))
			s.mu.Unlock()
			s.active.Add(-1)
		}()
		h.ServeHTTP(w, r)
	})
}

// connKey is the context key of a request's connection.
type connKey struct{}

// connContext gives each request its connection.
func (s *stallRun) connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// connState counts the server's open connections, and those of stalled
// clients it closed.
func (s *stallRun) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.open.Add(-1)
		s.mu.Lock()
		if s.served[c] {
			s.dropped++
		}
		s.mu.Unlock()
	}
}

// send opens a connection with a small receive buffer, sends a streamed
// request for it and never reads the answer.
func (s *stallRun) send(ctx context.Context, it tpo.Item) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(1024)
	}
	body, err := json.Marshal(map[string]any{"model": "sim-policy", "messages": it.Messages, "stream": true, "n": stallN})
	if err != nil {
		c.Close()
		return err
	}
	_, err = fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%s: 1\r\nContent-Length: %d\r\n\r\n%s",
		s.addr, stallHeader, len(body), body)
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	return err
}

// sample records the peak number of goroutines until ctx ends.
func (s *stallRun) sample(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if n := int64(runtime.NumGoroutine()); n > s.peak.Load() {
			s.peak.Store(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// waitHandled waits until the server has given up on every stalled
// request, or limit passes.
func (s *stallRun) waitHandled(limit time.Duration) {
	for end := time.Now().Add(limit); s.active.Load() > 0 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
}

// closeClients closes the stalled clients' connections.
func (s *stallRun) closeClients() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// wanBuffers gives the server's connections a send buffer of 32 KiB (the
// kernel doubles it), about what a connection over a real network starts
// with. On loopback the kernel lets one buffer about a megabyte (its
// segments are 64 KiB), so that a client that stops reading would go
// unnoticed by the server until then.
type wanBuffers struct{ net.Listener }

// wanSendBuffer is the send buffer of the server's connections.
const wanSendBuffer = 32 << 10

func (l wanBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(wanSendBuffer)
	}
	return c, err
}

// settle waits until the number of goroutines stops falling (and, with
// a target, falls to it), and returns it.
func settle(target int, limit time.Duration) int {
	end := time.Now().Add(limit)
	last, still := runtime.NumGoroutine(), 0
	for time.Now().Before(end) {
		time.Sleep(20 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n < last || target > 0 && n > target {
			last, still = n, 0
			continue
		}
		if still++; still >= 10 {
			break
		}
	}
	return runtime.NumGoroutine()
}

// slotCounter is what the benchmark asks the server at the end.
type slotCounter interface {
	ServeHTTP(w http.ResponseWriter, r *http.Request)
}

// finish fills r once the server has given up on the stalled requests:
// the connections it closed, how long it held the requests, and what is
// left when every client has closed its connections.
func (s *stallRun) finish(r *StallResult, srv slotCounter, clients ...interface{ CloseIdleConnections() }) {
	// The server closes a connection a moment after its handler returns.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && s.active.Load() == 0; time.Sleep(20 * time.Millisecond) {
		s.mu.Lock()
		n := s.dropped
		s.mu.Unlock()
		if n >= r.Clients {
			break
		}
	}
	s.mu.Lock()
	r.Dropped, r.Held = s.dropped, summarize(s.held)
	s.mu.Unlock()
	r.GoroutinesPeak = int(s.peak.Load())
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	r.GoroutinesEnd = settle(r.GoroutinesStart, 10*time.Second)
	r.OpenConns = int(s.open.Load())
	r.SlotsHeld = inFlight(srv)
	r.StillHandled = int(s.active.Load())
	s.closeClients()
}

// inFlight asks the server's /healthz how many optimizations hold a slot.
func inFlight(srv slotCounter) int {
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/healthz", nil)
	srv.ServeHTTP(rec, req)
	var h struct {
		InFlight int `json:"in_flight"`
	}
	if json.Unmarshal(rec.body, &h) != nil {
		return -1
	}
	return h.InFlight
}

// recorder is a minimal http.ResponseWriter.
type recorder struct {
	header http.Header
	body   []byte
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(int)             {}
func (r *recorder) Write(b []byte) (int, error) { r.body = append(r.body, b...); return len(b), nil }
