package bench

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/results"
	"github.com/tpoproject/tpo/sim"
	"github.com/tpoproject/tpo/sqlite"
)

// TestRunSurvivesFaults runs 200 prompts through the runner of `tpo run`
// against a simulated server that fails 10% of the requests of every
// endpoint with a 5xx, lets 5% hang until the client times out and answers
// 2% with a body that is not JSON. Every item must complete exactly once,
// and every failed policy attempt must show up as a retry in the items'
// usage.
func TestRunSurvivesFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 200 prompts against a faulty simulated server")
	}
	const items = 200
	quiet := slog.New(slog.DiscardHandler)
	faults := sim.Faults{ServerError: 0.05, Unavailable: 0.05, Timeout: 0.05, Malformed: 0.02,
		Style: sim.StyleMixed, Hang: 30 * time.Second}
	srv, err := StartSim(sim.Options{Seed: 11, TimeScale: 0.0002, MeanTokens: 30, Slots: 64, UnparsedRate: -1, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	pol, rw, err := Clients(srv.URL, ClientOptions{Retries: 12, PolicyTimeout: 500 * time.Millisecond,
		RewardTimeout: 500 * time.Millisecond, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tpo.DefaultConfig()
	cfg.Width, cfg.Depth = 2, 1
	cfg.Sampling.MaxTokens, cfg.Critique.MaxTokens = 512, 512
	seed := int64(5)
	cfg.Seed = &seed

	dir := t.TempDir()
	src, closeSrc, err := openDataset(dir, Prompts(items))
	if err != nil {
		t.Fatal(err)
	}
	defer closeSrc()
	store, err := sqlite.Open(context.Background(), filepath.Join(dir, "tpo.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	timeouts := &timeoutCounter{}
	ctx = httpx.WithRetryObserver(ctx, timeouts)
	rn := &tpo.Runner{Logger: quiet, Optimizer: &tpo.Optimizer{Policy: pol, Reward: rw, Config: cfg, Logger: quiet}, Store: store, Concurrency: 32}
	run, sum, err := rn.Run(ctx, tpo.Run{Kind: "run", Source: "reliability"}, src)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if sum.Items != items || sum.Done != items || sum.Failed != 0 {
		t.Errorf("summary %+v, want %d items all done", sum, items)
	}

	// Write the output as `tpo run --out` does, and read it back.
	out := filepath.Join(dir, "out.jsonl")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	w := results.NewWriter(f)
	var usage, scoreUsage tpo.Usage
	stepRetries := 0
	var rewardCalls int64 // /tokenize per distinct new text, /classify per score call
	err = store.Results(ctx, run.ID, func(st tpo.ItemState) error {
		if st.Result == nil {
			t.Errorf("item %s: no result", st.Item.ID)
			return nil
		}
		usage.Add(st.Result.Usage)
		scoreUsage.Add(st.Result.ScoreUsage)
		texts := map[string]bool{}
		for _, s := range st.Result.Steps {
			stepRetries += s.Usage.Retries
			for _, c := range s.Candidates {
				if !texts[c.Text] {
					texts[c.Text] = true
					rewardCalls++
				}
			}
		}
		rewardCalls += int64(st.Result.ScoreCalls)
		return w.Write(results.FromResult(*st.Result))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	seen := map[string]int{}
	n := 0
	err = results.Read(out, func(l results.Line) error {
		n++
		seen[l.ID]++
		if l.ID != strconv.Itoa(n) {
			t.Errorf("output line %d: id %q, want %d", n, l.ID, n)
		}
		if l.Error != nil {
			t.Errorf("item %s failed: %s", l.ID, *l.Error)
		}
		if len(l.Steps) != cfg.Depth+1 {
			t.Errorf("item %s: %d steps, want %d", l.ID, len(l.Steps), cfg.Depth+1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= items; i++ {
		if c := seen[strconv.Itoa(i)]; c != 1 {
			t.Errorf("item %d appears %d times in the output, want once", i, c)
		}
	}
	if n != items {
		t.Errorf("output has %d lines, want %d", n, items)
	}

	st := srv.Stats()
	for _, k := range []sim.FaultKind{sim.FaultServerError, sim.FaultUnavailable, sim.FaultTimeout, sim.FaultMalformed} {
		if st.Faults[k] == 0 {
			t.Errorf("no %s fault was injected: %v", k, st.Faults)
		}
	}
	// Every attempt the simulator saw either succeeded (Usage.Requests) or
	// failed and was retried (Usage.Retries).
	if usage.Retries == 0 {
		t.Error("no retry recorded in the items' usage")
	}
	if stepRetries != usage.Retries {
		t.Errorf("retries: steps sum to %d, items to %d", stepRetries, usage.Retries)
	}
	// An attempt whose timeout passes before the simulator even reads it
	// (the machine was busy) is a retry the simulator never saw: those
	// are the client's timeouts beyond the hangs the simulator injected.
	unseen := max(timeouts.n["policy"]+timeouts.n["reward"]-st.Faults[sim.FaultTimeout], 0)
	if got, want := st.Requests[sim.EndpointChat], int64(usage.Requests+usage.Retries); got > want || want-got > unseen {
		t.Errorf("policy attempts: the simulator saw %d, the usage accounts for %d (%d requests + %d retries; %d client timeouts, %d injected)",
			got, want, usage.Requests, usage.Retries, timeouts.n["policy"], st.Faults[sim.FaultTimeout])
	}
	// The reward path: every attempt is a successful request or a retry in
	// the items' score usage, and the requests are exactly the calls the
	// algorithm makes: one /tokenize per distinct response and one
	// /classify per score call.
	logical := rewardCalls
	attempts := st.Requests[sim.EndpointTokenize] + st.Requests[sim.EndpointClassify]
	if attempts <= logical {
		t.Errorf("reward attempts %d, want more than the %d calls needed (faults were injected)", attempts, logical)
	}
	if scoreUsage.Retries == 0 {
		t.Error("no reward retry recorded in the items' score usage")
	}
	if got := int64(scoreUsage.Requests); got != logical {
		t.Errorf("reward requests recorded: %d, want %d", got, logical)
	}
	if got, want := attempts, int64(scoreUsage.Requests+scoreUsage.Retries); got > want || want-got > unseen {
		t.Errorf("reward attempts: the simulator saw %d, the score usage accounts for %d", got, want)
	}
	t.Logf("faults %v; policy: %d requests, %d retries; reward: %d attempts for %d calls", st.Faults,
		usage.Requests, usage.Retries, attempts, logical)
}

// timeoutCounter counts the retries after a timed-out attempt, by client.
type timeoutCounter struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *timeoutCounter) ObserveRetry(r httpx.Retry) {
	if r.Reason != httpx.ReasonTimeout {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	c.n[r.Name]++
}
