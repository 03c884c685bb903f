package eval

import (
	"context"
	"fmt"
	"math"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/tpoproject/tpo"
)

// RewardItem is one answer for Rescore: the conversation it answers and
// the response.
type RewardItem struct {
	ID       string
	Messages []tpo.Message
	Response string
}

// Rescored is what Rescore found: the sum and count of the finite scores,
// and how many answers could not be scored, with the first error.
type Rescored struct {
	Total  float64
	Scored int
	Failed int
	First  error
}

// Mean is the mean score, or 0 when nothing was scored.
func (r Rescored) Mean() float64 {
	if r.Scored == 0 {
		return 0
	}
	return r.Total / float64(r.Scored)
}

// Rescore scores every item's response with s, at most concurrency at
// once. An answer that fails, or gets a score that is not a finite number,
// is counted in Failed; only a cancelled ctx is returned as an error.
func Rescore(ctx context.Context, s tpo.Scorer, items []RewardItem, concurrency int) (Rescored, error) {
	scores := make([]float64, len(items))
	ok := make([]bool, len(items))
	var (
		mu  sync.Mutex
		res Rescored
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if res.Failed++; res.First == nil {
			res.First = err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(concurrency, 1))
	for i, it := range items {
		g.Go(func() error {
			res, err := s.Score(gctx, it.Messages, []string{it.Response})
			got := res.Values
			switch {
			case err != nil:
				fail(fmt.Errorf("item %q: %w", it.ID, err))
			case len(got) != 1:
				fail(fmt.Errorf("item %q: %d scores for one answer", it.ID, len(got)))
			case math.IsNaN(got[0]) || math.IsInf(got[0], 0):
				fail(fmt.Errorf("item %q: score %v", it.ID, got[0]))
			default:
				scores[i], ok[i] = got[0], true
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines record failures and return nil
	if err := ctx.Err(); err != nil {
		return res, err
	}
	for i, v := range scores {
		if ok[i] {
			res.Total += v
			res.Scored++
		}
	}
	return res, nil
}
