package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/pgtest"
	"github.com/tpoproject/tpo/postgres"
	"github.com/tpoproject/tpo/sim"
)

// TestServeReplicaUIPolls: two tpo serve replicas on one PostgreSQL store.
// A request optimized by replica A is a run in flight there alone: A's run
// page follows its events, B's pages of the run poll the store instead (B's
// event streams answer 204, which tells a browser not to reconnect), and
// what B's polls fetch shows the step A saves, then the final answer.
func TestServeReplicaUIPolls(t *testing.T) {
	store := pgtest.Schema(t)
	simURL := simServer(t, sim.Options{Seed: 53})
	g, gated := newGate(t, simURL)
	args := func(policy string) []string {
		return []string{"--addr", "127.0.0.1:0", "--store", store, "--width", "2", "--depth", "1",
			"--policy-url", policy + "/v1", "--policy-model", "sim-policy",
			"--reward", "vllm", "--reward-url", simURL, "--reward-model", "sim-reward"}
	}
	ctx, cancel := context.WithCancel(context.Background())
	baseA, errA, _ := startServe(t, ctx, args(gated))
	baseB, errB, _ := startServe(t, ctx, args(simURL))
	defer func() {
		g.open()
		cancel()
		<-errA
		<-errB
	}()
	uiA, uiB := strings.TrimSuffix(baseA, "/v1")+"/ui", strings.TrimSuffix(baseB, "/v1")+"/ui"

	// A request to A, held at the gate before its first sample.
	answered := make(chan int, 1)
	go func() {
		resp, err := http.Post(baseA+"/chat/completions", "application/json",
			strings.NewReader(`{"model":"sim-policy","messages":[{"role":"user","content":"Explain RAID 5."}]}`))
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	runID, itemID := servedItem(t, store)
	run, item := "/runs/"+runID, "/runs/"+runID+"/items/"+itemID

	// A streams the run's events; B polls.
	if _, page, _ := httpGet(t, uiA+run); !strings.Contains(page, `data-events="/ui`+run+`/events"`) {
		t.Errorf("A's run page does not follow the run's events:\n%s", liveDiv(page))
	}
	for _, p := range []string{run, item} {
		code, page, _ := httpGet(t, uiB+p)
		if code != http.StatusOK || !strings.Contains(page, `data-poll="2000"`) || strings.Contains(page, "data-events") {
			t.Errorf("B's page %s: %d, want one that polls every 2s without events:\n%s", p, code, liveDiv(page))
		}
		if code, _, _ := httpGet(t, uiB+p+"/events"); code != http.StatusNoContent {
			t.Errorf("B's events of %s: %d, want 204 (not in flight here)", p, code)
		}
	}
	if _, body, _ := httpGet(t, uiB+item+"/body"); strings.Contains(body, `id="step0"`) {
		t.Fatalf("B shows step 0 before its sample was let through:\n%s", body)
	}

	// A saves step 0, and waits at the gate again for step 1's critique:
	// B's poll of the item shows step 0's candidates.
	g.next(t)
	body := pollUntil(t, uiB+item+"/body", func(body string) bool { return strings.Contains(body, `id="step0"`) })
	if !strings.Contains(body, `class="cands"`) {
		t.Errorf("B's item body shows step 0 without its candidates:\n%s", body)
	}

	// Once A has answered, B's polls get the final state, which polls no more.
	g.open()
	if code := <-answered; code != http.StatusOK {
		t.Fatalf("the request to A: status %d", code)
	}
	pollUntil(t, uiB+run+"/progress", func(body string) bool {
		return strings.Contains(body, "data-final") && strings.Contains(body, `<span class="count-done">1</span> done`)
	})
	if _, page, _ := httpGet(t, uiB+item); strings.Contains(page, "data-poll") || !strings.Contains(page, `id="step1"`) {
		t.Errorf("B's item page of the finished item still polls, or lacks step 1:\n%s", liveDiv(page))
	}
}

// servedItem waits for tpo serve to record the run and item of a request
// in the store and returns their ids.
func servedItem(t *testing.T, store string) (runID, itemID string) {
	t.Helper()
	db, err := postgres.Open(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		runs, err := db.ListRuns(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) == 1 {
			items, _, err := db.ListItems(context.Background(), runs[0].ID, tpo.ItemFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(items) == 1 {
				return runs[0].ID, items[0].ID
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the request's run never showed in the store")
	return "", ""
}

// pollUntil gets u until its body satisfies ok, as the page's script
// would, and returns that body.
func pollUntil(t *testing.T, u string, ok func(body string) bool) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body, _ := httpGet(t, u)
		if code == http.StatusOK && ok(body) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d, never what was awaited:\n%s", u, code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// liveDiv returns the start of a page's live region, for messages.
func liveDiv(page string) string {
	i := strings.Index(page, "data-live")
	if i < 0 {
		return "(no live region)"
	}
	return page[max(0, i-40):min(len(page), i+300)]
}
