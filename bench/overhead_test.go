package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/dataset"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/openai"
)

// fastPolicy answers every request at once with canned texts of realistic
// length, so that a benchmark measures the orchestrator alone.
type fastPolicy struct{ calls atomic.Int64 }

var (
	cannedSample = strings.Repeat("A sentence of a sampled answer, about ten words long. ", 25)
	cannedUpdate = "Here is the improved response.\n<improved_response>" + cannedSample + "</improved_response>"
)

func (p *fastPolicy) Generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	k := p.calls.Add(1)
	texts := make([]string, max(req.N, 1))
	for i := range texts {
		switch req.Stage {
		case tpo.StageUpdate:
			texts[i] = cannedUpdate + fmt.Sprint(k, i)
		default:
			texts[i] = cannedSample + fmt.Sprint(k, i)
		}
	}
	return tpo.Generation{Texts: texts, Usage: tpo.Usage{Requests: 1, PromptTokens: 500, CompletionTokens: 350 * len(texts)}}, nil
}

type fastReward struct{}

func (fastReward) Score(ctx context.Context, msgs []tpo.Message, responses []string) (tpo.Scores, error) {
	out := make([]float64, len(responses))
	for i, r := range responses {
		out[i] = float64(len(r) % 13)
	}
	return tpo.Scores{Values: out}, nil
}

// discardStore is a tpo.Store that keeps nothing.
type discardStore struct{}

func (discardStore) OpenRun(ctx context.Context, run tpo.Run) (tpo.Run, bool, error) {
	run.ID = "discard"
	return run, true, nil
}
func (discardStore) StartItem(ctx context.Context, runID string, seq int, item tpo.Item) (tpo.ItemState, error) {
	return tpo.ItemState{Seq: seq, Item: item}, nil
}
func (discardStore) SaveStep(context.Context, string, string, tpo.Step) error        { return nil }
func (discardStore) FinishItem(context.Context, string, tpo.Result) error            { return nil }
func (discardStore) FinishRun(ctx context.Context, runID string, at time.Time) error { return nil }

// reportPerRequest adds ns/request and allocs/request metrics, given the
// allocations counted over the benchmark loop.
func reportPerRequest(b *testing.B, requests int64, mallocs uint64) {
	if requests == 0 {
		return
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(requests), "ns/request")
	b.ReportMetric(float64(mallocs)/float64(requests), "allocs/request")
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// BenchmarkOptimize measures the optimizer's own cost per item (D2-N5:
// 7 policy requests, 3 reward calls) with in-memory fakes.
func BenchmarkOptimize(b *testing.B) {
	p := &fastPolicy{}
	opt := &tpo.Optimizer{Policy: p, Reward: fastReward{}, Config: tpo.DefaultConfig(), Logger: slog.New(slog.DiscardHandler)}
	item := Prompts(1)[0]
	b.ReportAllocs()
	m0 := mallocs()
	for b.Loop() {
		if _, err := opt.Optimize(context.Background(), item, tpo.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	reportPerRequest(b, p.calls.Load(), mallocs()-m0)
}

// BenchmarkRunner measures the runner's cost per item on top of the
// optimizer: workers, the source, events and store calls (a store that
// keeps nothing), at concurrency 16.
func BenchmarkRunner(b *testing.B) {
	p := &fastPolicy{}
	opt := &tpo.Optimizer{Policy: p, Reward: fastReward{}, Config: tpo.DefaultConfig(), Logger: slog.New(slog.DiscardHandler)}
	rn := &tpo.Runner{Optimizer: opt, Store: discardStore{}, Concurrency: 16, Logger: slog.New(slog.DiscardHandler)}
	items := Prompts(64)
	b.ReportAllocs()
	m0 := mallocs()
	b.ResetTimer()
	// One run of b.N items, so that the workers stay busy as in a real run.
	src := &genSource{n: b.N, items: items}
	if _, sum, err := rn.Run(context.Background(), tpo.Run{Kind: "run"}, src); err != nil || sum.Done != b.N {
		b.Fatalf("run: %v, %+v", err, sum)
	}
	b.StopTimer()
	reportPerRequest(b, p.calls.Load(), mallocs()-m0)
}

// genSource yields n items, cycling over items with fresh ids.
type genSource struct {
	n, i  int
	items []tpo.Item
}

func (s *genSource) Next() (tpo.Input, error) {
	if s.i >= s.n {
		return tpo.Input{}, io.EOF
	}
	it := s.items[s.i%len(s.items)]
	it.ID = fmt.Sprint(s.i)
	s.i++
	return tpo.Input{Item: it}, nil
}

// BenchmarkClientRequest measures one policy request through the openai
// client and httpx over loopback to a server that answers at once with a
// canned five-choice completion: the client side's CPU and allocations per
// request (the server's share is included in ns/op, not in allocs/op
// alone).
func BenchmarkClientRequest(b *testing.B) {
	choices := make([]map[string]any, 5)
	for i := range choices {
		choices[i] = map[string]any{"index": i, "message": map[string]string{"role": "assistant", "content": cannedSample},
			"finish_reason": "stop"}
	}
	body, _ := json.Marshal(map[string]any{"id": "x", "object": "chat.completion", "model": "m", "choices": choices,
		"usage": map[string]int{"prompt_tokens": 500, "completion_tokens": 1750, "total_tokens": 2250}})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer hs.Close()
	c, err := openai.New(openai.Options{Options: httpx.Options{URLs: []string{hs.URL + "/v1"}}, Model: "m"})
	if err != nil {
		b.Fatal(err)
	}
	req := tpo.GenerateRequest{Messages: Prompts(1)[0].Messages, N: 5, Sampling: tpo.DefaultConfig().Sampling, Stage: tpo.StageSample}
	b.ReportAllocs()
	for b.Loop() {
		g, err := c.Generate(context.Background(), req)
		if err != nil || len(g.Texts) != 5 {
			b.Fatalf("generate: %v, %d texts", err, len(g.Texts))
		}
	}
}

// writeBigDataset writes n prompts of about 1 KiB each as JSON Lines.
func writeBigDataset(tb testing.TB, n int) (string, int64) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "big.jsonl")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(f)
	pad := strings.Repeat("Give details and examples. ", 36)
	enc := json.NewEncoder(w)
	for i := range n {
		if err := enc.Encode(map[string]string{"id": fmt.Sprint(i + 1), "prompt": fmt.Sprintf("Question number %d. %s", i+1, pad)}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	st, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return path, st.Size()
}

// heapPeak samples the heap in use until stop is called and returns the
// peak seen.
func heapPeak() (stop func() uint64) {
	var (
		mu   sync.Mutex
		peak uint64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapInuse)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				sample()
			case <-done:
				return
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		sample()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// streamDataset reads the dataset at path with the dataset reader and
// optimizes every item (best of one) with fast fakes and a store that keeps
// nothing, as `tpo run --data` reads it.
func streamDataset(tb testing.TB, path string) (items int, peakHeap uint64) {
	tb.Helper()
	runtime.GC()
	stop := heapPeak()
	r, err := dataset.Open(path, dataset.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	// Best of one: the reading path is measured, not the optimizer.
	cfg := tpo.DefaultConfig()
	cfg.Mode, cfg.Width = tpo.ModeBoN, 1
	opt := &tpo.Optimizer{Policy: &fastPolicy{}, Reward: fastReward{}, Config: cfg, Logger: slog.New(slog.DiscardHandler)}
	rn := &tpo.Runner{Optimizer: opt, Store: discardStore{}, Concurrency: 16, Logger: slog.New(slog.DiscardHandler)}
	_, sum, err := rn.Run(context.Background(), tpo.Run{Kind: "run"}, dataset.NewSource(r, dataset.SourceOptions{}))
	peakHeap = stop()
	if err != nil {
		tb.Fatal(err)
	}
	if sum.Failed != 0 {
		tb.Fatalf("%d items failed", sum.Failed)
	}
	return sum.Items, peakHeap
}

// vmHWM returns the process's peak resident set size in bytes (Linux), or
// 0.
func vmHWM() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb uint64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}

// BenchmarkStream50k streams a 50,000-prompt dataset (about 50 MB) through
// the dataset reader and the runner with fast fakes (see streamDataset),
// reporting the peak heap in use and the process's peak RSS.
func BenchmarkStream50k(b *testing.B) {
	path, size := writeBigDataset(b, 50000)
	var peak uint64
	for b.Loop() {
		n, p := streamDataset(b, path)
		if n != 50000 {
			b.Fatalf("streamed %d items", n)
		}
		peak = max(peak, p)
	}
	b.ReportMetric(float64(size)/(1<<20), "file-MiB")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(vmHWM())/(1<<20), "peak-RSS-MiB")
}

// TestStreamingMemory checks that a dataset is streamed, not loaded whole:
// the heap in use while 50,000 prompts go through the reader and the
// runner stays far below the file's size.
func TestStreamingMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 50,000 prompts")
	}
	path, size := writeBigDataset(t, 50000)
	n, peak := streamDataset(t, path)
	if n != 50000 {
		t.Fatalf("streamed %d items, want 50000", n)
	}
	if peak > uint64(size)/2 {
		t.Errorf("peak heap in use %d MiB for a %d MiB file: the dataset is not streamed", peak>>20, size>>20)
	}
	t.Logf("file %d MiB, peak heap in use %.1f MiB", size>>20, float64(peak)/(1<<20))
}
