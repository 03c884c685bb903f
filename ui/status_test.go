package ui

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
)

func TestRunStatus(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		row      runRow
		want     string
		wantBody string
	}{
		{"in flight", runRow{InFlight: true}, "live", ""},
		{"in flight, finished before", runRow{InFlight: true, RunSummary: tpo.RunSummary{Run: tpo.Run{Finished: &now}}}, "live", ""},
		{"served request that failed", runRow{RunSummary: tpo.RunSummary{Run: tpo.Run{Finished: &now}, Items: 1, Failed: 1}}, "failed", ""},
		{"every item failed", runRow{RunSummary: tpo.RunSummary{Run: tpo.Run{Finished: &now}, Items: 805, Failed: 805}}, "failed", ""},
		{"some failed", runRow{RunSummary: tpo.RunSummary{Run: tpo.Run{Finished: &now}, Items: 3, Done: 2, Failed: 1}}, "finished", ""},
		{"done", runRow{RunSummary: tpo.RunSummary{Run: tpo.Run{Finished: &now}, Items: 1, Done: 1}}, "finished", ""},
		{"stopped", runRow{RunSummary: tpo.RunSummary{Items: 3, Failed: 3}}, "unfinished", ""},
		{"found interrupted", runRow{RunSummary: tpo.RunSummary{Run: tpo.Run{Interrupted: &now}, Items: 1, Failed: 1}}, "interrupted", ""},
	}
	for _, tt := range tests {
		if got := tt.row.Status(); got != tt.want {
			t.Errorf("%s: status %q, want %q", tt.name, got, tt.want)
		}
	}
	if !(runRow{RunSummary: tpo.RunSummary{Run: tpo.Run{Interrupted: &now}}}).Final() {
		t.Error("an interrupted run is not final: its pages would poll for ever")
	}
}

// TestInterruptedRunPages: a run that tpo serve found left unfinished by a
// killed process shows as interrupted, with when and by whom, and its item
// as failed with the reason; its pages do not poll.
func TestInterruptedRunPages(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	owner := &tpo.Owner{Host: "gpu-box", PID: 4242, Started: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
	if _, _, err := db.OpenRun(ctx, tpo.Run{ID: "k9", Kind: "serve", Source: "api", ItemCount: 1, Owner: owner}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartItem(ctx, "k9", 0, tpo.Item{ID: "chatcmpl-1", Messages: []tpo.Message{{Role: "user", Content: "q"}}}); err != nil {
		t.Fatal(err)
	}
	const reason = "interrupted: the process that wrote the run (pid 4242 on gpu-box) ended before it finished"
	if ok, err := db.InterruptRun(ctx, "k9", time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC), reason); err != nil || !ok {
		t.Fatal(ok, err)
	}
	h := newHandler(t, Options{Store: db})
	for _, tt := range []struct {
		page string
		want []string
	}{
		{"/ui/", []string{`<span class="badge interrupted">interrupted</span>`, `datetime="2025-03-01T10:00:00Z"`}},
		{"/ui/runs/k9", []string{`badge interrupted`, "found interrupted", "pid 4242 on gpu-box", "0</span> done, <span class=\"count-failed\">1</span> failed, 0 pending"}},
		{"/ui/runs/k9/items/chatcmpl-1", []string{"Failed", reason}},
	} {
		r := get(t, h, tt.page)
		for _, w := range tt.want {
			if !strings.Contains(r.body, w) {
				t.Errorf("%s lacks %q", tt.page, w)
			}
		}
		if strings.Contains(r.body, "data-live") {
			t.Errorf("%s polls for a run that will not change", tt.page)
		}
	}
}

func TestPlural(t *testing.T) {
	tests := []struct {
		n    int
		want string
	}{{0, "0 runs"}, {1, "1 run"}, {2, "2 runs"}, {1234, "1,234 runs"}}
	for _, tt := range tests {
		if got := plural(tt.n, "run", "runs"); got != tt.want {
			t.Errorf("plural(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// TestOneRunOneItem: the pages of a store with one run of one item say
// "1 run" and "1 item", not "1 runs" and "1 items".
func TestOneRunOneItem(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	if _, _, err := db.OpenRun(ctx, tpo.Run{ID: "r", Kind: "run", Source: "d.jsonl", ItemCount: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartItem(ctx, "r", 0, tpo.Item{ID: "i", Messages: []tpo.Message{{Role: "user", Content: "q"}}}); err != nil {
		t.Fatal(err)
	}
	res := tpo.Result{ID: "i", Response: "a", Score: 1, InitialBest: 1, ScoreCalls: 1,
		Usage: tpo.Usage{Requests: 1, PromptTokens: 1, CompletionTokens: 1},
		Steps: []tpo.Step{{Step: 0, Candidates: cands([]string{"a"}, 1), Usage: tpo.Usage{Requests: 1, CompletionTokens: 1}}}}
	if err := db.FinishItem(ctx, "r", res); err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, Options{Store: db})
	tests := []struct {
		page string
		want []string
	}{
		{"/ui/", []string{"1 run in the store."}},
		{"/ui/?q=d.jsonl", []string{"1 run in the store."}},
		{"/ui/runs/r", []string{"1 item."}},
		{"/ui/runs/r?status=done", []string{"1 item matches."}},
		{"/ui/runs/r/delete", []string{"with its 1 item and"}},
		{"/ui/runs/r/items/i", []string{"1 request · 1 prompt + 1 completion token · 1 reward call", "1 request, 1 token"}},
	}
	plural := regexp.MustCompile(`\b1 (runs|items|requests|tokens|calls)\b`)
	for _, tt := range tests {
		r := get(t, h, tt.page)
		if r.code != 200 {
			t.Fatalf("GET %s: status %d", tt.page, r.code)
		}
		for _, w := range tt.want {
			if !strings.Contains(r.body, w) {
				t.Errorf("GET %s lacks %q", tt.page, w)
			}
		}
		if m := plural.FindString(r.body); m != "" {
			t.Errorf("GET %s says %q", tt.page, m)
		}
	}
}

// TestLiveItemFails: a served request that fails in the middle of a step
// shows as failed, with its error, once it ends: on the item page (no step
// left "in progress"), the run page and the runs page.
func TestLiveItemFails(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	if _, _, err := db.OpenRun(ctx, tpo.Run{ID: "r", Kind: "serve", Source: "api", ItemCount: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartItem(ctx, "r", 0, tpo.Item{ID: "cmpl", Messages: []tpo.Message{{Role: "user", Content: "q"}}}); err != nil {
		t.Fatal(err)
	}
	live := newFakeLive()
	live.start("r")
	h := newHandler(t, Options{Store: db, Live: live, KeepAlive: time.Hour})
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/ui/runs/r/items/cmpl/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := readEvents(resp.Body)
	next(t, events)
	for live.subscribers("r") == 0 {
		time.Sleep(time.Millisecond)
	}
	// Step 0 is saved, step 1 starts, and its critique fails.
	step0 := tpo.Step{Step: 0, Candidates: cands([]string{"a", "b"}, 0.1, 0.9)}
	if err := db.SaveStep(ctx, "r", "cmpl", step0); err != nil {
		t.Fatal(err)
	}
	live.publish("r", tpo.StepFinished{EventBase: tpo.EventBase{ItemID: "cmpl", Step: 0}, Data: step0})
	next(t, events)
	live.publish("r", tpo.StepStarted{EventBase: tpo.EventBase{ItemID: "cmpl", Step: 1}, Depth: 1})
	if e := next(t, events); !strings.Contains(e.data, "in progress") {
		t.Fatalf("step 1 is not shown in progress: %.300s", e.data)
	}
	res := tpo.Result{ID: "cmpl", Response: "b", Score: 0.9, InitialBest: 0.9, Best: tpo.Ref{Step: 0, Index: 1},
		Steps: []tpo.Step{step0}, Error: "step 1: loss: policy server said no"}
	if err := db.FinishItem(ctx, "r", res); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishRun(ctx, "r", time.Now()); err != nil {
		t.Fatal(err)
	}
	live.end("r")
	e := next(t, events)
	if !strings.Contains(e.data, "Failed") || !strings.Contains(e.data, "policy server said no") || strings.Contains(e.data, "in progress") {
		t.Errorf("the last update of a failed request: %.600s", e.data)
	}
	badge := regexp.MustCompile(`<span class="badge failed">failed</span>`)
	for _, p := range []string{"/ui/", "/ui/runs/r", "/ui/runs/r/progress"} {
		if r := get(t, h, p); !badge.MatchString(r.body) {
			t.Errorf("GET %s: no failed badge", p)
		}
	}
}
