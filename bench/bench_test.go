package bench

import (
	"context"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/sim"
)

func TestThroughputSmall(t *testing.T) {
	cfg := testConfig(2, 1)
	rep, err := Throughput(context.Background(), ThroughputOptions{
		Prompts: 24, MimicPrompts: 8, Concurrency: []int{8}, Workers: 2, ChunkSize: 4, Config: &cfg,
		Sim: sim.Options{Seed: 2, TimeScale: 0.0005, MeanTokens: 40, Slots: 16},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Passes) != 3 {
		t.Fatalf("%d passes, want 3 (runner, mimic-stage, mimic-item)", len(rep.Passes))
	}
	for i, want := range []struct {
		name    string
		prompts int
	}{{"runner", 24}, {"mimic-stage", 8}, {"mimic-item", 8}} {
		p := rep.Passes[i]
		if p.Scheduler != want.name || p.Prompts != want.prompts || p.Failed != 0 {
			t.Errorf("pass %d: %s, %d prompts, %d failed; want %s, %d, 0", i, p.Scheduler, p.Prompts, p.Failed, want.name, want.prompts)
		}
		// 1+3D chat requests and N+D(N+2) sequences per prompt.
		if p.ChatRequests != int64(4*want.prompts) || p.Sequences != int64(6*want.prompts) {
			t.Errorf("%s: %d chat requests, %d sequences; want %d, %d", p.Scheduler, p.ChatRequests, p.Sequences, 4*want.prompts, 6*want.prompts)
		}
		if !(p.Utilization > 0 && p.Utilization <= 1) || !(p.SteadyUtilization > 0 && p.SteadyUtilization <= 1) {
			t.Errorf("%s: utilization %v, steady %v; want in (0, 1]", p.Scheduler, p.Utilization, p.SteadyUtilization)
		}
		if p.PromptsPerSimMinute <= 0 || p.PromptsPerMinute <= 0 || p.MaxActive > 16 {
			t.Errorf("%s: %+v", p.Scheduler, p)
		}
	}
	r, m := rep.Passes[0], rep.Passes[1]
	if want := r.PromptsPerSimMinute / m.PromptsPerSimMinute; math.Abs(rep.Speedup-want) > 1e-9 {
		t.Errorf("speedup %v, want %v", rep.Speedup, want)
	}
	if rep.SpeedupGoal != (rep.Speedup >= 3) || rep.UtilizationGoal != (r.SteadyUtilization >= 0.9) {
		t.Errorf("goals %v %v do not follow the figures", rep.SpeedupGoal, rep.UtilizationGoal)
	}
}

func TestThroughputWithoutMimic(t *testing.T) {
	cfg := testConfig(2, 1)
	rep, err := Throughput(context.Background(), ThroughputOptions{Prompts: 4, Concurrency: []int{2}, Schedules: []Schedule{},
		Config: &cfg, Sim: sim.Options{Seed: 2, TimeScale: 0.0005, MeanTokens: 40}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Passes) != 1 || rep.Passes[0].Scheduler != "runner" || rep.Speedup != 0 {
		t.Errorf("passes %+v, speedup %v; want one runner pass and no speedup", rep.Passes, rep.Speedup)
	}
}

func TestServeSmall(t *testing.T) {
	for _, stream := range []bool{false, true} {
		cfg := tpo.DefaultConfig()
		cfg.Width, cfg.Depth = 2, 1
		rep, err := Serve(context.Background(), ServeOptions{Requests: 8, Concurrency: 2, Warmup: -1, Stream: stream,
			Config: &cfg, Sim: sim.Options{Seed: 4, TimeScale: 0.0005, MeanTokens: 40}})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Failed != 0 {
			t.Errorf("stream %v: %d requests failed", stream, rep.Failed)
		}
		// 1+3D policy requests and D+1 reward calls per request.
		if rep.UpstreamCalls != 6 {
			t.Errorf("stream %v: %v upstream calls per request, want 6", stream, rep.UpstreamCalls)
		}
		if rep.Upstream.P50 <= 0 || rep.EndToEnd.P50 < rep.Upstream.P50 {
			t.Errorf("stream %v: end to end %+v, upstream %+v", stream, rep.EndToEnd, rep.Upstream)
		}
		if rep.Added.Max > rep.EndToEnd.Max || rep.Added.P50 < 0 {
			t.Errorf("stream %v: added %+v out of range (end to end %+v)", stream, rep.Added, rep.EndToEnd)
		}
	}
}

func TestTokensSmall(t *testing.T) {
	rep, err := Tokens(context.Background(), TokensOptions{Prompts: 3, Widths: []int{2, 3}, Depths: []int{1},
		Sim: sim.Options{Seed: 5, TimeScale: 0.0002, MeanTokens: 300}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 6 { // tpo and revision at N 2, 3 with D 1; bon at N 2, 3
		t.Fatalf("%d rows, want 6", len(rep.Rows))
	}
	for _, r := range rep.Rows {
		if !r.Match || r.Measured != r.Required || r.Failed != 0 {
			t.Errorf("%s N%d D%d: measured %+v, required %+v, failed %d", r.Mode, r.Width, r.Depth, r.Measured, r.Required, r.Failed)
		}
		if r.PromptTokens <= 0 || r.CompletionTokens <= 0 || r.RewardTokens <= 0 || r.ClientRequests != r.Required.Requests {
			t.Errorf("%s N%d D%d: %+v", r.Mode, r.Width, r.Depth, r)
		}
	}
	if !rep.AllMatch {
		t.Error("AllMatch is false")
	}
}

// TestTokensPrefixCacheShare holds the prompts' layout to the goal:
// at D2-N5 with 350-token responses, at least half of all prompt tokens are
// served from the simulated prefix cache. A layout that moved what a
// round's calls share away from the start of their prompts would fail it.
func TestTokensPrefixCacheShare(t *testing.T) {
	for _, mode := range []tpo.Mode{tpo.ModeTPO, tpo.ModeRevision} {
		rep, err := Tokens(context.Background(), TokensOptions{Prompts: 4, Modes: []tpo.Mode{mode}, Widths: []int{5}, Depths: []int{2},
			Sim: sim.Options{Seed: 1, TimeScale: 0.0002, MeanTokens: 350}})
		if err != nil {
			t.Fatal(err)
		}
		r := rep.Rows[0]
		if r.PrefixHitRate < 0.5 || r.Failed != 0 {
			t.Errorf("%s D2-N5: %.1f%% of the prompt tokens from the prefix cache (%d failed), want at least 50%%", mode, 100*r.PrefixHitRate, r.Failed)
		}
		if want := r.CachedPromptTokens / (r.PromptTokens); math.Abs(r.PrefixHitRate-want) > 0.01 {
			t.Errorf("%s: hit rate %v, but %v of %v prompt tokens per prompt cached", mode, r.PrefixHitRate, r.CachedPromptTokens, r.PromptTokens)
		}
	}
}

func TestRequired(t *testing.T) {
	tests := []struct {
		mode tpo.Mode
		n, d int
		want Counts
	}{
		{tpo.ModeTPO, 5, 2, Counts{Requests: 7, Generations: 19, Scored: 15, ScoreCalls: 3}},
		{tpo.ModeRevision, 20, 5, Counts{Requests: 16, Generations: 130, Scored: 120, ScoreCalls: 6}},
		{tpo.ModeBoN, 8, 3, Counts{Requests: 1, Generations: 8, Scored: 8, ScoreCalls: 1}},
		{tpo.ModeTPO, 3, 0, Counts{Requests: 1, Generations: 3, Scored: 3, ScoreCalls: 1}},
	}
	for _, tt := range tests {
		if got := Required(tt.mode, tt.n, tt.d); got != tt.want {
			t.Errorf("Required(%s, %d, %d) = %+v, want %+v", tt.mode, tt.n, tt.d, got, tt.want)
		}
	}
}

// TestServeStalledReaders: 200 streaming clients, 10% of which stop
// reading. The server drops those once a write has waited for the write
// timeout; the others are all answered, and at the end no request is
// handled, no slot held, no connection open, and the goroutines are back
// to their number before the load.
func TestServeStalledReaders(t *testing.T) {
	if testing.Short() {
		t.Skip("200 clients")
	}
	// Long enough that a client that reads is never dropped on a loaded
	// machine under the race detector; the failures are logged.
	const writeTimeout = 2 * time.Second
	rep, err := Serve(context.Background(), ServeOptions{Requests: 200, Concurrency: 200, Warmup: 4, Stream: true, NoStore: true,
		Stall: 0.1, WriteTimeout: writeTimeout, Sim: sim.Options{Seed: 5, TimeScale: 0.0005},
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Stall
	if s == nil {
		t.Fatal("no stall report")
	}
	if rep.Failed != 0 || s.Clients != 20 || s.Dropped != 20 || s.StillHandled != 0 {
		t.Errorf("%d failed; %d clients stopped reading, %d dropped, %d still handled; want 0, 20, 20, 0", rep.Failed, s.Clients, s.Dropped, s.StillHandled)
	}
	if s.SlotsHeld != 0 || s.OpenConns != 0 || s.GoroutinesEnd > s.GoroutinesStart {
		t.Errorf("at the end: %d slots held, %d connections open, %d goroutines (%d before the load)",
			s.SlotsHeld, s.OpenConns, s.GoroutinesEnd, s.GoroutinesStart)
	}
}

// TestServeDeadline: with a deadline far shorter than a request's 200
// rounds, every answer that came back is the best found by the deadline
// and says so; one that found nothing by then is a 504 (counted failed).
// Without it, every optimization ran its rounds.
func TestServeDeadline(t *testing.T) {
	for _, deadline := range []time.Duration{0, 500 * time.Millisecond} {
		cfg := tpo.DefaultConfig()
		cfg.Width, cfg.Depth = 2, 2
		if deadline > 0 {
			cfg.Depth = 200
		}
		rep, err := Serve(context.Background(), ServeOptions{Requests: 4, Concurrency: 2, Warmup: -1, Stream: deadline > 0,
			Config: &cfg, Deadline: deadline, Sim: sim.Options{Seed: 4, TimeScale: 0.002, MeanTokens: 40}})
		if err != nil {
			t.Fatal(err)
		}
		a := rep.Answers
		answered := rep.Requests - rep.Failed
		switch {
		case deadline == 0 && (rep.Failed != 0 || a.Stopped[tpo.StopDepth] != rep.Requests || a.Steps != 3):
			t.Errorf("no deadline: %d failed, answers %+v; want every one stopped at depth after 3 steps", rep.Failed, a)
		case deadline > 0 && (answered == 0 || a.Stopped[tpo.StopDeadline] != answered || a.Steps >= 201):
			t.Errorf("deadline %v: %d of %d answered, answers %+v; want each stopped at the deadline", deadline, answered, rep.Requests, a)
		}
		if rep.DeadlineMS != float64(deadline.Milliseconds()) {
			t.Errorf("report's deadline %v ms, want %v", rep.DeadlineMS, deadline.Milliseconds())
		}
		if answered > 0 && (a.Score < a.InitialBest || a.Score == 0) {
			t.Errorf("deadline %v: mean score %v below the mean best initial sample %v", deadline, a.Score, a.InitialBest)
		}
	}
}
