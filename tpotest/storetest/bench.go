package storetest

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tpoproject/tpo"
)

// benchStep is a step as tpo run saves it at N=5: five responses of about
// 2 KB, a critique, instructions and the messages of its three calls.
func benchStep(n int) tpo.Step {
	text := strings.Repeat("lorem ipsum dolor sit amet ", 80)
	s := tpo.Step{Step: n, Loss: text, Gradient: text, Usage: tpo.Usage{Requests: 3, PromptTokens: 4000, CompletionTokens: 3000}}
	for i := range 5 {
		s.Candidates = append(s.Candidates, tpo.Candidate{Text: text, Score: float64(i)})
	}
	for _, st := range []tpo.Stage{tpo.StageLoss, tpo.StageGradient, tpo.StageUpdate} {
		s.Calls = append(s.Calls, tpo.Call{Stage: st, N: 1, Messages: []tpo.Message{{Role: tpo.RoleUser, Content: text}}})
	}
	return s
}

// benchStore fills store with one run of 100 items of 3 steps.
func benchStore(b *testing.B, store tpo.Store) string {
	ctx := context.Background()
	run, _, err := store.OpenRun(ctx, tpo.Run{Kind: "run"})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 100 {
		id := fmt.Sprint(i)
		if _, err := store.StartItem(ctx, run.ID, i, tpo.Item{ID: id}); err != nil {
			b.Fatal(err)
		}
		for n := range 3 {
			if err := store.SaveStep(ctx, run.ID, id, benchStep(n)); err != nil {
				b.Fatal(err)
			}
		}
	}
	return run.ID
}

// BenchSaveStep measures one SaveStep, the write made after every step of
// every item, on the store open returns.
func BenchSaveStep(b *testing.B, open func(b *testing.B) tpo.Store) {
	ctx := context.Background()
	store := open(b)
	runID := benchStore(b, store)
	for i := 0; b.Loop(); i++ {
		if err := store.SaveStep(ctx, runID, fmt.Sprint(i%100), benchStep(i%3)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchSaveStep64 measures SaveStep from 64 goroutines at once, as tpo
// run's 64 workers (--concurrency) write.
func BenchSaveStep64(b *testing.B, open func(b *testing.B) tpo.Store) {
	ctx := context.Background()
	store := open(b)
	runID := benchStore(b, store)
	var next atomic.Int64
	b.SetParallelism(max(64/runtime.GOMAXPROCS(0), 1))
	b.RunParallel(func(pb *testing.PB) {
		id := fmt.Sprint(next.Add(1) % 100)
		for i := 0; pb.Next(); i++ {
			if err := store.SaveStep(ctx, runID, id, benchStep(i%3)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
