package sim

import (
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
