package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tpoproject/tpo/internal/pep440"
	"github.com/tpoproject/tpo/internal/vllmver"
)

// Endpoints, as counted in Stats.Requests.
const (
	EndpointChat     = "/v1/chat/completions"
	EndpointModels   = "/v1/models"
	EndpointTokenize = "/tokenize"
	EndpointClassify = "/classify"
	EndpointPooling  = "/pooling"
	EndpointVersion  = "/version"
	EndpointStats    = "/sim/stats"
)

// Server is a simulated model server. It implements http.Handler; Close
// stops it.
type Server struct {
	opts    Options
	version pep440.Version // of vLLM, for the reward endpoints
	gen     generator
	sched   *scheduler
	cache   *prefixCache
	mux     *http.ServeMux
	created int64
	closing chan struct{}
	once    sync.Once

	mu       sync.Mutex
	rng      *rand.Rand        // fault draws
	unseeded map[uint64]uint64 // unseeded requests per conversation
	counts   counters
}

// counters are the request-level counts since start or ResetStats.
type counters struct {
	requests     map[string]int64
	faults       map[FaultKind]int64
	rewardCalls  int64
	rewardInputs int64
	rewardTokens int64
	completions  int64 // chat completion tokens returned
}

func newCounters() counters {
	return counters{requests: make(map[string]int64), faults: make(map[FaultKind]int64)}
}

// New starts a simulated server. Call Close to stop its goroutine.
func New(opts Options) *Server {
	opts = opts.withDefaults()
	sec := func(d time.Duration) float64 { return d.Seconds() }
	s := &Server{
		opts: opts,
		gen: generator{
			seed:         strconv.FormatInt(opts.Seed, 10),
			meanTokens:   float64(opts.MeanTokens),
			sigma:        opts.TokenSigma,
			gain:         opts.UpdateGain,
			plateau:      opts.Plateau,
			unparsedRate: opts.UnparsedRate,
			rewardNoise:  opts.RewardNoise,
		},
		cache: newPrefixCache(opts.PrefixCacheBlocks),
		sched: newScheduler(opts.Slots,
			latency{base: sec(opts.StepBase), perSeq: sec(opts.StepPerSeq), prefillPerToken: sec(opts.PrefillPerToken)},
			opts.TimeScale),
		mux:      http.NewServeMux(),
		created:  time.Now().Unix(),
		closing:  make(chan struct{}),
		rng:      rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed_fa17)),
		unseeded: make(map[uint64]uint64),
		counts:   newCounters(),
	}
	s.version = parseVLLMVersion(opts.VLLMVersion, opts.Logger)
	s.mux.HandleFunc("POST "+EndpointChat, s.handleChat)
	s.mux.HandleFunc("GET "+EndpointModels, s.handleModels)
	s.mux.HandleFunc("POST "+EndpointTokenize, s.handleTokenize)
	s.mux.HandleFunc("POST "+EndpointClassify, s.handleClassify)
	s.mux.HandleFunc("POST "+EndpointPooling, s.handlePooling)
	s.mux.HandleFunc("GET "+EndpointVersion, s.handleVersion)
	s.mux.HandleFunc("GET "+EndpointStats, s.handleStats)
	return s
}

// parseVLLMVersion reads the simulated vLLM version. One that does not
// parse is still answered on GET /version, for testing clients, but the
// endpoints behave as vllmver.Current.
func parseVLLMVersion(v string, log *slog.Logger) pep440.Version {
	pv, err := pep440.Parse(v)
	if err != nil {
		log.Warn("sim: the reward endpoints behave as the current vLLM", "err", err, "current", vllmver.Current)
		return pep440.MustParse(vllmver.Current)
	}
	return pv
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops the scheduler's goroutine and ends the requests in progress
// with 503. Requests arriving later get 503 too. Close is idempotent.
func (s *Server) Close() {
	s.once.Do(func() { close(s.closing) })
	s.sched.close()
}

// Reward is the reward the server gives a response text (see the package
// documentation and the function Reward).
func (s *Server) Reward(text string) float64 { return Reward(text, s.opts.RewardNoise) }

// count records a request to endpoint.
func (s *Server) count(endpoint string) {
	s.mu.Lock()
	s.counts.requests[endpoint]++
	s.mu.Unlock()
}

// drawFault draws the fault to inject into a request, if any.
func (s *Server) drawFault(f Faults, endpoint string) (FaultKind, ErrorStyle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := f.pick(s.rng.Float64())
	if k == "" {
		return "", ""
	}
	style := f.Style
	if style == StyleMixed {
		style = styles[s.rng.IntN(len(styles))]
	}
	s.counts.faults[k]++
	s.opts.Logger.Debug("sim: injecting fault", "endpoint", endpoint, "kind", string(k), "style", string(style))
	return k, style
}

// fault is the fault chosen for a request.
type fault struct {
	kind  FaultKind
	style ErrorStyle
	f     Faults
}

// before applies the part of a fault that happens before any work: error
// statuses and hangs. It reports whether the request is over.
func (s *Server) before(ctx context.Context, w http.ResponseWriter, ft fault) (done bool) {
	if st := statusOf(ft.kind); st != 0 {
		if ft.f.RetryAfter > 0 && st != http.StatusInternalServerError {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(ft.f.RetryAfter.Round(time.Second)/time.Second))))
		}
		writeBody(w, st, errorBody(ft.style, st))
		return true
	}
	if ft.kind == FaultTimeout || ft.kind == FaultSlowFirstByte {
		d := ft.f.Hang
		if ft.kind == FaultSlowFirstByte {
			d = ft.f.FirstByteDelay
		}
		if !s.wait(ctx, d) {
			if ctx.Err() == nil {
				s.writeError(w, http.StatusServiceUnavailable, "the simulated server is shutting down")
			}
			return true
		}
	}
	return false
}

// respond writes a JSON response, applying the part of a fault that
// happens to the response.
func (s *Server) respond(w http.ResponseWriter, status int, v any, ft fault) {
	body, err := json.Marshal(v)
	if err != nil {
		s.writeError(w, http.StatusInternalServerError, fmt.Sprintf("encoding the response: %v", err))
		return
	}
	switch ft.kind {
	case FaultDrop:
		dropConnection(w, body)
		return
	case FaultMalformed:
		body = malformed(body)
	}
	writeBody(w, status, body)
}

// wait sleeps d of wall time; it reports false when the request or the
// server ended first.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-s.closing:
	}
	return false
}

// simSleep sleeps for sim seconds of simulated time.
func (s *Server) simSleep(ctx context.Context, sim float64) bool {
	return s.wait(ctx, time.Duration(sim*s.opts.TimeScale*float64(time.Second)))
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// writeError writes an error in current vLLM's (OpenAI-like) shape.
func (s *Server) writeError(w http.ResponseWriter, status int, msg string) {
	writeBody(w, status, vllmError(status, msg, ""))
}

func vllmError(status int, msg, param string) []byte {
	var p any
	if param != "" {
		p = param
	}
	b, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": msg, "type": vllmErrorType(status), "param": p, "code": status,
	}})
	return b
}

// checkModel writes a 404 and reports false when name is neither empty nor
// one of want.
func (s *Server) checkModel(w http.ResponseWriter, name string, want ...string) bool {
	if name == "" {
		return true
	}
	for _, m := range want {
		if name == m {
			return true
		}
	}
	writeBody(w, http.StatusNotFound, vllmError(http.StatusNotFound, fmt.Sprintf("The model `%s` does not exist.", name), "model"))
	return false
}

// decode reads a JSON request body into v, writing a 400 on failure.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20)).Decode(v); err != nil {
		s.writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid JSON body: %v", err))
		return false
	}
	return true
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	s.count(EndpointModels)
	type model struct {
		ID          string `json:"id"`
		Object      string `json:"object"`
		Created     int64  `json:"created"`
		OwnedBy     string `json:"owned_by"`
		MaxModelLen int    `json:"max_model_len"`
	}
	var data []model
	for _, id := range []string{s.opts.Model, s.opts.RewardModel} {
		data = append(data, model{ID: id, Object: "model", Created: s.created, OwnedBy: "sim", MaxModelLen: s.opts.MaxModelLen})
	}
	s.respond(w, http.StatusOK, map[string]any{"object": "list", "data": data}, fault{})
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	s.count(EndpointStats)
	s.respond(w, http.StatusOK, s.Stats(), fault{})
}
