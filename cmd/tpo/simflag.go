package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tpoproject/tpo/sim"
)

// defaultSimTimeScale makes one prompt at D2-N5 take about a second and a
// half: some 70 simulated seconds of decoding.
const defaultSimTimeScale = 0.02

// simBackend is the --sim flag of tpo run and tpo serve: a simulated model
// server, in process on loopback, standing in for the policy, the judge
// and a vLLM reward model.
type simBackend struct {
	on        bool
	timeScale float64
}

func (s *simBackend) register(fs *flag.FlagSet) {
	fs.BoolVar(&s.on, "sim", false, "try tpo without a model or GPU: a simulated model server (synthetic texts) on loopback plays the policy, the judge and --reward vllm, unless their URLs are given")
	fs.Float64Var(&s.timeScale, "sim-time-scale", defaultSimTimeScale, "with --sim: wall seconds per simulated second (1: as slow as a real server)")
}

// start starts the simulated server when --sim is given, points the
// policy and reward settings of b that have no URL at it, and says so on
// stderr. stop shuts the server down; it is a no-op without --sim.
func (s *simBackend) start(ctx context.Context, env *environ, b *backendFlags) (stop func(), err error) {
	if !s.on {
		return func() {}, nil
	}
	if !(s.timeScale > 0) {
		return nil, usagef("--sim-time-scale must be positive")
	}
	if b.reward == "tei" && len(b.rewardURLs.vals) == 0 {
		return nil, usagef("--sim serves no TEI reward model: use --reward judge (the default) or vllm, or give --reward-url")
	}
	roles := s.roles(b)
	if len(roles) == 0 {
		return nil, usagef("--sim: nothing to simulate: the policy and the reward have their own servers (drop --sim, or --policy-url)")
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("--sim: listen: %w", err)
	}
	srv := sim.New(sim.Options{Seed: 1, TimeScale: s.timeScale})
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(env.log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	url := "http://" + ln.Addr().String()
	if len(b.policyURLs.vals) == 0 {
		b.policyURLs.vals = []string{url + "/v1"}
		if b.policyModel == "" {
			b.policyModel = "sim-policy"
		}
	}
	if b.reward == "vllm" && len(b.rewardURLs.vals) == 0 {
		b.rewardURLs.vals = []string{url}
		if b.rewardModel == "" {
			b.rewardModel = "sim-reward"
		}
	}
	fmt.Fprintf(env.stderr, "tpo: --sim: a simulated model server at %s plays %s; its texts are synthetic "+
		"(a marker like [q=0.512 id=1a2b3c4d], then filler words), not answers. For real answers, drop --sim "+
		"and give --policy-url of a model server (Ollama, vLLM: see the README).\n", url, strings.Join(roles, " and "))
	return func() {
		// Requests still running end with a 503; the listener closes.
		srv.Close()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); errors.Is(err, context.DeadlineExceeded) {
			hs.Close()
		}
		<-served
	}, nil
}

// roles names what the simulator stands in for, given the URLs the user
// gave.
func (s *simBackend) roles(b *backendFlags) []string {
	var roles []string
	policy := len(b.policyURLs.vals) == 0
	if policy {
		roles = append(roles, "the policy model")
	}
	noRewardURL := len(b.rewardURLs.vals) == 0
	switch {
	case b.reward == "judge" && noRewardURL && policy:
		roles = append(roles, "the judge")
	case b.reward == "vllm" && noRewardURL:
		roles = append(roles, "the reward model")
	}
	return roles
}
