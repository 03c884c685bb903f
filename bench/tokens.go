package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/sim"
	"github.com/tpoproject/tpo/sqlite"
)

// TokensOptions configure Tokens. Zero values mean the defaults given with
// each field.
type TokensOptions struct {
	// Prompts is the number of prompts per configuration (default 20).
	Prompts int
	// Modes, Widths and Depths span the configurations measured (default
	// tpo, revision and bon; N 2 and 5; D 1, 2 and 4). Bon ignores the
	// depth: it is measured once per width.
	Modes  []tpo.Mode
	Widths []int
	Depths []int
	// Base holds the other settings (default tpo.DefaultConfig() with
	// seed 1).
	Base *tpo.Config
	// Rules are the sets of stopping rules measured side by side: each
	// configuration runs the same prompts once per set (default: Base's
	// own rules alone).
	Rules []Rules
	// Concurrency is the runner's (default 16).
	Concurrency int
	// Sim configures the simulated server (TimeScale defaults to
	// DefaultServeTimeScale; UnparsedRate to none, so that every update is
	// a candidate and the counts can match the algorithm's exactly).
	Sim     sim.Options
	Clients ClientOptions
	Dir     string
	Logger  *slog.Logger
}

// Counts are what a prompt costs, on average.
type Counts struct {
	// Requests counts policy requests (chat completions) and Generations
	// the sequences generated, both as the simulated server counted them
	// (less retries: it counts every attempt).
	Requests    float64 `json:"requests"`
	Generations float64 `json:"generations"`
	// Scored counts the candidates in the result (each distinct text is
	// sent to the reward model once); ScoreCalls the reward calls.
	Scored     float64 `json:"scored_candidates"`
	ScoreCalls float64 `json:"score_calls"`
}

// TokensRow is one configuration's measured cost per prompt.
type TokensRow struct {
	Mode  tpo.Mode `json:"mode"`
	Width int      `json:"width"`
	Depth int      `json:"depth"`
	// Rule names the stopping rules of the row (Rules.Name); Rules are
	// their settings.
	Rule  string `json:"rule"`
	Rules Rules  `json:"rules"`
	// Required is what the algorithm needs: 1+3D requests, N+D(N+2)
	// generations, N(D+1) scored candidates and D+1 reward calls (bon: 1,
	// N, N and 1). Measured is what a run took, per prompt.
	Required Counts `json:"required"`
	Measured Counts `json:"measured"`
	// Match is true when every measured count equals the required one.
	Match bool `json:"match"`
	// Token counts per prompt, as the servers reported them.
	PromptTokens     float64 `json:"prompt_tokens"`
	CompletionTokens float64 `json:"completion_tokens"`
	RewardTokens     float64 `json:"reward_tokens"`
	// CachedPromptTokens is the prompt tokens per prompt that the
	// simulated server's prefix cache served (see sim.PrefixCacheStats);
	// PrefixHitRate their share of all the prompt tokens it received.
	CachedPromptTokens float64 `json:"cached_prompt_tokens"`
	PrefixHitRate      float64 `json:"prefix_hit_rate"`
	// ClientRequests is tpo.Usage.Requests per prompt (what the client
	// counted); Unparsed the update answers without tags, per prompt.
	ClientRequests float64 `json:"client_requests"`
	Unparsed       float64 `json:"unparsed"`
	Failed         int     `json:"failed"`
	// MeanScore is the mean score of the answers, MeanInitialBest the mean
	// best score of the step-0 samples, MeanGain the mean of the answers'
	// gains over them; Stops counts the items by why they stopped (see
	// tpo.StopReason) and StoppedEarly those that stopped before their D
	// rounds.
	MeanScore       float64                `json:"mean_score"`
	MeanInitialBest float64                `json:"mean_initial_best"`
	MeanGain        float64                `json:"mean_gain"`
	Stops           map[tpo.StopReason]int `json:"stops"`
	StoppedEarly    int                    `json:"stopped_early"`
	// MaxItemTokens is the most policy tokens (prompt plus completion)
	// one item used. With a budget, OverBudget is how far the item that
	// went furthest over it went (0 when none did), OverBudgetItems how
	// many did, and OverLastRound the largest share of its last round an
	// item went over by.
	MaxItemTokens   int     `json:"max_item_tokens"`
	OverBudget      int     `json:"over_budget"`
	OverBudgetItems int     `json:"over_budget_items"`
	OverLastRound   float64 `json:"over_last_round"`
	// TokensSaved is the share of policy tokens per prompt saved against
	// the row of the same configuration with no rules, when Rules holds
	// such a set ("none").
	TokensSaved *float64 `json:"tokens_saved,omitempty"`
}

// TokensReport is the outcome of Tokens.
type TokensReport struct {
	Benchmark  string      `json:"benchmark"` // "tokens"
	Machine    Machine     `json:"machine"`
	Prompts    int         `json:"prompts"`
	MeanTokens int         `json:"mean_tokens"`
	Rows       []TokensRow `json:"rows"`
	// AllMatch is true when every row matches.
	AllMatch bool `json:"all_match"`
}

// Required returns what the algorithm needs per prompt in mode with width
// n and depth d (at most, with stopping rules).
func Required(mode tpo.Mode, n, d int) Counts {
	if mode == tpo.ModeBoN {
		return Counts{Requests: 1, Generations: float64(n), Scored: float64(n), ScoreCalls: 1}
	}
	return Counts{Requests: float64(1 + 3*d), Generations: float64(n + d*(n+2)),
		Scored: float64(n * (d + 1)), ScoreCalls: float64(d + 1)}
}

// Tokens runs the runner over the same prompts for each configuration and
// reports what a prompt costs.
func Tokens(ctx context.Context, o TokensOptions) (TokensReport, error) {
	if o.Prompts <= 0 {
		o.Prompts = 20
	}
	if len(o.Modes) == 0 {
		o.Modes = []tpo.Mode{tpo.ModeTPO, tpo.ModeRevision, tpo.ModeBoN}
	}
	if len(o.Widths) == 0 {
		o.Widths = []int{2, 5}
	}
	if len(o.Depths) == 0 {
		o.Depths = []int{1, 2, 4}
	}
	if o.Base == nil {
		c := tpo.DefaultConfig()
		seed := int64(1)
		c.Seed = &seed
		o.Base = &c
	}
	if len(o.Rules) == 0 {
		o.Rules = []Rules{RulesOf(*o.Base)}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Sim.TimeScale <= 0 {
		o.Sim.TimeScale = DefaultServeTimeScale
	}
	if o.Sim.UnparsedRate == 0 {
		o.Sim.UnparsedRate = -1
	}
	if o.Sim.MeanTokens <= 0 {
		o.Sim.MeanTokens = 350
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	rep := TokensReport{Benchmark: "tokens", Machine: ThisMachine(), Prompts: o.Prompts, MeanTokens: o.Sim.MeanTokens, AllMatch: true}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "tpo-bench-tokens-")
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
	items := Prompts(o.Prompts)
	pass := 0
	for _, mode := range o.Modes {
		depths := o.Depths
		if mode == tpo.ModeBoN {
			depths = []int{0}
		}
		for _, n := range o.Widths {
			for _, d := range depths {
				first, none := len(rep.Rows), -1
				for _, rules := range o.Rules {
					cfg := *o.Base
					cfg.Mode, cfg.Width, cfg.Depth = mode, n, d
					rules.apply(&cfg)
					if err := cfg.Validate(); err != nil {
						return rep, fmt.Errorf("config: %w", err)
					}
					pass++
					row, err := tokensPass(ctx, srv, &tpo.Optimizer{Policy: pol, Reward: rw, Config: cfg, Logger: o.Logger},
						filepath.Join(dir, fmt.Sprintf("pass-%d", pass)), items, o.Concurrency, o.Logger)
					if err != nil {
						return rep, fmt.Errorf("%s N%d D%d %s: %w", mode, n, d, rules.Name, err)
					}
					row.Rule, row.Rules = rules.Name, rules
					rep.AllMatch = rep.AllMatch && row.Match
					rep.Rows = append(rep.Rows, row)
					if rules.none() && none < 0 {
						none = len(rep.Rows) - 1
					}
				}
				if none >= 0 {
					setSaved(rep.Rows[first:], rep.Rows[none])
				}
			}
		}
	}
	return rep, nil
}

// setSaved sets the tokens each row saved against none.
func setSaved(rows []TokensRow, none TokensRow) {
	base := none.PromptTokens + none.CompletionTokens
	if base <= 0 {
		return
	}
	for i := range rows {
		saved := 1 - (rows[i].PromptTokens+rows[i].CompletionTokens)/base
		rows[i].TokensSaved = &saved
	}
}

func tokensPass(ctx context.Context, srv *Sim, opt *tpo.Optimizer, dir string, items []tpo.Item, concurrency int, log *slog.Logger) (TokensRow, error) {
	cfg := opt.Config
	row := TokensRow{Mode: cfg.Mode, Width: cfg.Width, Depth: cfg.Steps(), Required: Required(cfg.Mode, cfg.Width, cfg.Steps())}
	var (
		mu             sync.Mutex
		usage          tpo.Usage
		scored         int
		calls          int
		unparse        int
		score, initial float64
		answered       int
	)
	row.Stops = map[tpo.StopReason]int{}
	onItem := func(st tpo.ItemState, _ bool) {
		mu.Lock()
		defer mu.Unlock()
		r := st.Result
		if r == nil {
			return
		}
		if r.Error != "" {
			row.Failed++
		}
		usage.Add(r.Usage)
		calls += r.ScoreCalls
		row.MaxItemTokens = max(row.MaxItemTokens, r.Usage.TotalTokens())
		overBudget(&row, r, cfg.MaxItemTokens)
		if r.Error == "" {
			row.Stops[r.StopReason]++
			if r.StopReason != tpo.StopDepth {
				row.StoppedEarly++
			}
			score, initial, answered = score+r.Score, initial+r.InitialBest, answered+1
		}
		for _, s := range r.Steps {
			scored += len(s.Candidates)
			unparse += len(s.Unparsed)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return row, err
	}
	src, closeSrc, err := openDataset(dir, items)
	if err != nil {
		return row, err
	}
	defer closeSrc()
	store, err := sqlite.Open(ctx, filepath.Join(dir, "tpo.db"))
	if err != nil {
		return row, fmt.Errorf("store: %w", err)
	}
	defer store.Close()
	rn := &tpo.Runner{Optimizer: opt, Store: store, Concurrency: concurrency, Logger: log, OnItem: onItem}
	waitIdle(ctx, srv)
	srv.ResetStats()
	srv.ClearPrefixCache() // each configuration starts cold
	if _, _, err := rn.Run(ctx, tpo.Run{Kind: "run", Source: "bench"}, src); err != nil {
		return row, err
	}
	st := srv.Stats()
	n := float64(len(items))
	row.Measured = Counts{
		Requests:    float64(st.Requests[sim.EndpointChat]-int64(usage.Retries)) / n,
		Generations: float64(st.Sequences) / n,
		Scored:      float64(scored) / n,
		ScoreCalls:  float64(calls) / n,
	}
	row.Match = row.Measured == row.Required && row.Failed == 0
	if stopsEarly(cfg) {
		// With stopping rules the algorithm's counts are upper bounds.
		m, r := row.Measured, row.Required
		row.Match = m.Requests <= r.Requests && m.Generations <= r.Generations && m.Scored <= r.Scored &&
			m.ScoreCalls <= r.ScoreCalls && row.Failed == 0
	}
	if answered > 0 {
		row.MeanScore, row.MeanInitialBest = score/float64(answered), initial/float64(answered)
		row.MeanGain = row.MeanScore - row.MeanInitialBest
	}
	row.PromptTokens = float64(usage.PromptTokens) / n
	row.CompletionTokens = float64(usage.CompletionTokens) / n
	row.RewardTokens = float64(st.RewardTokens) / n
	row.CachedPromptTokens = float64(st.PrefixCache.CachedTokens) / n
	row.PrefixHitRate = st.PrefixCache.HitRate
	row.ClientRequests = float64(usage.Requests) / n
	row.Unparsed = float64(unparse) / n
	return row, nil
}

// overBudget counts r in the row's figures on its budget, if it went over.
func overBudget(row *TokensRow, r *tpo.Result, budget int) {
	over := r.Usage.TotalTokens() - budget
	if budget <= 0 || over <= 0 || len(r.Steps) == 0 {
		return
	}
	row.OverBudget, row.OverBudgetItems = max(row.OverBudget, over), row.OverBudgetItems+1
	if last := r.Steps[len(r.Steps)-1].Usage.TotalTokens(); last > 0 {
		row.OverLastRound = max(row.OverLastRound, float64(over)/float64(last))
	}
}

// stopsEarly reports whether cfg has a stopping rule.
func stopsEarly(cfg tpo.Config) bool {
	return cfg.Patience > 0 || cfg.TargetScore != nil || cfg.MaxItemTokens > 0
}
