package queue_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/tracing"
)

// TestTraceAnItemAcrossWorkers: two items, two workers. The first is
// interrupted (Ctrl-C) as it starts an item's step 1; the second, started
// after, finishes the run. Each item is one trace, whichever worker ran its
// steps: one tpo.item span (the second worker's enqueue of the same items
// adds none), a tpo.item.step span under it for every job, and the stage
// spans under the steps.
func TestTraceAnItemAcrossWorkers(t *testing.T) {
	const items = 2
	db := openStore(t)
	rec := tracetest.NewInMemoryExporter()
	tr := tracing.New(sdktrace.NewTracerProvider(sdktrace.WithSyncer(rec)))

	ctx, cancel := context.WithCancel(context.Background())
	first := newWorker(db, nil)
	first.runner.Optimizer.Policy = &interrupter{Generator: first.policy, cancel: cancel}
	first.runner.Optimizer.Tracer = tr
	if _, _, err := first.runner.Run(ctx, theRun, &sliceSource{in: inputs(items)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted worker: got %v, want context.Canceled", err)
	}
	second := newWorker(db, nil)
	second.runner.Optimizer.Tracer = tr
	run, _, err := second.runner.Run(context.Background(), theRun, &sliceSource{in: inputs(items)})
	if err != nil {
		t.Fatal(err)
	}
	checkDone(t, db, run.ID, items)

	traces := map[trace.TraceID][]tracetest.SpanStub{}
	for _, s := range rec.GetSpans() {
		traces[s.SpanContext.TraceID()] = append(traces[s.SpanContext.TraceID()], s)
	}
	if len(traces) != items {
		t.Fatalf("%d traces, want one per item (%d)", len(traces), items)
	}
	crossed, interrupted := 0, 0
	for _, spans := range traces {
		t.Run(itemOf(spans), func(t *testing.T) {
			if checkItemTrace(t, spans) > 1 {
				crossed++
			}
		})
		for _, s := range spans {
			if s.Name == "tpo.item.step" && attr(s, "tpo.outcome") == "interrupted" {
				interrupted++
			}
		}
	}
	if crossed == 0 || interrupted == 0 {
		t.Errorf("%d items' traces have the steps of both workers, %d steps interrupted; want some of each", crossed, interrupted)
	}
}

// interrupter cancels the run (Ctrl-C) at the first request of a step 1,
// which waits until the worker cancels it.
type interrupter struct {
	tpo.Generator
	cancel context.CancelFunc
	done   atomic.Bool
}

func (g *interrupter) Generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	if stepOf(req).step == 1 && !g.done.Swap(true) {
		g.cancel()
		<-ctx.Done()
		return tpo.Generation{}, ctx.Err()
	}
	return g.Generator.Generate(ctx, req)
}

// checkItemTrace checks the spans of one item's trace and returns how many
// workers ran its steps.
func checkItemTrace(t *testing.T, spans []tracetest.SpanStub) (workers int) {
	byID := map[trace.SpanID]tracetest.SpanStub{}
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
		byName[s.Name] = append(byName[s.Name], s)
	}
	roots := byName["tpo.item"]
	if len(roots) != 1 || roots[0].Parent.IsValid() {
		t.Fatalf("%d tpo.item spans, want one root", len(roots))
	}
	item := attr(roots[0], "tpo.item")
	for _, s := range spans {
		if got := attr(s, "tpo.item"); got != item {
			t.Errorf("span %s is of item %q in the trace of item %q", s.Name, got, item)
		}
	}
	var saved []string
	seen := map[string]bool{}
	for _, s := range byName["tpo.item.step"] {
		if s.Parent.SpanID() != roots[0].SpanContext.SpanID() {
			t.Errorf("step %s: not a child of the tpo.item span", attr(s, "tpo.step"))
		}
		if o := attr(s, "tpo.outcome"); o == "saved" || o == "finished" {
			saved = append(saved, attr(s, "tpo.step")+" "+o)
		}
		seen[attr(s, "tpo.worker")] = true
	}
	slices.Sort(saved)
	if want := []string{"0 saved", "1 saved", fmt.Sprint(depth) + " finished"}; !slices.Equal(saved, want) {
		t.Errorf("steps done: %q, want %q", saved, want)
	}
	stages := 0
	for _, s := range spans {
		if s.Name == "tpo.item" || s.Name == "tpo.item.step" {
			continue
		}
		stages++
		if p, ok := byID[s.Parent.SpanID()]; !ok || p.Name != "tpo.item.step" {
			t.Errorf("span %s (step %s): its parent is not a step's span", s.Name, attr(s, "tpo.step"))
		}
	}
	if want := 2 + 4*depth; stages < want {
		t.Errorf("%d stage spans, want at least %d", stages, want)
	}
	return len(seen)
}

// itemOf names the item of a trace, for messages.
func itemOf(spans []tracetest.SpanStub) string {
	for _, s := range spans {
		if s.Name == "tpo.item" {
			return "item " + attr(s, "tpo.item")
		}
	}
	return "no item span"
}

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if a.Key == attribute.Key(key) {
			return a.Value.String()
		}
	}
	return ""
}
