package sim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPrefixCache(t *testing.T) {
	block := strings.Repeat("b", blockBytes)
	c := newPrefixCache(4)
	// A first prompt finds nothing.
	if got := c.prefill(block+block+"tail", 40); got != 0 {
		t.Errorf("cold prompt: %d cached tokens, want 0", got)
	}
	// The same prefix again: its two full blocks.
	if got := c.prefill(block+block+"other tail", 40); got != 2*BlockTokens {
		t.Errorf("repeated prefix: %d cached tokens, want %d", got, 2*BlockTokens)
	}
	// A block counts only after the same blocks before it.
	if got := c.prefill("x"+block+block, 40); got != 0 {
		t.Errorf("shifted text: %d cached tokens, want 0", got)
	}
	// A whole cached prompt still computes its last token.
	if got := c.prefill(block, BlockTokens); got != BlockTokens-1 {
		t.Errorf("whole prompt cached: %d, want %d", got, BlockTokens-1)
	}
	st := c.stats()
	if st.PromptTokens != 40+40+40+BlockTokens || st.CachedTokens != int64(2*BlockTokens+BlockTokens-1) || st.Used > 4 {
		t.Errorf("stats %+v", st)
	}
	if want := float64(st.CachedTokens) / float64(st.PromptTokens); st.HitRate != want {
		t.Errorf("hit rate %v, want %v", st.HitRate, want)
	}
}

func TestPrefixCacheEvictsLeastRecentlyUsed(t *testing.T) {
	a, b := strings.Repeat("a", blockBytes), strings.Repeat("b", blockBytes)
	c := newPrefixCache(2)
	c.store(a + a)   // blocks a1, a2
	c.prefill(a, 16) // a1 used again
	c.store(b)       // evicts a2, the least recently used
	if got := c.prefill(a+a, 40); got != BlockTokens {
		t.Errorf("after eviction: %d cached tokens, want %d (the first block only)", got, BlockTokens)
	}
	none := newPrefixCache(0)
	none.store(a)
	if got := none.prefill(a+a, 40); got != 0 || none.stats().Used != 0 {
		t.Errorf("no cache: %d cached, %d used", got, none.stats().Used)
	}
}

// TestPrefixCacheEvictsTheEndOfASequenceFirst: of the blocks of one
// sequence, which were used at the same time, the last ones go first, as in
// vLLM, so that the shared start of a prompt stays cached.
func TestPrefixCacheEvictsTheEndOfASequenceFirst(t *testing.T) {
	a, b, c := strings.Repeat("a", blockBytes), strings.Repeat("b", blockBytes), strings.Repeat("c", blockBytes)
	tests := []struct {
		name   string
		stored []string // sequences stored in turn
		prompt string
		want   int // cached tokens of prompt
	}{
		// a1 a2 a3 then b: a3 goes, a1 a2 stay.
		{"one sequence, then another", []string{a + a + a, b}, a + a + a, 2 * BlockTokens},
		// A sequence longer than the cache keeps its start.
		{"a sequence longer than the cache", []string{a + b + c + a + b}, a + b + c + c, 3 * BlockTokens},
		// The start shared by two sequences outlives both tails.
		{"a shared start", []string{a + b + b, a + c + c, c}, a + b + b, BlockTokens},
	}
	for _, tt := range tests {
		pc := newPrefixCache(3)
		for _, s := range tt.stored {
			pc.store(s)
		}
		if got := pc.prefill(tt.prompt, 100); got != tt.want {
			t.Errorf("%s: %d cached tokens, want %d", tt.name, got, tt.want)
		}
	}
}

// getStats reads GET /sim/stats.
func getStats(t *testing.T, ts *httptest.Server) Stats {
	t.Helper()
	resp, err := http.Get(ts.URL + EndpointStats)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStatsPrefixCache reads the prefix cache's accounting from /sim/stats:
// a prompt seen before is served from the cache but for its last partial
// block and token, a fresh one is not; a small cache keeps the start of a
// prompt and loses it to the next one.
func TestStatsPrefixCache(t *testing.T) {
	long := func(word string) []chatMessage { return msgs("user", strings.Repeat(word+" ", 200)) } // 800 bytes
	ask := func(ts *httptest.Server, m []chatMessage) PrefixCacheStats {
		t.Helper()
		chat(t, ts, chatReq{Messages: m, Seed: ptr[int64](1), MaxTokens: 8})
		return getStats(t, ts).PrefixCache
	}
	s, ts := newTest(t, Options{Seed: 1})
	p := render(long("tea"), true)
	tokens := int64(tokenCount(p))

	if st := ask(ts, long("tea")); st.PromptTokens != tokens || st.CachedTokens != 0 || st.HitRate != 0 || st.Blocks != 32768 {
		t.Errorf("a fresh prompt: %+v, want %d prompt tokens, none cached, 32768 blocks", st, tokens)
	}
	s.ResetStats()
	full := int64(len(p) / blockBytes * BlockTokens)
	if st := ask(ts, long("tea")); st.CachedTokens != full || st.HitRate != float64(full)/float64(tokens) || st.HitRate < 0.9 {
		t.Errorf("the same prompt again: %+v, want its %d tokens of full blocks cached", st, full)
	}
	s.ResetStats()
	if st := ask(ts, long("cup")); st.CachedTokens != 0 {
		t.Errorf("another prompt: %+v, want nothing cached", st)
	}

	// A cache of 4 blocks keeps the first 4 blocks of the prompt it saw
	// last, then loses them to the next prompt.
	s, ts = newTest(t, Options{Seed: 1, PrefixCacheBlocks: 4})
	ask(ts, long("tea"))
	s.ResetStats()
	if st := ask(ts, long("tea")); st.CachedTokens != 4*BlockTokens || st.Used != 4 || st.Blocks != 4 {
		t.Errorf("small cache, the same prompt again: %+v, want its first 4 blocks cached, 4 of 4 used", st)
	}
	ask(ts, long("cup"))
	s.ResetStats()
	if st := ask(ts, long("tea")); st.CachedTokens != 0 {
		t.Errorf("small cache, after another prompt: %+v, want nothing cached", st)
	}

	// No cache.
	_, ts = newTest(t, Options{Seed: 1, PrefixCacheBlocks: -1})
	ask(ts, long("tea"))
	if st := ask(ts, long("tea")); st.CachedTokens != 0 || st.Blocks != 0 || st.Used != 0 || st.PromptTokens != 2*tokens {
		t.Errorf("no cache: %+v", st)
	}
}
