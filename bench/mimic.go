package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/tpoproject/tpo"
)

// Schedule is how Mimic orders the work of a chunk.
type Schedule string

// The schedules.
const (
	// StageMajor runs one stage at a time across the chunk: the samples of
	// every item of the chunk, then all their scores, then all losses, all
	// gradients, all updates, all scores, and so on, with a barrier after
	// each stage. Workers calls are in flight at once.
	StageMajor Schedule = "stage"
	// ItemMajor is what the reference script's thread pool does: each of
	// Workers threads takes an item of the chunk and runs it to the end,
	// stage after stage; the next chunk starts when the whole chunk is done.
	ItemMajor Schedule = "item"
)

// ParseSchedule returns the schedule named s.
func ParseSchedule(s string) (Schedule, error) {
	switch sc := Schedule(s); sc {
	case StageMajor, ItemMajor:
		return sc, nil
	}
	return "", fmt.Errorf("unknown schedule %q (want %s or %s)", s, StageMajor, ItemMajor)
}

// Defaults of the paper's reference script: 4 threads, chunks of 4 prompts
// per thread.
const (
	DefaultMimicWorkers   = 4
	DefaultMimicChunkSize = 16
)

// Mimic optimizes items the way the paper's reference script schedules the
// work: the dataset is cut into chunks of ChunkSize items, a chunk is
// processed by Workers workers, and the next chunk starts only when every
// item of the current one is finished. It only schedules: each item is a
// tpo.Trajectory whose stages it calls, so it sends exactly the requests
// tpo.Optimizer sends and a comparison with tpo.Runner measures scheduling
// alone. It keeps no store.
type Mimic struct {
	Policy    tpo.Generator
	Reward    tpo.Scorer
	Config    tpo.Config
	Templates *tpo.Templates // nil: tpo.DefaultTemplates()
	Workers   int            // default DefaultMimicWorkers
	ChunkSize int            // default DefaultMimicChunkSize
	Schedule  Schedule       // default StageMajor
	// OnItem, if set, is called with each item's result as it finishes.
	// It may be called from several goroutines at once.
	OnItem func(tpo.Result)
}

// Run optimizes items and returns their results in input order. A failed
// item has its Error set; Run itself fails only when ctx ends or the
// configuration is invalid.
func (m *Mimic) Run(ctx context.Context, items []tpo.Item) ([]tpo.Result, error) {
	if err := m.Config.Validate(); err != nil {
		return nil, fmt.Errorf("mimic: config: %w", err)
	}
	opt := &tpo.Optimizer{Policy: m.Policy, Reward: m.Reward, Config: m.Config, Templates: m.Templates,
		Logger: slog.New(slog.DiscardHandler)}
	workers := m.Workers
	if workers <= 0 {
		workers = DefaultMimicWorkers
	}
	chunk := m.ChunkSize
	if chunk <= 0 {
		chunk = DefaultMimicChunkSize
	}
	sched := m.Schedule
	if sched == "" {
		sched = StageMajor
	}
	if _, err := ParseSchedule(string(sched)); err != nil {
		return nil, fmt.Errorf("mimic: %w", err)
	}
	out := make([]tpo.Result, 0, len(items))
	for start := 0; start < len(items); start += chunk {
		end := min(start+chunk, len(items))
		ts := make([]*tpo.Trajectory, end-start)
		for i, it := range items[start:end] {
			ts[i], _ = opt.Start(it, tpo.Options{}) // a bad item's trajectory has ended with its error
		}
		switch sched {
		case StageMajor:
			// Every item is at the same stage; run it across the chunk.
			for ctx.Err() == nil && anyLeft(ts) {
				forEach(ctx, workers, len(ts), func(i int) { step(ctx, ts[i]) })
			}
			for _, t := range ts {
				m.done(t)
			}
		case ItemMajor:
			forEach(ctx, workers, len(ts), func(i int) {
				for ctx.Err() == nil && ts[i].Next() != "" {
					step(ctx, ts[i])
				}
				m.done(ts[i])
			})
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		for _, t := range ts {
			out = append(out, t.Result())
		}
	}
	return out, nil
}

// step runs the next stage of t, if any; an error ends t and shows in its
// result.
func step(ctx context.Context, t *tpo.Trajectory) {
	if st := t.Next(); st != "" {
		_ = t.Do(ctx, st)
	}
}

func anyLeft(ts []*tpo.Trajectory) bool {
	for _, t := range ts {
		if t.Next() != "" {
			return true
		}
	}
	return false
}

func (m *Mimic) done(t *tpo.Trajectory) {
	if m.OnItem != nil {
		m.OnItem(t.Result())
	}
}

// forEach calls fn(0..n-1) from at most workers goroutines and waits for
// every call to return. It starts no new call once ctx is done.
func forEach(ctx context.Context, workers, n int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
}
