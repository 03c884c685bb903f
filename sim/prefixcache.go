package sim

import (
	"container/list"
	"encoding/binary"
	"hash/maphash"
	"slices"
	"sync"
)

// BlockTokens is the size of a prefix cache block in tokens (vLLM's default
// block size).
const BlockTokens = 16

// blockBytes is a block's length in the simulator's text: a token is four
// bytes.
const blockBytes = 4 * BlockTokens

// prefixCache models automatic prefix caching as vLLM does it: the KV cache
// of a sequence is kept in blocks of BlockTokens tokens, each named by a hash
// of its tokens and of every token before it; a new prompt reuses the
// longest run of its leading blocks that are cached, and computes the rest.
// Only full blocks are cached. When the cache is full the least recently
// used blocks are evicted, and of the blocks of one sequence (used at the
// same time) the last ones first: vLLM frees a finished request's blocks
// in reverse order onto its LRU free queue (FreeKVCacheBlockQueue), so that
// the blocks at the start of a sequence, which more prompts share, stay
// longest. It is safe for concurrent use.
type prefixCache struct {
	seed     maphash.Seed
	capacity int // blocks; 0 means no cache

	mu     sync.Mutex
	lru    *list.List               // of uint64 block hashes, most recent first
	blocks map[uint64]*list.Element // hash -> its element in lru
	prompt int64                    // prompt tokens looked up
	hit    int64                    // of which served from the cache
}

func newPrefixCache(capacity int) *prefixCache {
	return &prefixCache{seed: maphash.MakeSeed(), capacity: max(capacity, 0), lru: list.New(), blocks: map[uint64]*list.Element{}}
}

// hashes returns the chained hashes of text's full blocks.
func (c *prefixCache) hashes(text string) []uint64 {
	out := make([]uint64, 0, len(text)/blockBytes)
	var prev uint64
	for i := 0; i+blockBytes <= len(text); i += blockBytes {
		var h maphash.Hash
		h.SetSeed(c.seed)
		_, _ = h.Write(binary.LittleEndian.AppendUint64(nil, prev))
		_, _ = h.WriteString(text[i : i+blockBytes])
		prev = h.Sum64()
		out = append(out, prev)
	}
	return out
}

// prefill looks up the prompt of a request, tokens long, whose rendered
// text is text, records it, caches its blocks and returns how many of its
// tokens were served from the cache. At least one token is always
// computed, as in vLLM.
func (c *prefixCache) prefill(text string, tokens int) int {
	hs := c.hashes(text)
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for n < len(hs) && c.blocks[hs[n]] != nil {
		n++
	}
	hit := min(n*BlockTokens, max(tokens-1, 0))
	if c.capacity == 0 {
		hit = 0
	}
	c.prompt += int64(tokens)
	c.hit += int64(hit)
	c.add(hs)
	return hit
}

// store caches the blocks of a sequence (a prompt and what was generated
// after it), so that a later prompt that repeats it finds them.
func (c *prefixCache) store(text string) {
	hs := c.hashes(text)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.add(hs)
}

// add marks the blocks of a sequence used, caching the new ones and
// evicting the least recently used beyond capacity. The blocks are marked
// from the last to the first, so that the first is the most recent and the
// last is evicted first. c.mu is held.
func (c *prefixCache) add(hs []uint64) {
	if c.capacity == 0 {
		return
	}
	for _, h := range slices.Backward(hs) {
		if e := c.blocks[h]; e != nil {
			c.lru.MoveToFront(e)
			continue
		}
		c.blocks[h] = c.lru.PushFront(h)
	}
	for c.lru.Len() > c.capacity {
		e := c.lru.Back()
		delete(c.blocks, e.Value.(uint64))
		c.lru.Remove(e)
	}
}

// PrefixCacheStats is the prefix cache's accounting.
type PrefixCacheStats struct {
	// Blocks is the cache's capacity in blocks of BlockTokens tokens (0:
	// no cache); Used the blocks it holds.
	Blocks int `json:"blocks"`
	Used   int `json:"used"`
	// PromptTokens counts the prompt tokens of chat requests; CachedTokens
	// those served from the cache; HitRate is their ratio.
	PromptTokens int64   `json:"prompt_tokens"`
	CachedTokens int64   `json:"cached_tokens"`
	HitRate      float64 `json:"hit_rate"`
}

func (c *prefixCache) stats() PrefixCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := PrefixCacheStats{Blocks: c.capacity, Used: c.lru.Len(), PromptTokens: c.prompt, CachedTokens: c.hit}
	if c.prompt > 0 {
		st.HitRate = float64(c.hit) / float64(c.prompt)
	}
	return st
}

// resetStats starts a new accounting interval; the cached blocks stay.
func (c *prefixCache) resetStats() {
	c.mu.Lock()
	c.prompt, c.hit = 0, 0
	c.mu.Unlock()
}

// clear empties the cache.
func (c *prefixCache) clear() {
	c.mu.Lock()
	c.lru.Init()
	clear(c.blocks)
	c.mu.Unlock()
}
