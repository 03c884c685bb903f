package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/sim"
	"github.com/tpoproject/tpo/sqlite"
)

// ThroughputOptions configure Throughput. Zero values mean the defaults
// given with each field.
type ThroughputOptions struct {
	// Prompts is the number of prompts each runner pass optimizes (default
	// 500); MimicPrompts the number each mimic pass optimizes (default 64:
	// four chunks; the mimic is slow, and its rate is steady from chunk to
	// chunk).
	Prompts      int
	MimicPrompts int
	// Concurrency lists the runner's concurrency levels, one pass each
	// (default 16, `tpo run`'s default, and 64, the concurrency that keeps
	// a 64-slot server busy at D2-N5).
	Concurrency []int
	// Schedules lists the mimic passes (nil: StageMajor then ItemMajor;
	// empty: none); Workers and ChunkSize configure them (default 4 and
	// 16).
	Schedules []Schedule
	Workers   int
	ChunkSize int
	// Config is the optimization (default tpo.DefaultConfig(), D2-N5, with
	// seed 1 so that every pass sends the same requests and gets the same
	// texts).
	Config *tpo.Config
	// Sim configures the simulated server (zero fields take sim's defaults:
	// 64 slots, 350 tokens on average; TimeScale defaults to
	// DefaultTimeScale here).
	Sim     sim.Options
	Clients ClientOptions
	// Dir holds the passes' datasets and stores (default: a temporary
	// directory, removed at the end).
	Dir    string
	Logger *slog.Logger
}

// DefaultTimeScale is the wall time of one simulated second in the
// throughput benchmark: 100 simulated minutes of work take one wall minute.
const DefaultTimeScale = 0.01

// PassReport is what one pass of a scheduler over the prompts measured.
type PassReport struct {
	// Scheduler is "runner" (tpo.Runner, as in `tpo run`), "mimic-stage"
	// or "mimic-item".
	Scheduler   string `json:"scheduler"`
	Concurrency int    `json:"concurrency,omitempty"` // runner
	Workers     int    `json:"workers,omitempty"`     // mimic
	ChunkSize   int    `json:"chunk_size,omitempty"`  // mimic
	Prompts     int    `json:"prompts"`
	Failed      int    `json:"failed"`

	WallSeconds float64 `json:"wall_seconds"`
	SimSeconds  float64 `json:"sim_seconds"`
	// PromptsPerMinute is per wall minute (it depends on the time scale);
	// PromptsPerSimMinute per simulated minute: what a real server as fast
	// as the simulated one would give.
	PromptsPerMinute    float64 `json:"prompts_per_minute"`
	PromptsPerSimMinute float64 `json:"prompts_per_sim_minute"`

	// Utilization is the simulated server's slot utilization over the
	// whole pass; SteadyUtilization over the part between the moments 10%
	// and 90% of the prompts were done (without ramp-up and tail).
	Utilization       float64 `json:"utilization"`
	SteadyUtilization float64 `json:"steady_utilization"`
	MeanActive        float64 `json:"mean_active_sequences"`
	MaxActive         int     `json:"max_active_sequences"`
	MaxQueue          int     `json:"max_queued_sequences"`
	TokensPerSimSec   float64 `json:"tokens_per_sim_second"`
	ChatRequests      int64   `json:"chat_requests"`
	RewardCalls       int64   `json:"reward_calls"`
	Sequences         int64   `json:"sequences"`
	CompletionTokens  int64   `json:"completion_tokens"`
	// PolicyRetries sums tpo.Usage.Retries over the items.
	PolicyRetries int `json:"policy_retries"`

	// For runner passes: PromptsPerSimMinute over that of the first mimic
	// pass, and whether the pass met the goals (steady utilization of at
	// least 90%, at least 3 times the mimic's throughput).
	Speedup         float64 `json:"speedup,omitempty"`
	UtilizationGoal bool    `json:"utilization_goal_met,omitempty"`
	SpeedupGoal     bool    `json:"speedup_goal_met,omitempty"`
}

// ThroughputReport is the outcome of Throughput.
type ThroughputReport struct {
	Benchmark string       `json:"benchmark"` // "throughput"
	Machine   Machine      `json:"machine"`
	Mode      tpo.Mode     `json:"mode"`
	Width     int          `json:"width"`
	Depth     int          `json:"depth"`
	Slots     int          `json:"slots"`
	TimeScale float64      `json:"time_scale"`
	MeanTok   int          `json:"mean_tokens"`
	Passes    []PassReport `json:"passes"`
	// Speedup is the prompts per simulated minute of the first runner pass
	// (the first concurrency level, `tpo run`'s default unless changed) over
	// those of the first mimic pass; the goals are that pass's (each runner
	// pass reports its own too).
	Speedup float64 `json:"speedup"`
	// Goals: SteadyUtilization of the first runner pass at least 0.9, and
	// Speedup at least 3.
	UtilizationGoal bool `json:"utilization_goal_met"`
	SpeedupGoal     bool `json:"speedup_goal_met"`
}

// Machine describes where a benchmark ran.
type Machine struct {
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
}

// ThisMachine describes the running machine.
func ThisMachine() Machine {
	return Machine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, NumCPU: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version()}
}

func (o ThroughputOptions) withDefaults() ThroughputOptions {
	if o.Prompts <= 0 {
		o.Prompts = 500
	}
	if o.MimicPrompts <= 0 {
		o.MimicPrompts = 64
	}
	if len(o.Concurrency) == 0 {
		o.Concurrency = []int{16, 64}
	}
	if o.Schedules == nil {
		o.Schedules = []Schedule{StageMajor, ItemMajor}
	}
	if o.Workers <= 0 {
		o.Workers = DefaultMimicWorkers
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultMimicChunkSize
	}
	if o.Config == nil {
		c := tpo.DefaultConfig()
		seed := int64(1)
		c.Seed = &seed
		o.Config = &c
	}
	if o.Sim.TimeScale <= 0 {
		o.Sim.TimeScale = DefaultTimeScale
	}
	if o.Sim.Slots <= 0 {
		o.Sim.Slots = 64
	}
	if o.Sim.MeanTokens <= 0 {
		o.Sim.MeanTokens = 350
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Throughput optimizes the same prompts with tpo.Runner at each
// concurrency level and with Mimic under each schedule, one pass after the
// other, against one simulated server, and reports what each pass
// achieved.
func Throughput(ctx context.Context, o ThroughputOptions) (ThroughputReport, error) {
	o = o.withDefaults()
	rep := ThroughputReport{Benchmark: "throughput", Machine: ThisMachine(), Mode: o.Config.Mode,
		Width: o.Config.Width, Depth: o.Config.Depth, Slots: o.Sim.Slots, TimeScale: o.Sim.TimeScale,
		MeanTok: o.Sim.MeanTokens}
	if err := o.Config.Validate(); err != nil {
		return rep, fmt.Errorf("config: %w", err)
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "tpo-bench-")
		if err != nil {
			return rep, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	srv, err := StartSim(o.Sim)
	if err != nil {
		return rep, err
	}
	defer srv.Close()
	pol, rw, err := Clients(srv.URL, o.Clients)
	if err != nil {
		return rep, err
	}

	for i, c := range o.Concurrency {
		if c < 1 {
			return rep, fmt.Errorf("concurrency must be at least 1, got %d", c)
		}
		o.Logger.Info("runner pass", "concurrency", c, "prompts", o.Prompts)
		p, err := runnerPass(ctx, srv, &tpo.Optimizer{Policy: pol, Reward: rw, Config: *o.Config, Logger: o.Logger},
			filepath.Join(dir, fmt.Sprintf("runner-%d", i)), Prompts(o.Prompts), c, o.Logger)
		if err != nil {
			return rep, err
		}
		rep.Passes = append(rep.Passes, p)
	}
	for _, sc := range o.Schedules {
		o.Logger.Info("mimic pass", "schedule", sc, "prompts", o.MimicPrompts)
		m := &Mimic{Policy: pol, Reward: rw, Config: *o.Config, Workers: o.Workers, ChunkSize: o.ChunkSize, Schedule: sc}
		p, err := mimicPass(ctx, srv, m, Prompts(o.MimicPrompts))
		if err != nil {
			return rep, err
		}
		rep.Passes = append(rep.Passes, p)
	}
	var mimic *PassReport
	for i := range rep.Passes {
		if rep.Passes[i].Scheduler != "runner" {
			mimic = &rep.Passes[i]
			break
		}
	}
	first := true
	for i := range rep.Passes {
		p := &rep.Passes[i]
		if p.Scheduler != "runner" {
			continue
		}
		p.UtilizationGoal = p.SteadyUtilization >= 0.9
		if mimic != nil && mimic.PromptsPerSimMinute > 0 {
			p.Speedup = p.PromptsPerSimMinute / mimic.PromptsPerSimMinute
			p.SpeedupGoal = p.Speedup >= 3
		}
		if first {
			rep.Speedup, rep.UtilizationGoal, rep.SpeedupGoal = p.Speedup, p.UtilizationGoal, p.SpeedupGoal
			first = false
		}
	}
	return rep, nil
}

// meter follows a pass: it counts finished items and snapshots the
// simulator's stats when 10% and 90% of them are done.
type meter struct {
	srv   *Sim
	total int

	mu      sync.Mutex
	done    int
	failed  int
	retries int
	marks   [2]*sim.Stats
}

func newMeter(srv *Sim, total int) *meter { return &meter{srv: srv, total: total} }

func (m *meter) item(res *tpo.Result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done++
	if res != nil {
		m.retries += res.Usage.Retries
		if res.Error != "" {
			m.failed++
		}
	}
	for i, frac := range []float64{0.1, 0.9} {
		if m.marks[i] == nil && float64(m.done) >= frac*float64(m.total) {
			st := m.srv.Stats()
			m.marks[i] = &st
		}
	}
}

// report builds the pass's report from the stats at its end.
func (m *meter) report(name string, wall time.Duration, st sim.Stats) PassReport {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := PassReport{
		Scheduler:        name,
		Prompts:          m.done,
		Failed:           m.failed,
		WallSeconds:      wall.Seconds(),
		SimSeconds:       st.SimSeconds,
		Utilization:      st.Utilization,
		MeanActive:       st.Utilization * float64(st.Slots),
		MaxActive:        st.MaxActive,
		MaxQueue:         st.MaxQueue,
		TokensPerSimSec:  st.TokensPerSimSec,
		ChatRequests:     st.Requests[sim.EndpointChat],
		RewardCalls:      st.RewardCalls,
		Sequences:        st.Sequences,
		CompletionTokens: st.CompletionTokens,
		PolicyRetries:    m.retries,
	}
	if wall > 0 {
		p.PromptsPerMinute = float64(m.done) / wall.Minutes()
	}
	if st.SimSeconds > 0 {
		p.PromptsPerSimMinute = float64(m.done) / (st.SimSeconds / 60)
	}
	p.SteadyUtilization = p.Utilization
	if a, b := m.marks[0], m.marks[1]; a != nil && b != nil && b.SimSeconds > a.SimSeconds {
		p.SteadyUtilization = (b.BusySlotSeconds - a.BusySlotSeconds) / (float64(st.Slots) * (b.SimSeconds - a.SimSeconds))
	}
	return p
}

// runnerPass runs tpo.Runner over items read from a dataset file, with a
// fresh SQLite store, as `tpo run --data` does.
func runnerPass(ctx context.Context, srv *Sim, opt *tpo.Optimizer, dir string, items []tpo.Item, concurrency int, log *slog.Logger) (PassReport, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return PassReport{}, err
	}
	src, closeSrc, err := openDataset(dir, items)
	if err != nil {
		return PassReport{}, err
	}
	defer closeSrc()
	store, err := sqlite.Open(ctx, filepath.Join(dir, "tpo.db"))
	if err != nil {
		return PassReport{}, fmt.Errorf("store: %w", err)
	}
	defer store.Close()
	m := newMeter(srv, len(items))
	rn := &tpo.Runner{Optimizer: opt, Store: store, Concurrency: concurrency, Logger: log,
		OnItem: func(st tpo.ItemState, _ bool) { m.item(st.Result) }}
	waitIdle(ctx, srv)
	srv.ResetStats()
	t0 := time.Now()
	_, sum, err := rn.Run(ctx, tpo.Run{Kind: "run", Source: "bench", Key: "bench"}, src)
	wall := time.Since(t0)
	st := srv.Stats()
	if err != nil {
		return PassReport{}, fmt.Errorf("runner: %w", err)
	}
	if sum.Items != len(items) {
		return PassReport{}, fmt.Errorf("runner: read %d items, want %d", sum.Items, len(items))
	}
	p := m.report("runner", wall, st)
	p.Concurrency = concurrency
	return p, nil
}

// mimicPass runs m over items.
func mimicPass(ctx context.Context, srv *Sim, m *Mimic, items []tpo.Item) (PassReport, error) {
	mt := newMeter(srv, len(items))
	m.OnItem = func(r tpo.Result) { mt.item(&r) }
	waitIdle(ctx, srv)
	srv.ResetStats()
	t0 := time.Now()
	res, err := m.Run(ctx, items)
	wall := time.Since(t0)
	st := srv.Stats()
	if err != nil {
		return PassReport{}, fmt.Errorf("mimic: %w", err)
	}
	if len(res) != len(items) {
		return PassReport{}, errors.New("mimic: results missing")
	}
	p := mt.report("mimic-"+string(m.Schedule), wall, st)
	p.Workers, p.ChunkSize = max(m.Workers, 1), max(m.ChunkSize, 1)
	return p, nil
}

// waitIdle waits until the simulator has no sequence running or queued
// (requests abandoned by a previous pass), for at most a few seconds.
func waitIdle(ctx context.Context, srv *Sim) {
	for range 100 {
		st := srv.Stats()
		if st.Active == 0 && st.Queued == 0 {
			return
		}
		ctxSleep(ctx, 20*time.Millisecond)
	}
}
