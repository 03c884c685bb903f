// Package httpx is the JSON-over-HTTP client shared by tpo's model server
// backends. It spreads calls over replicas of one model, retries transient
// failures with jittered exponential backoff, caps requests in flight and
// reads every error body shape model servers use.
package httpx

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tpoproject/tpo"
)

// Defaults for Options fields left zero.
const (
	DefaultTimeout      = 10 * time.Minute
	DefaultMaxRetries   = 4
	DefaultBaseBackoff  = 500 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	DefaultCoolDown     = 10 * time.Second
	DefaultMaxBodyBytes = 64 << 20
)

// maxErrorBody caps how much of an error response is read.
const maxErrorBody = 1 << 20

// Options configures a Client.
type Options struct {
	Name        string        // "policy", "reward", "judge": used in errors and logs
	URLs        []string      // base URLs of replicas of the same model (at least one), e.g. http://host:8000/v1
	APIKey      string        // sent as "Authorization: Bearer KEY" when set; never logged or put in errors
	Timeout     time.Duration // per attempt (default 10m, generation is slow)
	MaxRetries  int           // retries after the first attempt (default 4; 0 means default, negative means none)
	BaseBackoff time.Duration // default 500ms; jittered exponential: base*2^k, full jitter
	MaxBackoff  time.Duration // cap for backoff and for Retry-After (default 30s)
	MaxInFlight int           // requests in flight across all replicas (0 = unlimited); waiting respects ctx
	HTTPClient  *http.Client  // optional
	Logger      *slog.Logger  // optional

	// CoolDown is how long a replica that failed with a connection error
	// or a 5xx is skipped (default 10s).
	CoolDown time.Duration
	// MaxBodyBytes caps the size of a response body (default 64 MiB).
	MaxBodyBytes int64
	// Permanent, when set, marks error answers that must not be retried
	// and do not make a replica look unhealthy even though their status is
	// usually transient (llama.cpp answers n > 1 with a 500, for example).
	Permanent func(*StatusError) bool
	// Tracer, when set, records a span per HTTP attempt and sends the
	// W3C traceparent header with every request.
	Tracer tpo.Tracer
}

// Info tells what one call cost.
type Info struct {
	Retries int    // attempts retried after a failure
	URL     string // base URL of the replica used last
}

// Usage is what a call that ended with err cost: one request when it
// succeeded, and its retries.
func (i Info) Usage(err error) tpo.Usage {
	u := tpo.Usage{Retries: i.Retries}
	if err == nil {
		u.Requests = 1
	}
	return u
}

// Client sends JSON requests to one model served by one or more replicas.
// It is safe for concurrent use.
type Client struct {
	name         string
	apiKey       string
	timeout      time.Duration
	maxRetries   int
	baseBackoff  time.Duration
	maxBackoff   time.Duration
	coolDown     time.Duration
	maxBodyBytes int64
	hc           *http.Client
	log          *slog.Logger
	sem          chan struct{} // nil when unlimited
	permanent    func(*StatusError) bool
	tracer       tpo.Tracer // nil: none

	mu       sync.Mutex
	replicas []*replica
	next     int // round-robin start for ties
}

type replica struct {
	url         string
	outstanding int
	down        bool
	downSince   time.Time
}

// New returns a client for the replicas in opts.URLs. Each URL must be an
// absolute http or https URL; trailing slashes are removed.
func New(opts Options) (*Client, error) {
	name := opts.Name
	if name == "" {
		name = "model"
	}
	if len(opts.URLs) == 0 {
		return nil, fmt.Errorf("%s server: no URL given", name)
	}
	c := &Client{
		name:         name,
		apiKey:       opts.APIKey,
		timeout:      opts.Timeout,
		maxRetries:   opts.MaxRetries,
		baseBackoff:  opts.BaseBackoff,
		maxBackoff:   opts.MaxBackoff,
		coolDown:     opts.CoolDown,
		maxBodyBytes: opts.MaxBodyBytes,
		hc:           opts.HTTPClient,
		log:          opts.Logger,
		permanent:    opts.Permanent,
		tracer:       opts.Tracer,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.baseBackoff <= 0 {
		c.baseBackoff = DefaultBaseBackoff
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = DefaultMaxBackoff
	}
	if c.coolDown <= 0 {
		c.coolDown = DefaultCoolDown
	}
	if c.maxBodyBytes <= 0 {
		c.maxBodyBytes = DefaultMaxBodyBytes
	}
	if c.hc == nil {
		// Keep as many idle connections per server as requests may be in
		// flight: the default of 2 makes a busy client open and close a
		// connection per request and fill the port range with TIME_WAIT.
		t := http.DefaultTransport.(*http.Transport).Clone()
		idle := opts.MaxInFlight
		if idle <= 0 {
			idle = 256
		}
		t.MaxIdleConnsPerHost = idle
		t.MaxIdleConns = 0 // no global cap
		c.hc = &http.Client{Transport: t}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxInFlight > 0 {
		c.sem = make(chan struct{}, opts.MaxInFlight)
	}
	seen := make(map[string]bool)
	for _, raw := range opts.URLs {
		u, err := normalizeURL(raw)
		if err != nil {
			return nil, fmt.Errorf("%s server: %w", name, err)
		}
		if seen[u] {
			continue
		}
		seen[u] = true
		c.replicas = append(c.replicas, &replica{url: u})
	}
	return c, nil
}

// CheckURL reports what is wrong with raw as the base URL of a server:
// it must be an absolute http:// or https:// URL with a host, without
// credentials, query or fragment. A URL without a scheme, such as
// localhost:8000/v1, gets the suggestion http://localhost:8000/v1.
func CheckURL(raw string) error {
	_, err := normalizeURL(raw)
	return err
}

// URLError says what is wrong with a server's base URL.
type URLError struct {
	URL     string // as given, with any password redacted
	Problem string // e.g. `no scheme; did you mean "http://localhost:8000/v1"?`
}

func (e *URLError) Error() string { return fmt.Sprintf("invalid URL %q: %s", e.URL, e.Problem) }

func normalizeURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s != "" && !strings.Contains(s, "://") {
		return "", &URLError{raw, fmt.Sprintf("no scheme; did you mean %q?", "http://"+strings.TrimLeft(s, "/"))}
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", &URLError{raw, err.Error()}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", &URLError{raw, "want an absolute http:// or https:// URL"}
	}
	if u.Host == "" {
		return "", &URLError{raw, "no host"}
	}
	if u.User != nil {
		return "", &URLError{u.Redacted(), "credentials in the URL are not supported; use an API key"}
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", &URLError{raw, "a base URL cannot have a query or fragment"}
	}
	return strings.TrimRight(s, "/"), nil
}

// Name returns the role the client was created with.
func (c *Client) Name() string { return c.name }

// Tracer returns the tracer of the client's spans, nil when none.
func (c *Client) Tracer() tpo.Tracer { return c.tracer }

// URLs returns the replicas' base URLs.
func (c *Client) URLs() []string {
	urls := make([]string, len(c.replicas))
	for i, r := range c.replicas {
		urls[i] = r.url
	}
	return urls
}

// PostJSON sends body as JSON to path on a replica and decodes the 2xx
// response into out (unless out is nil).
func (c *Client) PostJSON(ctx context.Context, path string, body, out any) (Info, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return Info{}, fmt.Errorf("%s server: encoding request for %s: %w", c.name, path, err)
	}
	return c.do(ctx, http.MethodPost, path, data, out)
}

// GetJSON gets path from a replica and decodes the 2xx response into out.
func (c *Client) GetJSON(ctx context.Context, path string, out any) (Info, error) {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

func (c *Client) do(ctx context.Context, method, path string, data []byte, out any) (info Info, err error) {
	var last error
	var avoid *replica
	for attempt := 0; ; attempt++ {
		r, release, err := c.acquire(ctx, avoid)
		if err != nil {
			return info, c.ctxError(method, path, err, last)
		}
		info.URL = r.url
		res := c.attempt(ctx, r, method, path, data, out)
		release(res)
		if res.err == nil {
			return info, nil
		}
		if ctx.Err() != nil {
			return info, c.ctxError(method, path, ctx.Err(), last)
		}
		last = res.err
		if !res.retry || attempt >= c.maxRetries {
			return info, c.final(res.err, attempt)
		}
		if err := c.wait(ctx, method, path, r.url, attempt, res); err != nil {
			return info, c.ctxError(method, path, err, last)
		}
		info.Retries++
		avoid = r
	}
}

// Stream POSTs body and returns the open 2xx response, retrying only
// failures that happen before a 2xx status arrives. The caller must close
// the response body. The per-attempt timeout covers the wait for the
// response headers only; ctx covers the whole stream.
func (c *Client) Stream(ctx context.Context, path string, body any) (*http.Response, Info, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, Info{}, fmt.Errorf("%s server: encoding request for %s: %w", c.name, path, err)
	}
	const method = http.MethodPost
	var info Info
	var last error
	var avoid *replica
	for attempt := 0; ; attempt++ {
		r, release, err := c.acquire(ctx, avoid)
		if err != nil {
			return nil, info, c.ctxError(method, path, err, last)
		}
		info.URL = r.url
		resp, res := c.streamAttempt(ctx, r, path, data)
		if res.err == nil {
			resp.Body = &streamBody{ReadCloser: resp.Body, done: func() { release(res) }}
			return resp, info, nil
		}
		release(res)
		if ctx.Err() != nil {
			return nil, info, c.ctxError(method, path, ctx.Err(), last)
		}
		last = res.err
		if !res.retry || attempt >= c.maxRetries {
			return nil, info, c.final(res.err, attempt)
		}
		if err := c.wait(ctx, method, path, r.url, attempt, res); err != nil {
			return nil, info, c.ctxError(method, path, err, last)
		}
		info.Retries++
		avoid = r
	}
}

// streamBody releases the replica and the in-flight slot when closed.
type streamBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *streamBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

// result is the outcome of one attempt.
type result struct {
	err        error
	retry      bool          // the failure is transient
	down       bool          // the replica looks unhealthy
	retryAfter time.Duration // the server's Retry-After, or -1
	reason     string        // the kind of failure, for Retry.Reason
}

func (c *Client) newRequest(ctx context.Context, r *replica, method, path string, data []byte) (*http.Request, error) {
	var body io.Reader
	if data != nil {
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.url+path, body)
	if err != nil {
		return nil, err
	}
	if data != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	if c.tracer != nil {
		c.tracer.Inject(ctx, req.Header.Set)
	}
	return req, nil
}

// startSpan starts the span of one attempt, when tracing.
func (c *Client) startSpan(ctx context.Context, r *replica, method, path string) (context.Context, tpo.Span) {
	if c.tracer == nil {
		return ctx, nil
	}
	return c.tracer.Start(ctx, "HTTP "+method+" "+path, tpo.A("tpo.backend", c.name),
		tpo.A("server.address", r.url), tpo.A("http.request.method", method), tpo.A("url.path", path))
}

// endSpan ends an attempt's span with its status and outcome.
func endSpan(span tpo.Span, status int, res result) {
	if span == nil {
		return
	}
	if status > 0 {
		span.Set(tpo.A("http.response.status_code", status))
	}
	if res.reason != "" {
		span.Set(tpo.A("tpo.retry_reason", res.reason), tpo.A("tpo.retryable", res.retry))
	}
	span.End(res.err)
}

func (c *Client) attempt(ctx context.Context, r *replica, method, path string, data []byte, out any) (res result) {
	ctx, span := c.startSpan(ctx, r, method, path)
	status := 0
	defer func() { endSpan(span, status, res) }()
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.newRequest(actx, r, method, path, data)
	if err != nil {
		return result{err: fmt.Errorf("%s server %s: %s %s: %w", c.name, r.url, method, path, err)}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(r, method, path, err)
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.statusError(r, method, path, resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBodyBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return result{err: ctx.Err()}
		}
		return result{
			err:        fmt.Errorf("malformed response body from %s server %s: %s %s: %w", c.name, r.url, method, path, c.timeoutCause(err)),
			retry:      true,
			down:       true,
			retryAfter: -1,
			reason:     ReasonConnection,
		}
	}
	if int64(len(body)) > c.maxBodyBytes {
		return result{err: fmt.Errorf("%s server %s: %s %s: response body exceeds %d bytes", c.name, r.url, method, path, c.maxBodyBytes)}
	}
	if out == nil {
		return result{}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return result{
			err:        fmt.Errorf("malformed response body from %s server %s: %s %s: %w", c.name, r.url, method, path, err),
			retry:      true,
			retryAfter: -1,
			reason:     ReasonMalformed,
		}
	}
	return result{}
}

func (c *Client) streamAttempt(ctx context.Context, r *replica, path string, data []byte) (_ *http.Response, res result) {
	const method = http.MethodPost
	ctx, span := c.startSpan(ctx, r, method, path)
	status := 0
	defer func() { endSpan(span, status, res) }()
	actx, cancel := context.WithCancel(ctx)
	req, err := c.newRequest(actx, r, method, path, data)
	if err != nil {
		cancel()
		return nil, result{err: fmt.Errorf("%s server %s: %s %s: %w", c.name, r.url, method, path, err)}
	}
	req.Header.Set("Accept", "text/event-stream")
	timedOut := make(chan struct{})
	timer := time.AfterFunc(c.timeout, func() { close(timedOut); cancel() })
	resp, err := c.hc.Do(req)
	stopped := timer.Stop()
	if err != nil {
		cancel()
		if !stopped {
			select {
			case <-timedOut:
				err = fmt.Errorf("attempt timed out after %v: %w", c.timeout, context.DeadlineExceeded)
			default:
			}
		}
		return nil, c.transportError(r, method, path, err)
	}
	status = resp.StatusCode
	if !stopped {
		// The timer fired just as the headers arrived: the request's
		// context is cancelled, so treat it as a timeout.
		resp.Body.Close()
		cancel()
		return nil, result{
			err:        fmt.Errorf("%s server %s: %s %s: attempt timed out after %v", c.name, r.url, method, path, c.timeout),
			retry:      true,
			down:       true,
			retryAfter: -1,
			reason:     ReasonTimeout,
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		res := c.statusError(r, method, path, resp)
		resp.Body.Close()
		cancel()
		return nil, res
	}
	resp.Body = &streamBody{ReadCloser: resp.Body, done: cancel}
	return resp, result{}
}

// transportError classifies an error from http.Client.Do.
func (c *Client) transportError(r *replica, method, path string, err error) result {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	err = c.timeoutCause(err)
	res := result{
		err:        fmt.Errorf("%s server %s: %s %s: %w", c.name, r.url, method, path, err),
		retry:      true,
		down:       true,
		retryAfter: -1,
		reason:     ReasonConnection,
	}
	if errors.Is(err, context.DeadlineExceeded) {
		res.reason = ReasonTimeout
	}
	var certErr *tls.CertificateVerificationError
	var authErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &authErr) || errors.As(err, &hostErr) {
		res.retry = false
	}
	return res
}

// timeoutCause makes a per-attempt deadline readable.
func (c *Client) timeoutCause(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("attempt timed out after %v: %w", c.timeout, err)
	}
	return err
}

func (c *Client) statusError(r *replica, method, path string, resp *http.Response) result {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	se, _ := ParseErrorBody(body)
	se.Name = c.name
	se.Server = r.url
	se.Method = method
	se.Path = path
	se.Status = resp.StatusCode
	ra, hasRA := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	if hasRA {
		se.RetryAfter = ra
	} else {
		ra = -1
	}
	res := result{
		err:        &se,
		retry:      se.Temporary(),
		down:       resp.StatusCode >= 500,
		retryAfter: ra,
		reason:     strconv.Itoa(resp.StatusCode),
	}
	if c.permanent != nil && c.permanent(&se) {
		res.retry, res.down = false, false
	}
	return res
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || secs != secs {
			return 0, false
		}
		if secs > 1e6 {
			secs = 1e6
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// final wraps the error that ends a call.
func (c *Client) final(err error, attempt int) error {
	if attempt == 0 {
		return err
	}
	if attempt == 1 {
		return fmt.Errorf("%w (gave up after 1 retry)", err)
	}
	return fmt.Errorf("%w (gave up after %d retries)", err, attempt)
}

// ctxError reports that ctx ended the call, mentioning the last failure.
func (c *Client) ctxError(method, path string, err, last error) error {
	if last != nil {
		return fmt.Errorf("%s server: %s %s: %w (last error: %v)", c.name, method, path, err, last)
	}
	return fmt.Errorf("%s server: %s %s: %w", c.name, method, path, err)
}

// wait sleeps before retry number attempt+1 of a call whose attempt on
// the replica at url failed with res. Retries are routine: they are logged
// at debug level and told to the context's RetryObserver, if any.
func (c *Client) wait(ctx context.Context, method, path, url string, attempt int, res result) error {
	d := c.backoff(attempt)
	if res.retryAfter >= 0 {
		d = min(res.retryAfter, c.maxBackoff)
	}
	c.log.Debug("retrying model server request",
		"server", c.name, "url", url, "method", method, "path", path, "reason", res.reason,
		"attempt", attempt+1, "wait", d, "err", res.err)
	if o := retryObserverFrom(ctx); o != nil {
		o.ObserveRetry(Retry{Name: c.name, URL: url, Reason: res.reason, Err: res.err})
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// backoff is full-jitter exponential: uniform in [0, min(max, base*2^k)].
func (c *Client) backoff(k int) time.Duration {
	ceil := c.maxBackoff
	if k < 30 {
		if d := c.baseBackoff << k; d > 0 && d < ceil {
			ceil = d
		}
	}
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil + 1)
}

// acquire waits for an in-flight slot and picks a replica, preferring one
// other than avoid. release must be called with the attempt's result.
func (c *Client) acquire(ctx context.Context, avoid *replica) (*replica, func(result), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if c.sem != nil {
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	r := c.pick(avoid, time.Now())
	release := func(res result) {
		c.mu.Lock()
		r.outstanding--
		switch {
		case res.err == nil:
			r.down = false
		case res.down && !r.down:
			r.down = true
			r.downSince = time.Now()
			if len(c.replicas) > 1 {
				c.log.Warn("model server replica marked down", "server", c.name, "url", r.url, "cool_down", c.coolDown, "err", res.err)
			}
		case res.down:
			// A retried replica failed again: restart its cool-down but
			// keep its place among the longest down.
			r.downSince = time.Now()
		}
		c.mu.Unlock()
		if c.sem != nil {
			<-c.sem
		}
	}
	return r, release, nil
}

// pick chooses the replica for the next attempt: among the healthy ones
// (those never down or whose cool-down has passed), other than avoid when
// possible, the one with the fewest outstanding requests, ties going round
// robin. When every replica is down it picks the one down longest.
func (c *Client) pick(avoid *replica, now time.Time) *replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.replicas)
	healthy := func(r *replica) bool { return !r.down || now.Sub(r.downSince) >= c.coolDown }
	var best *replica
	bestIdx := -1
	for pass := 0; pass < 2 && best == nil; pass++ {
		for k := range n {
			i := (c.next + k) % n
			r := c.replicas[i]
			if !healthy(r) || (pass == 0 && r == avoid && n > 1) {
				continue
			}
			if best == nil || r.outstanding < best.outstanding {
				best, bestIdx = r, i
			}
		}
	}
	if best == nil {
		for i, r := range c.replicas {
			if best == nil || r.downSince.Before(best.downSince) {
				best, bestIdx = r, i
			}
		}
	}
	c.next = (bestIdx + 1) % n
	best.outstanding++
	return best
}
