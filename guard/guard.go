package guard

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// Defaults of the timeouts of tpo's servers.
const (
	// DefaultWriteTimeout is how long one write of a response may wait for
	// the client to read.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultReadTimeout is how long a client has to send a request's
	// headers, and then its body.
	DefaultReadTimeout = 30 * time.Second
	// DefaultIdleTimeout is how long an idle keep-alive connection is kept.
	DefaultIdleTimeout = 2 * time.Minute
)

// Options configure Handler.
type Options struct {
	// Hosts are the host names the server answers to; a request for
	// another gets 421 Misdirected Request. Nil allows every host.
	Hosts *Hosts
	// ReadTimeout bounds the time a request's body takes to arrive, from
	// the moment the handler is called; a read after it fails with an
	// error wrapping os.ErrDeadlineExceeded (see BodyTimedOut). Zero: no
	// bound.
	ReadTimeout time.Duration
	// WriteTimeout bounds each write (and flush) of a response: a client
	// that reads nothing for that long makes the write fail, which ends
	// the request. Zero: no bound.
	WriteTimeout time.Duration
	// Misdirected writes the answer to a request for a host that is not
	// allowed, with status 421 (default: plain text). The connection is
	// closed after it without reading the request's body.
	Misdirected func(w http.ResponseWriter, r *http.Request, message string)
}

// Handler returns h behind the checks and deadlines of o.
func Handler(h http.Handler, o Options) http.Handler {
	if o.Misdirected == nil {
		o.Misdirected = func(w http.ResponseWriter, _ *http.Request, msg string) {
			http.Error(w, "421 misdirected request: "+msg, http.StatusMisdirectedRequest)
		}
	}
	return &handler{next: h, o: o}
}

type handler struct {
	next http.Handler
	o    Options
}

func (g *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.o.Hosts.Allows(r.Host) {
		Hangup(w, r)
		g.o.Misdirected(w, r, MisdirectedMessage(r.Host))
		return
	}
	rc := http.NewResponseController(w)
	if d := g.o.WriteTimeout; d > 0 {
		// Also covers what net/http writes itself before the handler does
		// (100 Continue), on a connection whose last deadline has passed.
		_ = rc.SetWriteDeadline(time.Now().Add(d))
		w = &deadlineWriter{ResponseWriter: w, rc: rc, d: d}
	}
	if d := g.o.ReadTimeout; d > 0 && hasBody(r) {
		// net/http lifts it when the body has been read to its end.
		_ = rc.SetReadDeadline(time.Now().Add(d))
	}
	g.next.ServeHTTP(w, r)
}

// MisdirectedMessage is the message of the 421 answer to a request for
// host. It does not list the allowed hosts: a page that reached the
// server through DNS rebinding can read it.
func MisdirectedMessage(host string) string {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	return fmt.Sprintf("this server does not answer to the host name %q; to reach it under that name, start it with --allowed-host %s", host, name)
}

func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// Hangup makes the response to r the last of its connection and stops
// reading r's body: the connection is closed once the response is written,
// without waiting for a body the handler will not read (net/http would
// otherwise read up to 256 KiB of it, as slowly as the client sends it).
// Call it before writing the response.
func Hangup(w http.ResponseWriter, r *http.Request) {
	if !hasBody(r) {
		return
	}
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// BodyTimedOut reports whether err, from reading a request body, means the
// body did not arrive within the read timeout.
func BodyTimedOut(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// deadlineWriter moves the connection's write deadline before every write
// and flush, so that each one may wait for the client that long.
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.d))
	return w.ResponseWriter.Write(p)
}

// FlushError flushes the response, reporting a failed write.
func (w *deadlineWriter) FlushError() error {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.d))
	return w.rc.Flush()
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
