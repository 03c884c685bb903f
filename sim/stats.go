package sim

import (
	"maps"
	"time"
)

// Stats is the simulator's accounting since it started or since the last
// ResetStats. Simulated quantities come from the scheduler's own clock,
// which runs with the wall clock (divided by TimeScale) while no sequence is
// active and step by step otherwise.
type Stats struct {
	Since       time.Time `json:"since"`
	WallSeconds float64   `json:"wall_seconds"`
	SimSeconds  float64   `json:"sim_seconds"`

	Slots int `json:"slots"`
	// BusySlotSeconds is the simulated time sequences occupied slots,
	// summed over slots; Utilization is BusySlotSeconds over
	// Slots*SimSeconds.
	BusySlotSeconds float64 `json:"busy_slot_seconds"`
	Utilization     float64 `json:"utilization"`

	Steps int64 `json:"steps"`
	// GeneratedTokens counts the tokens decoded (one per active sequence
	// per step, including sequences later canceled); PrefillTokens the
	// prompt tokens prefilled.
	GeneratedTokens int64 `json:"generated_tokens"`
	PrefillTokens   int64 `json:"prefill_tokens"`
	// CompletionTokens counts the completion tokens of chat responses
	// delivered.
	CompletionTokens int64   `json:"completion_tokens"`
	Sequences        int64   `json:"sequences"`
	TokensPerSimSec  float64 `json:"tokens_per_sim_second"`
	TokensPerWallSec float64 `json:"tokens_per_wall_second"`
	MaxActive        int     `json:"max_active"`
	MaxQueue         int     `json:"max_queue"` // sequences waiting, at most
	Active           int     `json:"active"`    // now
	Queued           int     `json:"queued"`    // now
	RewardCalls      int64   `json:"reward_calls"`
	RewardInputs     int64   `json:"reward_inputs"`
	RewardTokens     int64   `json:"reward_tokens"`
	// PrefixCache is the prefix cache's accounting: the share of prompt
	// tokens it served.
	PrefixCache PrefixCacheStats    `json:"prefix_cache"`
	Requests    map[string]int64    `json:"requests"`
	Faults      map[FaultKind]int64 `json:"faults"`
}

// Stats returns the accounting since start or the last ResetStats.
func (s *Server) Stats() Stats {
	ss := s.sched.stats()
	st := Stats{
		Since:           ss.wallFrom,
		WallSeconds:     ss.wallSeconds,
		SimSeconds:      ss.simSeconds,
		Slots:           s.opts.Slots,
		BusySlotSeconds: ss.busy,
		Steps:           ss.steps,
		GeneratedTokens: ss.tokens,
		PrefillTokens:   ss.prompt,
		Sequences:       ss.seqs,
		MaxActive:       ss.maxActive,
		MaxQueue:        ss.maxQueue,
		Active:          ss.active,
		Queued:          ss.queued,
		PrefixCache:     s.cache.stats(),
	}
	if ss.simSeconds > 0 {
		st.Utilization = ss.busy / (float64(s.opts.Slots) * ss.simSeconds)
		st.TokensPerSimSec = float64(ss.tokens) / ss.simSeconds
	}
	if ss.wallSeconds > 0 {
		st.TokensPerWallSec = float64(ss.tokens) / ss.wallSeconds
	}
	s.mu.Lock()
	st.CompletionTokens = s.counts.completions
	st.RewardCalls = s.counts.rewardCalls
	st.RewardInputs = s.counts.rewardInputs
	st.RewardTokens = s.counts.rewardTokens
	st.Requests = maps.Clone(s.counts.requests)
	st.Faults = maps.Clone(s.counts.faults)
	s.mu.Unlock()
	return st
}

// ResetStats starts a new accounting interval.
func (s *Server) ResetStats() {
	s.sched.reset()
	s.cache.resetStats()
	s.mu.Lock()
	s.counts = newCounters()
	s.mu.Unlock()
}

// ClearPrefixCache empties the prefix cache, so that what follows is
// measured from a cold cache.
func (s *Server) ClearPrefixCache() { s.cache.clear() }
