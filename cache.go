package tpo

// cache is every scored candidate of an optimization, in the order found.
type cache struct {
	refs   []Ref
	cands  []Candidate
	scores map[string]float64
}

func newCache() *cache { return &cache{scores: map[string]float64{}} }

func (c *cache) add(ref Ref, cand Candidate) {
	c.refs = append(c.refs, ref)
	c.cands = append(c.cands, cand)
	if _, ok := c.scores[cand.Text]; !ok {
		c.scores[cand.Text] = cand.Score
	}
}

func (c *cache) scoreOf(text string) (float64, bool) {
	s, ok := c.scores[text]
	return s, ok
}

func (c *cache) at(ref Ref) Candidate {
	for i, r := range c.refs {
		if r == ref {
			return c.cands[i]
		}
	}
	return Candidate{}
}

// best returns the highest-scoring candidate; ties go to the earliest.
func (c *cache) best() Ref {
	bi := 0
	for i, cd := range c.cands {
		if cd.Score > c.cands[bi].Score {
			bi = i
		}
	}
	return c.refs[bi]
}

// worst returns the lowest-scoring candidate; ties go to the earliest.
func (c *cache) worst() Ref {
	wi := 0
	for i, cd := range c.cands {
		if cd.Score < c.cands[wi].Score {
			wi = i
		}
	}
	return c.refs[wi]
}
