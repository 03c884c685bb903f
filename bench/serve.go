package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/guard"
	"github.com/tpoproject/tpo/internal/stats"
	"github.com/tpoproject/tpo/server"
	"github.com/tpoproject/tpo/sim"
	"github.com/tpoproject/tpo/sqlite"
)

// ServeOptions configure Serve. Zero values mean the defaults given with
// each field.
type ServeOptions struct {
	// Requests is the number of chat completion requests sent (default
	// 200), Concurrency how many are in flight at once (default 4).
	Requests    int
	Concurrency int
	// Warmup requests are sent first and not measured (default 5).
	Warmup int
	// Stream sends streamed requests (stream: true) and reads the SSE
	// answer to its end.
	Stream bool
	// Config is the server's optimization settings (default
	// tpo.DefaultConfig(), D2-N5).
	Config *tpo.Config
	// Sim configures the simulated server (TimeScale defaults to
	// DefaultServeTimeScale).
	Sim     sim.Options
	Clients ClientOptions
	// Dir holds the server's SQLite store (default: a temporary directory).
	// NoStore runs the server without a store, to tell the store's share
	// of the added latency. Store, when set, is the server's store instead
	// of a SQLite file in Dir (StoreKind names it in the report).
	Dir       string
	NoStore   bool
	Store     tpo.Store
	StoreKind string
	// Stall is the share of the measured requests whose clients stop
	// reading: each asks for a streamed answer with n=16 (some 100 KB of
	// events) over a connection with a 1 KiB receive buffer, and reads
	// none of it. Their latency is not measured; the report says what
	// became of them and of the server (ServeReport.Stall).
	Stall float64
	// WriteTimeout is the server's write timeout (default the server's,
	// 30s); MaxConcurrent its optimization slots (default Concurrency).
	WriteTimeout  time.Duration
	MaxConcurrent int
	// Deadline is the server's --deadline: when an answer is due after a
	// request arrives (0: none). At the deadline the answer is the best
	// response found so far.
	Deadline time.Duration
	Logger   *slog.Logger
}

// storeKind names the server's store.
func (o ServeOptions) storeKind() string {
	switch {
	case o.NoStore:
		return ""
	case o.Store != nil:
		return o.StoreKind
	}
	return "sqlite"
}

// DefaultServeTimeScale keeps the upstream calls of one D2-N5 request to
// about a tenth of a second of wall time.
const DefaultServeTimeScale = 0.002

// Latency summarizes a sample of durations, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Mean float64 `json:"mean_ms"`
	Max  float64 `json:"max_ms"`
}

func summarize(ms []float64) Latency {
	if len(ms) == 0 {
		return Latency{}
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	return Latency{P50: stats.Percentile(s, 50), P90: stats.Percentile(s, 90), P99: stats.Percentile(s, 99),
		Mean: sum / float64(len(s)), Max: s[len(s)-1]}
}

// ServeReport is the outcome of Serve.
type ServeReport struct {
	Benchmark   string   `json:"benchmark"` // "serve"
	Machine     Machine  `json:"machine"`
	Mode        tpo.Mode `json:"mode"`
	Width       int      `json:"width"`
	Depth       int      `json:"depth"`
	Stream      bool     `json:"stream"`
	Store       bool     `json:"store"`
	StoreKind   string   `json:"store_kind,omitempty"` // sqlite, postgres; empty without a store
	Requests    int      `json:"requests"`
	Concurrency int      `json:"concurrency"`
	TimeScale   float64  `json:"time_scale"`
	// EndToEnd is the latency a client saw; Upstream the sum of the
	// latencies of the request's policy and reward calls, as the server's
	// clients measured them (they run one after another, so their sum is
	// the critical path); Added is EndToEnd minus Upstream, request by
	// request: what tpo serve itself costs (HTTP, parsing, templates, the
	// store, encoding the answer).
	EndToEnd Latency `json:"end_to_end"`
	Upstream Latency `json:"upstream"`
	Added    Latency `json:"added"`
	// UpstreamCalls is the mean number of upstream calls per request.
	UpstreamCalls float64 `json:"upstream_calls_per_request"`
	Failed        int     `json:"failed"`
	// DeadlineMS is the server's deadline (0: none), Answers what the
	// answers were worth and why their optimizations stopped.
	DeadlineMS float64       `json:"deadline_ms,omitempty"`
	Answers    AnswerSummary `json:"answers"`
	// Stall is set when some clients stopped reading (ServeOptions.Stall);
	// the figures above are those of the clients that read.
	Stall *StallResult `json:"stall,omitempty"`
}

// AnswerSummary sums up the "tpo" objects of the measured answers.
type AnswerSummary struct {
	// Score is the mean reward of the answers, InitialBest the mean of
	// the best reward among each request's initial samples.
	Score       float64 `json:"mean_score"`
	InitialBest float64 `json:"mean_initial_best"`
	// Steps is the mean number of finished steps (1 + update steps).
	Steps float64 `json:"mean_steps"`
	// Stopped counts the answers by stop_reason (depth, deadline, ...).
	Stopped map[tpo.StopReason]int `json:"stopped"`
}

// summarizeAnswers sums up the optimizations of answers.
func summarizeAnswers(answers []server.Optimization) AnswerSummary {
	s := AnswerSummary{Stopped: map[tpo.StopReason]int{}}
	if len(answers) == 0 {
		return s
	}
	for _, a := range answers {
		s.Score += a.Score
		s.InitialBest += a.InitialBest
		s.Steps += float64(a.Steps)
		s.Stopped[a.StopReason]++
	}
	n := float64(len(answers))
	s.Score, s.InitialBest, s.Steps = s.Score/n, s.InitialBest/n, s.Steps/n
	return s
}

// clockKey is the context key of a request's upstream clock.
type clockKey struct{}

// upstreamClock sums the time a request spent in upstream calls.
type upstreamClock struct {
	mu    sync.Mutex
	total time.Duration
	calls int
}

func (c *upstreamClock) add(d time.Duration) {
	c.mu.Lock()
	c.total += d
	c.calls++
	c.mu.Unlock()
}

func clockOf(ctx context.Context) *upstreamClock {
	c, _ := ctx.Value(clockKey{}).(*upstreamClock)
	return c
}

// timedUpstream wraps an Upstream so that the generators it hands out time
// their calls on the request's clock.
type timedUpstream struct{ server.Upstream }

func (u timedUpstream) Generator(model string) tpo.Generator {
	return timedGenerator{u.Upstream.Generator(model)}
}

type timedGenerator struct{ g tpo.Generator }

func (g timedGenerator) Generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	t0 := time.Now()
	gen, err := g.g.Generate(ctx, req)
	if c := clockOf(ctx); c != nil {
		c.add(time.Since(t0))
	}
	return gen, err
}

type timedScorer struct{ s tpo.Scorer }

func (s timedScorer) Score(ctx context.Context, msgs []tpo.Message, responses []string) (tpo.Scores, error) {
	t0 := time.Now()
	v, err := s.s.Score(ctx, msgs, responses)
	if c := clockOf(ctx); c != nil {
		c.add(time.Since(t0))
	}
	return v, err
}

// benchIDHeader names a request so that the server side can report its
// upstream time for it.
const benchIDHeader = "X-Bench-Request"

// Serve runs `tpo serve`'s server (package server, with the openai and
// vLLM reward clients and a SQLite store) on loopback in front of a
// simulated server, sends it chat completion requests, and compares each
// request's end-to-end latency with the time its upstream calls took.
func Serve(ctx context.Context, o ServeOptions) (ServeReport, error) {
	o.setDefaults()
	rep := ServeReport{Benchmark: "serve", Machine: ThisMachine(), Mode: o.Config.Mode, Width: o.Config.Width,
		Depth: o.Config.Depth, Stream: o.Stream, Store: !o.NoStore, StoreKind: o.storeKind(), Requests: o.Requests, Concurrency: o.Concurrency, TimeScale: o.Sim.TimeScale,
		DeadlineMS: float64(o.Deadline) / float64(time.Millisecond)}
	var st *stallRun
	if o.Stall > 0 {
		// A transport of its own, whose idle connections can be closed
		// before the goroutines are counted.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost, t.MaxIdleConns = 256, 0
		o.Clients.Transport = t
		defer t.CloseIdleConnections()
		st = &stallRun{served: map[net.Conn]bool{}}
	}
	sv, err := startServed(ctx, o, st)
	if err != nil {
		return rep, err
	}
	defer sv.close()

	items := Prompts(o.Warmup + o.Requests)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency}}
	defer hc.CloseIdleConnections()
	e2e := make([]time.Duration, len(items))
	answers := make([]server.Optimization, len(items))
	errs := make([]error, len(items))
	send := func(i int) {
		t0 := time.Now()
		answers[i], errs[i] = post(ctx, hc, sv.url, strconv.Itoa(i), items[i], o.Stream)
		e2e[i] = time.Since(t0)
	}
	forEach(ctx, o.Concurrency, o.Warmup, send)
	if st == nil {
		forEach(ctx, o.Concurrency, o.Requests, func(i int) { send(o.Warmup + i) })
	} else {
		rep.Stall = stallLoad(ctx, o, st, sv.srv, hc, items, errs, send)
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	return rep, o.latencies(&rep, sv, st, e2e, answers, errs)
}

func (o *ServeOptions) setDefaults() {
	if o.Requests <= 0 {
		o.Requests = 200
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	} else if o.Warmup == 0 {
		o.Warmup = 5
	}
	if o.Config == nil {
		c := tpo.DefaultConfig()
		o.Config = &c
	}
	if o.Sim.TimeScale <= 0 {
		o.Sim.TimeScale = DefaultServeTimeScale
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// served is the server under test, listening, with the simulated model
// server behind it.
type served struct {
	srv *server.Server
	url string
	// upstream holds the clock of each request's upstream calls, by the
	// request's bench id.
	mu       sync.Mutex
	upstream map[string]*upstreamClock
	closers  []func()
}

func (sv *served) close() {
	for _, c := range slices.Backward(sv.closers) {
		c()
	}
}

// clock returns the upstream clock of request id, nil if the server
// never saw it.
func (sv *served) clock(id string) *upstreamClock {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.upstream[id]
}

// startServed starts the simulated model server, the store and tpo's
// server, listening on a loopback port.
func startServed(ctx context.Context, o ServeOptions, st *stallRun) (_ *served, err error) {
	sv := &served{upstream: map[string]*upstreamClock{}}
	defer func() {
		if err != nil {
			sv.close()
		}
	}()
	up, err := StartSim(o.Sim)
	if err != nil {
		return nil, err
	}
	sv.closers = append(sv.closers, up.Close)
	pol, rw, err := Clients(up.URL, o.Clients)
	if err != nil {
		return nil, err
	}
	store, err := o.openStore(ctx, sv)
	if err != nil {
		return nil, err
	}
	sv.srv, err = server.New(server.Options{
		Policy:        timedUpstream{server.OpenAI(pol)},
		Scorers:       map[string]tpo.Scorer{"vllm": timedScorer{rw}},
		DefaultReward: "vllm",
		Config:        *o.Config,
		Store:         store,
		MaxConcurrent: cmp.Or(o.MaxConcurrent, o.Concurrency),
		QueueWait:     time.Minute,
		WriteTimeout:  o.WriteTimeout,
		Deadline:      o.Deadline,
		Logger:        o.Logger,
	})
	if err != nil {
		return nil, err
	}
	return sv, sv.listen(st)
}

// openStore returns the server's store: Store, none, or a SQLite file in
// Dir or a temporary directory.
func (o ServeOptions) openStore(ctx context.Context, sv *served) (tpo.Store, error) {
	if o.NoStore || o.Store != nil {
		return o.Store, nil
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "tpo-bench-serve-")
		if err != nil {
			return nil, err
		}
		sv.closers = append(sv.closers, func() { os.RemoveAll(d) })
		dir = d
	}
	db, err := sqlite.Open(ctx, filepath.Join(dir, "tpo.db"))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	sv.closers = append(sv.closers, func() { db.Close() })
	return db, nil
}

// listen serves sv.srv on a loopback port. Its middleware gives each
// request a clock for its upstream calls, kept under the request's bench
// id.
func (sv *served) listen(st *stallRun) error {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &upstreamClock{}
		if id := r.Header.Get(benchIDHeader); id != "" {
			sv.mu.Lock()
			sv.upstream[id] = c
			sv.mu.Unlock()
		}
		sv.srv.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clockKey{}, c)))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	if st != nil {
		st.addr = ln.Addr().String()
		hs.Handler, hs.ConnState, hs.ConnContext = st.wrap(h), st.connState, st.connContext
		ln = wanBuffers{ln}
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	sv.closers = append(sv.closers, func() {
		hs.Close()
		<-done
	})
	sv.url = "http://" + ln.Addr().String() + "/v1/chat/completions"
	return nil
}

// stallLoad sends the measured requests, a share o.Stall of them from
// clients that stop reading, and reports what became of those.
func stallLoad(ctx context.Context, o ServeOptions, st *stallRun, srv *server.Server, hc *http.Client, items []tpo.Item, errs []error, send func(int)) *StallResult {
	wt := cmp.Or(o.WriteTimeout, guard.DefaultWriteTimeout)
	r := &StallResult{WriteTimeout: wt.Seconds()}
	hc.CloseIdleConnections()
	o.Clients.Transport.CloseIdleConnections()
	r.GoroutinesStart = settle(0, 5*time.Second)
	sctx, stop := context.WithCancel(ctx)
	go st.sample(sctx)
	var stalledClients atomic.Int64
	forEach(ctx, o.Concurrency, o.Requests, func(i int) {
		if !stalled(i, o.Stall) {
			send(o.Warmup + i)
			return
		}
		stalledClients.Add(1)
		if err := st.send(ctx, items[o.Warmup+i]); err != nil {
			errs[o.Warmup+i] = fmt.Errorf("a client that stops reading: %w", err)
		}
	})
	// The server gives up on a stalled request once a write has waited
	// for the write timeout.
	st.waitHandled(min(wt, 30*time.Second) + 30*time.Second)
	stop()
	r.Clients = int(stalledClients.Load())
	st.finish(r, srv, hc, o.Clients.Transport)
	return r
}

// latencies fills rep with the latencies and answers of the measured
// requests that read their answers.
func (o ServeOptions) latencies(rep *ServeReport, sv *served, st *stallRun, e2e []time.Duration, answers []server.Optimization, errs []error) error {
	var ee, us, added []float64
	var read []server.Optimization
	calls := 0
	var firstErr error
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for i := o.Warmup; i < len(errs); i++ {
		if st != nil && stalled(i-o.Warmup, o.Stall) && errs[i] == nil {
			continue
		}
		if errs[i] != nil {
			rep.Failed++
			firstErr = cmp.Or(firstErr, errs[i])
			continue
		}
		c := sv.clock(strconv.Itoa(i))
		if c == nil {
			return fmt.Errorf("request %d: the server never saw it", i)
		}
		ee = append(ee, ms(e2e[i]))
		us = append(us, ms(c.total))
		added = append(added, ms(e2e[i]-c.total))
		read = append(read, answers[i])
		calls += c.calls
	}
	if rep.Failed > 0 {
		o.Logger.Warn("requests failed", "failed", rep.Failed, "first", firstErr)
	}
	if len(ee) == 0 {
		return fmt.Errorf("every request failed: %w", firstErr)
	}
	rep.EndToEnd, rep.Upstream, rep.Added = summarize(ee), summarize(us), summarize(added)
	rep.UpstreamCalls = float64(calls) / float64(len(ee))
	rep.Answers = summarizeAnswers(read)
	return nil
}

// post sends one chat completion request, reads the whole answer and
// returns its "tpo" object.
func post(ctx context.Context, hc *http.Client, url, id string, it tpo.Item, stream bool) (server.Optimization, error) {
	var none server.Optimization
	body, err := json.Marshal(map[string]any{"model": "sim-policy", "messages": it.Messages, "stream": stream})
	if err != nil {
		return none, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return none, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(benchIDHeader, id)
	resp, err := hc.Do(req)
	if err != nil {
		return none, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return none, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	if stream {
		return readStream(resp.Body)
	}
	var out struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		TPO *server.Optimization `json:"tpo"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return none, fmt.Errorf("decoding the answer: %w", err)
	}
	switch {
	case len(out.Choices) == 0 || out.Choices[0].Message.Content == "":
		return none, errors.New("the answer has no content")
	case out.TPO == nil:
		return none, errors.New(`the answer has no "tpo" object`)
	}
	return *out.TPO, nil
}

// readStream reads a streamed answer to its end and returns the "tpo"
// summary of its last chunk that has one (progress chunks have no mode).
func readStream(r io.Reader) (server.Optimization, error) {
	var sum server.Optimization
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	content := false
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		switch {
		case !ok:
			continue
		case data == "[DONE]" && !content:
			return sum, errors.New("the stream had no content")
		case data == "[DONE]" && sum.Mode == "":
			return sum, errors.New(`the stream had no "tpo" summary`)
		case data == "[DONE]":
			return sum, nil
		}
		content = content || strings.Contains(data, `"content"`)
		if !strings.Contains(data, `"mode"`) {
			continue
		}
		var ch struct {
			TPO *server.Optimization `json:"tpo"`
		}
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			return sum, fmt.Errorf("decoding a chunk: %w", err)
		}
		if ch.TPO != nil && ch.TPO.Mode != "" {
			sum = *ch.TPO
		}
	}
	if err := sc.Err(); err != nil {
		return sum, err
	}
	return sum, errors.New("the stream ended without [DONE]")
}
