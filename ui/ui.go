// Package ui is tpo's web interface: pages that show the runs of a store,
// a run's progress and charts, and, for each item, the whole trajectory of
// its optimization — every candidate with its score, the chosen and the
// rejected ones, the critique, the instructions, the update samples that
// could not be parsed, and a word diff of what each step changed.
//
// A Handler reads through the small Store interface (the read methods of
// *sqlite.DB, and DeleteRun). With a Live source (the pub/sub of tpo serve)
// the pages of an optimization in flight update as it runs, over
// server-sent events; without one, pages of runs that are not finished poll
// for progress, so that a run written by another process can be watched.
//
// Everything a model wrote is shown as escaped text, pages are served with
// a strict Content-Security-Policy (no inline script; the little JavaScript
// is an embedded file) and the only write, deleting a run, needs a POST
// with a token from its confirmation page, from the same origin.
package ui

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/guard"
)

// Store is what the UI reads runs from; *sqlite.DB implements it.
type Store interface {
	ListRuns(ctx context.Context) ([]tpo.RunSummary, error)
	GetRun(ctx context.Context, runID string) (tpo.RunSummary, error)
	ListItems(ctx context.Context, runID string, f tpo.ItemFilter) ([]tpo.ItemSummary, int, error)
	GetItem(ctx context.Context, runID, itemID string) (tpo.ItemState, error)
	// Results calls fn with every item of a run, in input order.
	Results(ctx context.Context, runID string, fn func(tpo.ItemState) error) error
	// DeleteRun is the UI's only write, made when a user asks for it.
	DeleteRun(ctx context.Context, runID string) error
}

// Live is a source of the events of optimizations in flight; *server.Server
// implements it.
type Live interface {
	// Subscribe returns the events of run runID from now on; the channel
	// is closed when the run ends or cancel is called, and at once for a
	// run not in flight.
	Subscribe(runID string) (<-chan tpo.Event, func())
	// InFlight lists the optimizations running now.
	InFlight() []tpo.LiveRun
}

// Defaults of Options fields left zero.
const (
	DefaultPrefix       = "/ui"
	DefaultPollInterval = 2 * time.Second
	DefaultKeepAlive    = 15 * time.Second
	// DefaultMaxStream is how long one event stream stays open; the
	// browser reconnects after it.
	DefaultMaxStream = 10 * time.Minute
	// MaxQueryLength is the most characters of a page's free-text query
	// parameters (the search text q, the id of a deleted run): a request
	// with a longer one gets a 400 naming the parameter. Item searches
	// become LIKE patterns, which the store bounds (SQLite: 50,000 bytes).
	MaxQueryLength = 1000
)

// Options configures a Handler.
type Options struct {
	Store Store
	// Live, when set, makes the pages of optimizations in flight update as
	// events arrive; nil means no live events (pages of unfinished runs
	// poll the store instead).
	Live Live
	// Prefix is the path the UI is mounted at (default "/ui"); the handler
	// expects requests with their full path.
	Prefix string
	Logger *slog.Logger
	// APIKeys, when not empty, protect every page: a request must carry one
	// of them as the password of HTTP Basic authentication (any user name)
	// or as a bearer token. Spaces around a key are trimmed (as they are
	// around the one a request carries); a blank key is an error.
	APIKeys []string
	// PollInterval is the first interval between polls of a page whose run
	// is still being written (default 2s); it grows while nothing changes.
	PollInterval time.Duration
	// KeepAlive is the interval of comments on an idle event stream
	// (default 15s); MaxStream bounds how long a stream stays open
	// (default 10m).
	KeepAlive time.Duration
	MaxStream time.Duration
	// AllowedHosts are the host names the UI answers to: a request whose
	// Host header names another (a page of another site that reached the
	// UI through DNS rebinding) gets a 421. Nil answers to every host.
	AllowedHosts *guard.Hosts
	// WriteTimeout bounds each write of a response (default 30s; negative:
	// none); ReadTimeout the arrival of a request's body (default 30s;
	// negative: none).
	WriteTimeout time.Duration
	ReadTimeout  time.Duration
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// contentSecurityPolicy allows the page's own script, stylesheet and images
// and nothing else: no inline script, no inline style, no plugins, no
// framing, no form posts elsewhere.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// svgPolicy is the policy of the chart images: they are drawn with inline
// style attributes, and may not run or load anything.
const svgPolicy = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"

// Handler serves the UI. It implements http.Handler.
type Handler struct {
	store  Store
	live   Live
	prefix string
	log    *slog.Logger
	keys   guard.Keys
	poll   time.Duration
	keep   time.Duration
	maxSSE time.Duration

	mux    *http.ServeMux
	pages  map[string]*pageTemplate
	static map[string]string // file name -> URL with a version query
	secret []byte            // signs delete tokens
	cop    *http.CrossOriginProtection

	sums *summaryCache
	// guarded is the mux behind the host check and the deadlines.
	guarded http.Handler
}

// New returns the handler of the UI described by opts.
func New(opts Options) (*Handler, error) {
	if opts.Store == nil {
		return nil, errors.New("ui: no store")
	}
	prefix := strings.TrimSuffix(opts.Prefix, "/")
	if opts.Prefix == "" {
		prefix = DefaultPrefix
	}
	if prefix != "" && !strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, "{}?# ") {
		return nil, fmt.Errorf("ui: prefix %q: want a path like /ui", opts.Prefix)
	}
	h := &Handler{
		store:  opts.Store,
		live:   opts.Live,
		prefix: prefix,
		log:    opts.Logger,
		poll:   opts.PollInterval,
		keep:   opts.KeepAlive,
		maxSSE: opts.MaxStream,
		mux:    http.NewServeMux(),
		cop:    http.NewCrossOriginProtection(),
		sums:   newSummaryCache(16),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.poll <= 0 {
		h.poll = DefaultPollInterval
	}
	if h.keep <= 0 {
		h.keep = DefaultKeepAlive
	}
	if h.maxSSE <= 0 {
		h.maxSSE = DefaultMaxStream
	}
	keys, err := guard.NewKeys(opts.APIKeys)
	if err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	h.keys = keys
	h.secret = make([]byte, 32)
	rand.Read(h.secret) // never fails
	if err := h.loadStatic(); err != nil {
		return nil, err
	}
	if err := h.parseTemplates(); err != nil {
		return nil, err
	}
	h.routes()
	h.guarded = guard.Handler(http.HandlerFunc(h.serve), guard.Options{Hosts: opts.AllowedHosts,
		WriteTimeout: timeoutOr(opts.WriteTimeout, guard.DefaultWriteTimeout),
		ReadTimeout:  timeoutOr(opts.ReadTimeout, guard.DefaultReadTimeout)})
	return h, nil
}

// timeoutOr returns d, def when d is zero, and zero (none) when d is
// negative.
func timeoutOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

func (h *Handler) routes() {
	p := h.prefix
	h.mux.HandleFunc("GET "+p+"/{$}", h.handleRuns)
	h.mux.HandleFunc("GET "+p+"/runs/{run}", h.handleRun)
	h.mux.HandleFunc("GET "+p+"/runs/{run}/progress", h.handleRunProgress)
	h.mux.HandleFunc("GET "+p+"/runs/{run}/events", h.handleRunEvents)
	h.mux.HandleFunc("GET "+p+"/runs/{run}/curves.svg", h.handleRunCurves)
	h.mux.HandleFunc("GET "+p+"/runs/{run}/gains.svg", h.handleRunGains)
	h.mux.HandleFunc("GET "+p+"/runs/{run}/delete", h.handleDeleteConfirm)
	h.mux.HandleFunc("POST "+p+"/runs/{run}/delete", h.handleDelete)
	h.mux.HandleFunc("GET "+p+"/runs/{run}/items/{item}", h.handleItem)
	h.mux.HandleFunc("GET "+p+"/runs/{run}/items/{item}/body", h.handleItemBody)
	h.mux.HandleFunc("GET "+p+"/runs/{run}/items/{item}/events", h.handleItemEvents)
	h.mux.HandleFunc("GET "+p+"/runs/{run}/items/{item}/curves.svg", h.handleItemCurves)
	h.mux.HandleFunc("GET "+p+"/live/{run}", h.handleLive)
	h.mux.HandleFunc("GET "+p+"/static/{file}", h.handleStatic)
	h.mux.HandleFunc(p+"/", h.handleNotFound)
	if p != "" {
		h.mux.HandleFunc("GET "+p, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, p+"/", http.StatusFound)
		})
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("X-Frame-Options", "DENY")
	h.guarded.ServeHTTP(w, r)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		guard.Hangup(w, r)
		w.Header().Set("WWW-Authenticate", `Basic realm="tpo", charset="UTF-8"`)
		http.Error(w, "401 unauthorized: give an API key of this server as the password", http.StatusUnauthorized)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// authorized reports whether r carries one of the API keys, if any are
// required, comparing in constant time.
func (h *Handler) authorized(r *http.Request) bool {
	if !h.keys.Required() {
		return true
	}
	key, ok := "", false
	if _, key, ok = r.BasicAuth(); !ok {
		key, ok = guard.Bearer(r)
	}
	return ok && h.keys.Match(key)
}

// loadStatic computes the versioned URLs of the static files.
func (h *Handler) loadStatic() error {
	h.static = map[string]string{}
	return fs.WalkDir(staticFS, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := staticFS.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		name := strings.TrimPrefix(path, "static/")
		h.static[name] = h.prefix + "/static/" + name + "?v=" + hex.EncodeToString(sum[:6])
		return nil
	})
}

func (h *Handler) handleStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	data, err := staticFS.ReadFile("static/" + name)
	if err != nil || strings.Contains(name, "/") {
		h.handleNotFound(w, r)
		return
	}
	switch {
	case strings.HasSuffix(name, ".js"):
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case strings.HasSuffix(name, ".css"):
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case strings.HasSuffix(name, ".svg"):
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Header().Set("Content-Security-Policy", svgPolicy)
	}
	// The URLs carry a version, so a copy may be kept a long time.
	if r.URL.Query().Get("v") != "" {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

// deleteToken returns the token that authorizes deleting run runID: an
// HMAC of the id under the handler's secret, so that only a page this
// handler served can carry it.
func (h *Handler) deleteToken(runID string) string {
	m := hmac.New(sha256.New, h.secret)
	m.Write([]byte("delete run\x00" + runID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (h *Handler) validDeleteToken(runID, token string) bool {
	return hmac.Equal([]byte(token), []byte(h.deleteToken(runID)))
}

// summaryCache keeps the chart summaries of recently viewed runs, keyed by
// the run's state, so that charts are not recomputed while nothing changed.
type summaryCache struct {
	mu  sync.Mutex
	max int
	m   map[string]cachedSummary
}

type cachedSummary struct {
	version string
	at      time.Time
	sum     runCharts
}

func newSummaryCache(n int) *summaryCache {
	return &summaryCache{max: n, m: map[string]cachedSummary{}}
}

// get returns the charts of the run at version, or charts of another
// version made less than fresh ago (zero: none).
func (c *summaryCache) get(runID, version string, fresh time.Duration, now time.Time) (runCharts, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[runID]
	if !ok || e.version != version && now.Sub(e.at) >= fresh {
		return runCharts{}, false
	}
	return e.sum, true
}

func (c *summaryCache) put(runID, version string, at time.Time, s runCharts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[runID]; !ok && len(c.m) >= c.max {
		for id := range c.m { // evict any one
			delete(c.m, id)
			break
		}
	}
	c.m[runID] = cachedSummary{version, at, s}
}

func (c *summaryCache) drop(runID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, runID)
}
