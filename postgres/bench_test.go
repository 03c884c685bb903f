package postgres

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

// benchStore opens a store with one run of 100 items of 3 steps.
func benchStore(b *testing.B) (*DB, string) {
	ctx := context.Background()
	db := openTest(b)
	run, _, err := db.OpenRun(ctx, tpo.Run{Kind: "run"})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 100 {
		id := fmt.Sprint(i)
		if _, err := db.StartItem(ctx, run.ID, i, tpo.Item{ID: id}); err != nil {
			b.Fatal(err)
		}
		for n := range 3 {
			if err := db.SaveStep(ctx, run.ID, id, benchStep(n)); err != nil {
				b.Fatal(err)
			}
		}
	}
	return db, run.ID
}

// BenchmarkSaveStep measures one SaveStep, the write made after every step
// of every item.
func BenchmarkSaveStep(b *testing.B) {
	ctx := context.Background()
	db, runID := benchStore(b)
	for i := 0; b.Loop(); i++ {
		if err := db.SaveStep(ctx, runID, fmt.Sprint(i%100), benchStep(i%3)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSaveStep64 measures SaveStep from 64 goroutines at once, as tpo
// run's 64 workers (--concurrency) write.
func BenchmarkSaveStep64(b *testing.B) {
	ctx := context.Background()
	db, runID := benchStore(b)
	var next atomic.Int64
	b.SetParallelism(max(64/runtime.GOMAXPROCS(0), 1))
	b.RunParallel(func(pb *testing.PB) {
		id := fmt.Sprint(next.Add(1) % 100)
		for i := 0; pb.Next(); i++ {
			if err := db.SaveStep(ctx, runID, id, benchStep(i%3)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
