package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/openai"
)

// metrics are the server's Prometheus metrics, in a registry of its own
// (each Server has one): tpo_serve_* and the Go runtime's and the
// process's collectors.
type metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec   // route, code
	latency        *prometheus.HistogramVec // route
	stageLatency   *prometheus.HistogramVec // stage
	upstreamErrors *prometheus.CounterVec   // upstream (policy, reward)
	retries        prometheus.Counter
	tokens         *prometheus.CounterVec // stage, kind (prompt, completion)
	optimizations  *prometheus.CounterVec // mode, outcome
	inFlight       prometheus.Gauge
	queued         prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tpo_serve_requests_total", Help: "HTTP requests answered, by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tpo_serve_request_duration_seconds", Help: "Time to answer an HTTP request, by route.",
			Buckets: []float64{.01, .05, .1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"route"}),
		stageLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tpo_serve_stage_duration_seconds", Help: "Duration of one model call of an optimization, by stage (sample, loss, gradient, update, score).",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"stage"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tpo_serve_upstream_errors_total", Help: "Failed calls to model servers, by upstream (policy, reward).",
		}, []string{"upstream"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tpo_serve_upstream_retries_total", Help: "HTTP attempts to the policy server that were retried.",
		}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tpo_serve_tokens_total", Help: "Model tokens of the optimizations (the policy's, and a judge's in stage score), by stage and kind (prompt, completion).",
		}, []string{"stage", "kind"}),
		optimizations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tpo_serve_optimizations_total", Help: "Optimizations run, by mode and outcome (ok, error, cancelled).",
		}, []string{"mode", "outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tpo_serve_optimizations_in_flight", Help: "Optimizations running now.",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tpo_serve_queue_length", Help: "Requests waiting for an optimization slot.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.stageLatency, m.upstreamErrors, m.retries,
		m.tokens, m.optimizations, m.inFlight, m.queued,
		// The process's own figures: go_* (goroutines, memory, GC) and,
		// where the platform has them, process_* (CPU, memory, open fds).
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// countTokens adds the tokens of u to the stage's counters.
func (m *metrics) countTokens(stage tpo.Stage, u tpo.Usage) {
	m.tokens.WithLabelValues(string(stage), "prompt").Add(float64(u.PromptTokens))
	m.tokens.WithLabelValues(string(stage), "completion").Add(float64(u.CompletionTokens))
}

func (m *metrics) observeRequest(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

// meterSnapshot is what a meter counted.
type meterSnapshot struct {
	// Policy is what the policy calls cost; Reward what the reward calls
	// cost as far as the scorer reports it (a judge's tokens; a reward
	// model on vLLM or TEI reports none).
	Policy      tpo.Usage
	Reward      tpo.Usage
	Stages      map[tpo.Stage]StageUsage
	RewardCalls int
}

// usage is the request's usage object: the tokens of every model call
// the request caused, the policy's and the judge's.
func (m meterSnapshot) usage() openai.Usage {
	prompt := m.Policy.PromptTokens + m.Reward.PromptTokens
	completion := m.Policy.CompletionTokens + m.Reward.CompletionTokens
	return openai.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
}

// responseUsage is usage in the Responses API's words.
func (m meterSnapshot) responseUsage() *openai.ResponseUsage {
	u := m.usage()
	return &openai.ResponseUsage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
}

// meter wraps the policy and the scorer of one optimization, counting the
// usage of every call by stage and feeding the metrics.
type meter struct {
	policy tpo.Generator
	scorer tpo.Scorer
	m      *metrics

	mu          sync.Mutex
	policyUsage tpo.Usage
	rewardUsage tpo.Usage
	stages      map[tpo.Stage]StageUsage
	rewardCalls int
}

func newMeter(p tpo.Generator, s tpo.Scorer, m *metrics) *meter {
	return &meter{policy: p, scorer: s, m: m, stages: map[tpo.Stage]StageUsage{}}
}

// meterGenerator and meterScorer give a meter's two faces.
type meterGenerator struct{ *meter }
type meterScorer struct{ *meter }

// Generate implements tpo.Generator.
func (g meterGenerator) Generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	t0 := time.Now()
	gen, err := g.policy.Generate(ctx, req)
	d := time.Since(t0)
	stage := req.Stage
	if stage == "" {
		stage = tpo.StageSample
	}
	g.mu.Lock()
	g.policyUsage.Add(gen.Usage)
	su := g.stages[stage]
	su.Requests += gen.Usage.Requests
	su.addTokens(gen.Usage)
	su.Millis += d.Milliseconds()
	g.stages[stage] = su
	g.mu.Unlock()
	if g.m != nil {
		g.m.stageLatency.WithLabelValues(string(stage)).Observe(d.Seconds())
		g.m.countTokens(stage, gen.Usage)
		g.m.retries.Add(float64(gen.Usage.Retries))
		if err != nil && !errors.Is(err, context.Canceled) {
			g.m.upstreamErrors.WithLabelValues("policy").Inc()
		}
	}
	return gen, err
}

// Score implements tpo.Scorer.
func (s meterScorer) Score(ctx context.Context, messages []tpo.Message, responses []string) (tpo.Scores, error) {
	t0 := time.Now()
	scores, err := s.scorer.Score(ctx, messages, responses)
	d := time.Since(t0)
	s.mu.Lock()
	s.rewardCalls++
	s.rewardUsage.Add(scores.Usage)
	su := s.stages[tpo.StageScore]
	su.Requests++
	su.addTokens(scores.Usage)
	su.Millis += d.Milliseconds()
	s.stages[tpo.StageScore] = su
	s.mu.Unlock()
	if s.m != nil {
		s.m.stageLatency.WithLabelValues(string(tpo.StageScore)).Observe(d.Seconds())
		s.m.countTokens(tpo.StageScore, scores.Usage)
		if err != nil && !errors.Is(err, context.Canceled) {
			s.m.upstreamErrors.WithLabelValues("reward").Inc()
		}
	}
	return scores, err
}

func (m *meter) snapshot() meterSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := meterSnapshot{Policy: m.policyUsage, Reward: m.rewardUsage, RewardCalls: m.rewardCalls, Stages: make(map[tpo.Stage]StageUsage, len(m.stages))}
	for k, v := range m.stages {
		s.Stages[k] = v
	}
	return s
}
