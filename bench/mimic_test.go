package bench

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/sim"
)

// tracer is a fake policy and reward model that records the order of the
// calls, by item and stage, and how many were in flight at once.
type tracer struct {
	mu       sync.Mutex
	events   []event
	inFlight int
	maxIn    int
}

type event struct {
	item  string
	stage tpo.Stage
}

var itemRE = regexp.MustCompile(`item-\d+`)

func (tr *tracer) enter(msgs []tpo.Message, stage tpo.Stage) {
	id := ""
	for _, m := range msgs {
		if s := itemRE.FindString(m.Content); s != "" {
			id = s
			break
		}
	}
	tr.mu.Lock()
	tr.events = append(tr.events, event{id, stage})
	tr.inFlight++
	tr.maxIn = max(tr.maxIn, tr.inFlight)
	tr.mu.Unlock()
	time.Sleep(200 * time.Microsecond) // let other workers overlap
}

func (tr *tracer) leave() {
	tr.mu.Lock()
	tr.inFlight--
	tr.mu.Unlock()
}

func (tr *tracer) Generate(ctx context.Context, req tpo.GenerateRequest) (tpo.Generation, error) {
	tr.enter(req.Messages, req.Stage)
	defer tr.leave()
	g := tpo.Generation{Usage: tpo.Usage{Requests: 1}}
	for i := range max(req.N, 1) {
		t := fmt.Sprintf("%s reply %d seed %d", req.Stage, i, *req.Seed)
		if req.Stage == tpo.StageUpdate {
			t = "<improved_response>" + t + "</improved_response>"
		}
		g.Texts = append(g.Texts, t)
	}
	return g, nil
}

func (tr *tracer) Score(ctx context.Context, msgs []tpo.Message, responses []string) (tpo.Scores, error) {
	tr.enter(msgs, tpo.StageScore)
	defer tr.leave()
	out := make([]float64, len(responses))
	for i, r := range responses {
		out[i] = float64(len(r)%7) + float64(i)/10
	}
	return tpo.Scores{Values: out}, nil
}

func items(n int) []tpo.Item {
	out := make([]tpo.Item, n)
	for i := range out {
		out[i] = tpo.Item{ID: fmt.Sprint(i), Messages: []tpo.Message{{Role: tpo.RoleUser, Content: fmt.Sprintf("question about item-%d", i)}}}
	}
	return out
}

func testConfig(n, d int) tpo.Config {
	c := tpo.DefaultConfig()
	c.Width, c.Depth = n, d
	seed := int64(100)
	c.Seed = &seed
	return c
}

func TestMimicSchedules(t *testing.T) {
	const (
		nItems  = 10
		chunk   = 4
		workers = 3
		depth   = 2
	)
	stagesPerItem := 2 + 4*depth // sample, score, then loss, gradient, update, score per step
	for _, sc := range []Schedule{StageMajor, ItemMajor} {
		t.Run(string(sc), func(t *testing.T) {
			tr := &tracer{}
			m := &Mimic{Policy: tr, Reward: tr, Config: testConfig(3, depth), Workers: workers, ChunkSize: chunk, Schedule: sc}
			res, err := m.Run(context.Background(), items(nItems))
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != nItems {
				t.Fatalf("got %d results, want %d", len(res), nItems)
			}
			for i, r := range res {
				if r.ID != fmt.Sprint(i) || r.Error != "" || len(r.Steps) != depth+1 {
					t.Errorf("result %d: id %q, error %q, %d steps", i, r.ID, r.Error, len(r.Steps))
				}
			}
			if len(tr.events) != nItems*stagesPerItem {
				t.Fatalf("%d calls, want %d", len(tr.events), nItems*stagesPerItem)
			}
			if tr.maxIn > workers {
				t.Errorf("%d calls in flight at once, want at most %d", tr.maxIn, workers)
			}
			// Chunk barrier: the calls of chunk k all come before those of
			// chunk k+1.
			chunkOf := func(e event) int {
				var i int
				fmt.Sscanf(e.item, "item-%d", &i)
				return i / chunk
			}
			for i := 1; i < len(tr.events); i++ {
				if chunkOf(tr.events[i]) < chunkOf(tr.events[i-1]) {
					t.Fatalf("call %d (%v) of an earlier chunk comes after a call of a later chunk", i, tr.events[i])
				}
			}
			if sc != StageMajor {
				return
			}
			// Stage barrier: within a chunk, calls come stage by stage.
			pos := map[string]int{} // the number of calls of each item so far
			for i, e := range tr.events {
				pos[e.item]++
				k := pos[e.item]
				c := chunkOf(e)
				for j := c * chunk; j < min((c+1)*chunk, nItems); j++ {
					other := fmt.Sprintf("item-%d", j)
					if pos[other] < k-1 {
						t.Fatalf("call %d: %s makes its call %d while %s made only %d", i, e.item, k, other, pos[other])
					}
				}
			}
		})
	}
}

// TestMimicMatchesOptimizer checks that Mimic sends what tpo.Optimizer
// sends: with seeded requests to the simulated server, both reach the same
// answers, step by step.
func TestMimicMatchesOptimizer(t *testing.T) {
	srv, err := StartSim(sim.Options{Seed: 3, TimeScale: 0.0002, MeanTokens: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	pol, rw, err := Clients(srv.URL, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(3, 2)
	its := Prompts(6)
	opt := &tpo.Optimizer{Policy: pol, Reward: rw, Config: cfg, Logger: slog.New(slog.DiscardHandler)}
	var want []tpo.Result
	for _, it := range its {
		r, err := opt.Optimize(context.Background(), it, tpo.Options{})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r)
	}
	for _, sc := range []Schedule{StageMajor, ItemMajor} {
		m := &Mimic{Policy: pol, Reward: rw, Config: cfg, Workers: 2, ChunkSize: 4, Schedule: sc}
		got, err := m.Run(context.Background(), its)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.Response != w.Response || g.Score != w.Score || g.Best != w.Best || g.InitialBest != w.InitialBest {
				t.Errorf("%s item %s: got best %v %.4f, want %v %.4f", sc, g.ID, g.Best, g.Score, w.Best, w.Score)
			}
			if len(g.Steps) != len(w.Steps) {
				t.Errorf("%s item %s: %d steps, want %d", sc, g.ID, len(g.Steps), len(w.Steps))
				continue
			}
			for k := range w.Steps {
				gs, ws := g.Steps[k], w.Steps[k]
				if !slices.Equal(gs.Candidates, ws.Candidates) || gs.Loss != ws.Loss || gs.Gradient != ws.Gradient ||
					fmt.Sprint(gs.Chosen, gs.Rejected) != fmt.Sprint(ws.Chosen, ws.Rejected) {
					t.Errorf("%s item %s step %d differs from the optimizer's", sc, g.ID, k)
				}
			}
			if g.Usage.Requests != w.Usage.Requests || g.ScoreCalls != w.ScoreCalls {
				t.Errorf("%s item %s: %d requests, %d score calls; want %d, %d", sc, g.ID,
					g.Usage.Requests, g.ScoreCalls, w.Usage.Requests, w.ScoreCalls)
			}
		}
	}
}

func TestMimicFailures(t *testing.T) {
	// An invalid item fails alone; the others complete.
	tr := &tracer{}
	its := items(3)
	its[1].Messages = nil
	m := &Mimic{Policy: tr, Reward: tr, Config: testConfig(2, 1)}
	res, err := m.Run(context.Background(), its)
	if err != nil {
		t.Fatal(err)
	}
	if res[1].Error == "" || !strings.Contains(res[1].Error, "empty conversation") {
		t.Errorf("item 1: error %q, want an empty conversation error", res[1].Error)
	}
	for _, i := range []int{0, 2} {
		if res[i].Error != "" || res[i].Response == "" {
			t.Errorf("item %d: error %q, response %q", i, res[i].Error, res[i].Response)
		}
	}

	// A cancelled context stops the run.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Run(ctx, items(3)); err == nil {
		t.Error("cancelled run: no error")
	}

	// An invalid configuration or schedule is refused.
	bad := &Mimic{Policy: tr, Reward: tr, Config: tpo.Config{}}
	if _, err := bad.Run(context.Background(), items(1)); err == nil {
		t.Error("invalid config: no error")
	}
	bad = &Mimic{Policy: tr, Reward: tr, Config: testConfig(2, 1), Schedule: "random"}
	if _, err := bad.Run(context.Background(), items(1)); err == nil {
		t.Error("invalid schedule: no error")
	}
}
