package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/guard"
	"github.com/tpoproject/tpo/sqlite"
)

var _ Store = (*sqlite.DB)(nil)

// evil is model output that would run script if it reached a page unescaped.
const evil = `<script>alert(1)</script><img src=x onerror=alert(2)>`

// evilMarkers must never appear raw in a page.
var evilMarkers = []string{"<script>alert", "<img src=x"}

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ui.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func cands(texts []string, scores ...float64) []tpo.Candidate {
	out := make([]tpo.Candidate, len(scores))
	for i, s := range scores {
		out[i] = tpo.Candidate{Text: texts[i], Score: s}
	}
	return out
}

// fixture fills db with a finished tpo run "r1" (items: a done, b failed,
// c pending, "x/y z" done) and a serve run "r2", with model text holding
// HTML and script everywhere model text goes.
func fixture(t *testing.T, db tpo.Store) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	seed := int64(7)
	cfg := tpo.Config{Mode: tpo.ModeTPO, Width: 2, Depth: 1, Seed: &seed,
		Sampling: tpo.Sampling{Temperature: 0.7, TopP: 0.95, MaxTokens: 64},
		Critique: tpo.Sampling{Temperature: 0.7, TopP: 0.99, MaxTokens: 64}}
	conf, _ := json.Marshal(map[string]any{
		"settings": map[string]any{"config": cfg, "policy_model": "pol-" + evil, "reward": "vllm", "reward_model": "rm"},
		"backends": map[string]any{"policy_urls": []string{"http://p:8000/v1"}, "reward_urls": []string{"http://r:8001"}},
	})
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	_, _, err := db.OpenRun(ctx, tpo.Run{ID: "r1", Kind: "run", Source: "/data/" + evil + ".jsonl", Config: conf, Created: t0, ItemCount: 4})
	must(err)

	s0 := tpo.Step{Step: 0, Candidates: cands([]string{"The answer is surely four.", "bad " + evil}, 1.0, -0.5),
		Calls:  []tpo.Call{{Stage: tpo.StageSample, N: 2, Messages: []tpo.Message{{Role: "user", Content: "What is 2+2? " + evil}}}},
		Millis: map[tpo.Stage]int64{tpo.StageSample: 1200, tpo.StageScore: 30},
		Usage:  tpo.Usage{Requests: 1, PromptTokens: 10, CompletionTokens: 20}}
	s1 := tpo.Step{Step: 1, Chosen: &tpo.Ref{Step: 0, Index: 0}, Rejected: &tpo.Ref{Step: 0, Index: 1},
		Loss: "critique " + evil, Gradient: "instructions " + evil,
		Candidates: cands([]string{"The answer is 4.", evil}, 2.0, 0.2),
		Unparsed:   []string{"unparsed " + evil}, Notes: []string{"note " + evil},
		Calls: []tpo.Call{{Stage: tpo.StageLoss, N: 1, Messages: []tpo.Message{
			{Role: "system", Content: "judge " + evil}, {Role: "user", Content: "compare " + evil}}}},
		Millis: map[tpo.Stage]int64{tpo.StageLoss: 500, tpo.StageGradient: 400, tpo.StageUpdate: 900},
		Usage:  tpo.Usage{Requests: 3, PromptTokens: 100, CompletionTokens: 50}}
	prompt := []tpo.Message{{Role: "system", Content: "be brief " + evil}, {Role: "user", Content: "What is 2+2? " + evil}}

	_, err = db.StartItem(ctx, "r1", 0, tpo.Item{ID: "a", Messages: prompt})
	must(err)
	must(db.FinishItem(ctx, "r1", tpo.Result{ID: "a", Prompt: "What is 2+2?", Response: s1.Candidates[0].Text, Score: 2,
		Best: tpo.Ref{Step: 1, Index: 0}, InitialBest: 1, Steps: []tpo.Step{s0, s1},
		Usage: tpo.Usage{Requests: 4, PromptTokens: 110, CompletionTokens: 70}, ScoreCalls: 2, StopReason: tpo.StopPatience}))

	_, err = db.StartItem(ctx, "r1", 1, tpo.Item{ID: "b", Messages: []tpo.Message{{Role: "user", Content: "second " + evil}}})
	must(err)
	must(db.FinishItem(ctx, "r1", tpo.Result{ID: "b", Error: "policy server said " + evil}))

	_, err = db.StartItem(ctx, "r1", 2, tpo.Item{ID: "c", Messages: []tpo.Message{{Role: "user", Content: "third"}}})
	must(err)
	must(db.SaveStep(ctx, "r1", "c", tpo.Step{Step: 0, Candidates: cands([]string{"c zero", "c one"}, 0.3, 0.6)}))

	_, err = db.StartItem(ctx, "r1", 3, tpo.Item{ID: "x/y z", Messages: []tpo.Message{{Role: "user", Content: "fourth"}}})
	must(err)
	must(db.FinishItem(ctx, "r1", tpo.Result{ID: "x/y z", Response: "d", Score: 0.5, InitialBest: 0.5,
		Steps: []tpo.Step{{Step: 0, Candidates: cands([]string{"d"}, 0.5)}}}))
	must(db.FinishRun(ctx, "r1", t0.Add(time.Minute)))

	sconf, _ := json.Marshal(map[string]any{"config": tpo.Config{Mode: tpo.ModeBoN, Width: 3}, "model": "served-model", "reward": "rm"})
	_, _, err = db.OpenRun(ctx, tpo.Run{ID: "r2", Kind: "serve", Source: "api", Config: sconf, Created: t0.Add(time.Hour), ItemCount: 1})
	must(err)
	_, err = db.StartItem(ctx, "r2", 0, tpo.Item{ID: "chatcmpl-1", Messages: []tpo.Message{{Role: "user", Content: "hi"}}})
	must(err)
	must(db.FinishItem(ctx, "r2", tpo.Result{ID: "chatcmpl-1", Response: "hello", Score: 3, InitialBest: 3,
		Steps: []tpo.Step{{Step: 0, Candidates: cands([]string{"hello", "hey", "yo"}, 3, 2, 1)}}}))
	must(db.FinishRun(ctx, "r2", t0.Add(time.Hour+time.Second)))
}

func newHandler(t *testing.T, opts Options) *Handler {
	t.Helper()
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type response struct {
	code int
	body string
	hdr  http.Header
}

func do(t *testing.T, h http.Handler, method, target string, body io.Reader, hdr map[string]string) response {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return response{rec.Code, rec.Body.String(), rec.Header()}
}

func get(t *testing.T, h http.Handler, target string) response {
	t.Helper()
	return do(t, h, http.MethodGet, target, nil, nil)
}

// pages are every HTML page and fragment of the fixture.
var pages = []string{
	"/ui/",
	"/ui/?q=run&sort=-score",
	"/ui/runs/r1",
	"/ui/runs/r1?status=failed",
	"/ui/runs/r1/progress",
	"/ui/runs/r1/delete",
	"/ui/runs/r1/items/a",
	"/ui/runs/r1/items/a/body",
	"/ui/runs/r1/items/b",
	"/ui/runs/r1/items/c",
	"/ui/runs/r1/items/x%2Fy%20z",
	"/ui/runs/r2",
	"/ui/runs/r2/items/chatcmpl-1",
	"/ui/runs/nope",
}

func TestModelTextIsEscapedEverywhere(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	h := newHandler(t, Options{Store: db})
	escaped := "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
	for _, p := range pages {
		r := get(t, h, p)
		for _, m := range evilMarkers {
			if strings.Contains(r.body, m) {
				t.Errorf("GET %s: page holds %q unescaped", p, m)
			}
		}
		if strings.Contains(r.body, "alert(1)") && !strings.Contains(r.body, escaped) {
			t.Errorf("GET %s: model text shown, but not in its escaped form", p)
		}
	}
	// Where the text is shown, it is there escaped.
	for _, tt := range []struct {
		path  string
		count int // at least this many escaped copies
	}{
		{"/ui/runs/r1/items/a", 10}, // prompt x2, samples, critique, instructions, candidates, unparsed, notes, calls, diff
		{"/ui/runs/r1/items/b", 2},  // prompt, error
		{"/ui/runs/r1", 2},          // source, policy model, failed item error, prompts
		{"/ui/", 1},                 // source
	} {
		r := get(t, h, tt.path)
		if got := strings.Count(r.body, escaped); got < tt.count {
			t.Errorf("GET %s: %d escaped copies of the model text, want at least %d", tt.path, got, tt.count)
		}
	}
}

var (
	inlineScriptRE = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>`)
	handlerAttrRE  = regexp.MustCompile(`(?i)<[a-z][^>]*\son[a-z]+\s*=`)
	styleAttrRE    = regexp.MustCompile(`(?i)<[a-z][^>]*\sstyle\s*=`)
	styleTagRE     = regexp.MustCompile(`(?i)<style[\s>]`)
)

// TestPagesObeyTheirPolicy checks that no page needs what its
// Content-Security-Policy forbids: inline scripts, event handler
// attributes, inline styles.
func TestPagesObeyTheirPolicy(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	h := newHandler(t, Options{Store: db})
	for _, p := range pages {
		r := get(t, h, p)
		csp := r.hdr.Get("Content-Security-Policy")
		for _, want := range []string{"script-src 'self'", "default-src 'none'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %q", p, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: CSP %q allows unsafe sources", p, csp)
		}
		if r.hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", p)
		}
		for _, tag := range inlineScriptRE.FindAllString(r.body, -1) {
			if !strings.Contains(tag, " src=") {
				t.Errorf("GET %s: inline script %s", p, tag)
			}
		}
		for _, re := range []*regexp.Regexp{handlerAttrRE, styleAttrRE, styleTagRE} {
			if m := re.FindString(r.body); m != "" {
				t.Errorf("GET %s: %q is forbidden by the policy", p, m)
			}
		}
		if ct := r.hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET %s: content type %q", p, ct)
		}
		if p != "/ui/runs/r1/progress" && p != "/ui/runs/r1/items/a/body" && !strings.Contains(r.body, `name="viewport"`) {
			t.Errorf("GET %s: no viewport meta", p)
		}
	}
}

func TestRunsPage(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	h := newHandler(t, Options{Store: db})
	runLinks := regexp.MustCompile(`href="/ui/runs/(r\d)"`)
	ids := func(body string) []string {
		var out []string
		for _, m := range runLinks.FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"r2", "r1"}},
		{"?sort=created", []string{"r1", "r2"}},
		{"?sort=-score", []string{"r2", "r1"}},
		{"?sort=score", []string{"r1", "r2"}},
		{"?kind=run", []string{"r1"}},
		{"?kind=serve", []string{"r2"}},
		{"?q=served-MODEL", []string{"r2"}},
		{"?q=jsonl", []string{"r1"}},
		{"?q=nothing-like-this", nil},
		{"?sort=bogus&kind=bogus", []string{"r2", "r1"}},
		{"?sort=oldest+first", []string{"r2", "r1"}}, // a label is not a key
	}
	for _, tt := range tests {
		r := get(t, h, "/ui/"+tt.query)
		if r.code != 200 {
			t.Fatalf("GET /ui/%s: status %d", tt.query, r.code)
		}
		if got := ids(r.body); strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("GET /ui/%s: runs %v, want %v", tt.query, got, tt.want)
		}
	}
	r := get(t, h, "/ui/")
	for _, want := range []string{"tpo", "2×", "bon", "served-model", "rm", "finished"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("runs page lacks %q", want)
		}
	}
	// r1: 2 done and 1 failed of 4; mean score of the done items (2, 0.5).
	if !regexp.MustCompile(`>2</span> <span class="bad" title="failed">\+1✗</span> / 4`).MatchString(r.body) {
		t.Errorf("runs page lacks r1's item counts")
	}
	if !strings.Contains(r.body, ">1.25<") || !strings.Contains(r.body, ">&#43;0.5<") {
		t.Errorf("runs page lacks r1's mean score 1.25 and gain +0.5")
	}
	if r := get(t, h, "/ui"); r.code != http.StatusFound || r.hdr.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want a redirect to /ui/", r.code, r.hdr.Get("Location"))
	}
}

func TestRunPage(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	h := newHandler(t, Options{Store: db})
	r := get(t, h, "/ui/runs/r1")
	if r.code != 200 {
		t.Fatalf("status %d", r.code)
	}
	for _, want := range []string{
		"<dd>tpo</dd>", "<dd>2</dd>", "<dd>1</dd>", "temperature 0.7", "seed", "http://p:8000/v1", "http://r:8001",
		"Failed items", "policy server said", "Slowest items", "curves.svg?v=", "gains.svg?v=",
		`href="/ui/runs/r1/items/x%2Fy%20z"`, `href="/ui/runs/r1/delete"`, "data-final",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("run page lacks %q", want)
		}
	}
	if strings.Contains(r.body, "data-live") {
		t.Error("a finished run's page has a live region")
	}
	// Search, status filter and order select items.
	itemLinks := regexp.MustCompile(`<td><a class="mono" href="/ui/runs/r1/items/([^"]+)">`)
	items := func(q string) string {
		r := get(t, h, "/ui/runs/r1"+q)
		body := r.body[strings.Index(r.body, `id="items-h"`):]
		var out []string
		for _, m := range itemLinks.FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return strings.Join(out, ",")
	}
	if r := get(t, h, "/ui/runs/r1?order=input+order"); r.code != 200 {
		t.Errorf("an order label as the order: status %d", r.code)
	}
	for q, want := range map[string]string{
		"":                          "a,b,c,x%2Fy%20z",
		"?status=failed":            "b",
		"?status=pending":           "c",
		"?status=done&order=-score": "a,x%2Fy%20z",
		"?q=third":                  "c",
		"?q=x/y":                    "x%2Fy%20z",
		"?order=-gain":              "a,c,x%2Fy%20z,b",
	} {
		if got := items(q); got != want {
			t.Errorf("items of %q: %s, want %s", q, got, want)
		}
	}
}

func TestItemPage(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	h := newHandler(t, Options{Store: db})
	r := get(t, h, "/ui/runs/r1/items/a")
	if r.code != 200 {
		t.Fatalf("status %d", r.code)
	}
	b := r.body
	for _, want := range []string{
		"Final answer", "The answer is 4.", "gain <strong class=\"good\">&#43;1</strong>",
		"Step 0: initial samples", "Step 1", "Critique (textual loss)", "Instructions (textual gradient)",
		`class="tag chosen" href="#s0c0"`, `class="tag rejected" href="#s0c1"`,
		"chosen in step 1", "rejected in step 1", "final answer", "best of step",
		"update sample without an &lt;improved_response&gt; block", "note &lt;script&gt;",
		"Messages sent to the model (1 call)", "judge &lt;script&gt;", "loss · n=1",
		"<ins>", "<del>", `width="100.0"`, `width="4.0"`, "sample 1.2s",
		"stopped early: the best score stopped improving",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("item page lacks %q", want)
		}
	}
	// The final answer comes before the trajectory, the prompt between.
	ia, ip, it := strings.Index(b, "Final answer"), strings.Index(b, `id="prompt-h"`), strings.Index(b, `id="timeline-h"`)
	if !(ia < ip && ip < it) {
		t.Errorf("order of answer, prompt, trajectory: %d, %d, %d", ia, ip, it)
	}
	// The diff compares the chosen response with the best new one.
	diff := b[strings.Index(b, `class="text diff-text"`):]
	diff = diff[:strings.Index(diff, "</pre>")]
	for _, want := range []string{">The answer is <del>surely four.</del><ins>4.</ins>"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff %q lacks %q", diff, want)
		}
	}

	r = get(t, h, "/ui/runs/r1/items/b")
	if !strings.Contains(r.body, "Failed") || !strings.Contains(r.body, "policy server said") {
		t.Errorf("failed item page lacks its error")
	}
	r = get(t, h, "/ui/runs/r1/items/c")
	for _, want := range []string{"Best so far", "c one", "data-live", `data-fragment="/ui/runs/r1/items/c/body"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("pending item page lacks %q", want)
		}
	}
	if strings.Contains(r.body, "data-events") {
		t.Error("without live events a page has an event stream")
	}
	if r := get(t, h, "/ui/runs/r1/items/c/body"); strings.Contains(r.body, "data-final") || !strings.Contains(r.body, "c one") {
		t.Errorf("the body of a pending item is final or lacks its candidates")
	}
	if r := get(t, h, "/ui/runs/r1/items/a/body"); !strings.Contains(r.body, "data-final") || strings.Contains(r.body, "<html") {
		t.Errorf("the body of a done item is not final, or is a whole page")
	}
	if r := get(t, h, "/ui/runs/r1/items/x%2Fy%20z"); r.code != 200 || !strings.Contains(r.body, "x/y z") {
		t.Errorf("item with a slash: status %d", r.code)
	}
}

func TestNotFound(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	h := newHandler(t, Options{Store: db})
	for _, p := range []string{"/ui/runs/nope", "/ui/runs/r1/items/nope", "/ui/runs/nope/items/a", "/ui/runs/nope/progress",
		"/ui/elsewhere", "/ui/static/nope.js", "/ui/runs/nope/curves.svg", "/ui/live/nope"} {
		r := get(t, h, p)
		if r.code != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, r.code)
		}
	}
}

// failingStore fails every read.
type failingStore struct{ Store }

var errDisk = errors.New("disk on fire")

func (failingStore) ListRuns(context.Context) ([]tpo.RunSummary, error) { return nil, errDisk }
func (failingStore) GetRun(context.Context, string) (tpo.RunSummary, error) {
	return tpo.RunSummary{}, errDisk
}

func TestStoreErrors(t *testing.T) {
	h := newHandler(t, Options{Store: failingStore{}})
	for _, p := range []string{"/ui/", "/ui/runs/r1", "/ui/runs/r1/items/a"} {
		r := get(t, h, p)
		if r.code != http.StatusInternalServerError || strings.Contains(r.body, "disk on fire") {
			t.Errorf("GET %s: status %d, body shows the error: %v", p, r.code, strings.Contains(r.body, "disk on fire"))
		}
	}
}

func TestCharts(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	h := newHandler(t, Options{Store: db})
	for _, p := range []string{"/ui/runs/r1/curves.svg", "/ui/runs/r1/gains.svg", "/ui/runs/r1/items/a/curves.svg", "/ui/runs/r1/items/b/curves.svg"} {
		r := get(t, h, p)
		if r.code != 200 || r.hdr.Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(r.body, "<svg") {
			t.Errorf("GET %s: status %d, type %q, body %.40q", p, r.code, r.hdr.Get("Content-Type"), r.body)
		}
		if csp := r.hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script") {
			t.Errorf("GET %s: CSP %q", p, csp)
		}
	}
	if r := get(t, h, "/ui/runs/r1/curves.svg"); !strings.Contains(r.body, "Reward by step") {
		t.Error("the run's curve chart lacks its title")
	}
	if r := get(t, h, "/ui/runs/r1/items/b/curves.svg"); !strings.Contains(r.body, "no scores yet") {
		t.Error("a failed item's chart is not the empty chart")
	}
}

func TestStatic(t *testing.T) {
	h := newHandler(t, Options{Store: failingStore{}})
	for name, ct := range map[string]string{"app.js": "text/javascript", "style.css": "text/css", "icon.svg": "image/svg+xml"} {
		r := get(t, h, h.static[name])
		if r.code != 200 || !strings.HasPrefix(r.hdr.Get("Content-Type"), ct) || !strings.Contains(r.hdr.Get("Cache-Control"), "immutable") {
			t.Errorf("GET %s: status %d, type %q, cache %q", h.static[name], r.code, r.hdr.Get("Content-Type"), r.hdr.Get("Cache-Control"))
		}
	}
}

var tokenRE = regexp.MustCompile(`name="token" value="([^"]+)"`)

func TestDeleteRun(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	h := newHandler(t, Options{Store: db})
	ctx := context.Background()

	r := get(t, h, "/ui/runs/r1/delete")
	m := tokenRE.FindStringSubmatch(r.body)
	if r.code != 200 || m == nil || !strings.Contains(r.body, `method="post"`) {
		t.Fatalf("confirmation page: status %d, token %v", r.code, m)
	}
	token := m[1]
	if _, err := db.GetRun(ctx, "r1"); err != nil {
		t.Fatalf("showing the confirmation deleted the run: %v", err)
	}
	form := func(tok string) io.Reader { return strings.NewReader(url.Values{"token": {tok}}.Encode()) }
	ctype := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	refused := []struct {
		name string
		path string
		body io.Reader
		hdr  map[string]string
	}{
		{"no token", "/ui/runs/r1/delete", strings.NewReader(""), ctype},
		{"wrong token", "/ui/runs/r1/delete", form("AAAA"), ctype},
		{"token of another run", "/ui/runs/r1/delete", form(h.deleteToken("r2")), ctype},
		{"cross-site", "/ui/runs/r1/delete", form(token), map[string]string{"Content-Type": ctype["Content-Type"], "Sec-Fetch-Site": "cross-site"}},
		{"other origin", "/ui/runs/r1/delete", form(token), map[string]string{"Content-Type": ctype["Content-Type"], "Origin": "http://evil.example"}},
	}
	for _, tt := range refused {
		r := do(t, h, http.MethodPost, tt.path, tt.body, tt.hdr)
		if r.code != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", tt.name, r.code)
		}
		if _, err := db.GetRun(ctx, "r1"); err != nil {
			t.Fatalf("%s: the run was deleted", tt.name)
		}
	}
	// A token from another handler (another process) does not work either.
	other := newHandler(t, Options{Store: db})
	if r := do(t, other, http.MethodPost, "/ui/runs/r1/delete", form(token), ctype); r.code != http.StatusForbidden {
		t.Errorf("token of another handler: status %d", r.code)
	}

	r = do(t, h, http.MethodPost, "/ui/runs/r1/delete", form(token),
		map[string]string{"Content-Type": ctype["Content-Type"], "Sec-Fetch-Site": "same-origin"})
	if r.code != http.StatusSeeOther || !strings.HasPrefix(r.hdr.Get("Location"), "/ui/?deleted=r1") {
		t.Fatalf("delete: status %d, location %q", r.code, r.hdr.Get("Location"))
	}
	if _, err := db.GetRun(ctx, "r1"); !errors.Is(err, tpo.ErrNotFound) {
		t.Errorf("after delete, GetRun: %v", err)
	}
	if r := get(t, h, "/ui/?deleted=r1"); !strings.Contains(r.body, "was deleted") {
		t.Error("the runs page does not say the run was deleted")
	}
	if r := do(t, h, http.MethodPost, "/ui/runs/r1/delete", form(token), ctype); r.code != http.StatusNotFound {
		t.Errorf("deleting again: status %d, want 404", r.code)
	}
	// GET never deletes.
	if r := do(t, h, http.MethodGet, "/ui/runs/r2/delete?token="+url.QueryEscape(h.deleteToken("r2")), nil, nil); r.code != 200 {
		t.Errorf("GET delete page of r2: %d", r.code)
	}
	if _, err := db.GetRun(ctx, "r2"); err != nil {
		t.Errorf("a GET deleted r2: %v", err)
	}
}

func TestAuth(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	h := newHandler(t, Options{Store: db, APIKeys: []string{"k1", "k2"}})
	tests := []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"none", nil, http.StatusUnauthorized},
		{"wrong basic", map[string]string{"Authorization": "Basic " + basic("u", "nope")}, http.StatusUnauthorized},
		{"basic", map[string]string{"Authorization": "Basic " + basic("anyone", "k2")}, http.StatusOK},
		{"bearer", map[string]string{"Authorization": "Bearer k1"}, http.StatusOK},
		{"wrong bearer", map[string]string{"Authorization": "Bearer k3"}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		for _, p := range []string{"/ui/", "/ui/runs/r1", h.static["app.js"]} {
			r := do(t, h, http.MethodGet, p, nil, tt.hdr)
			if r.code != tt.want {
				t.Errorf("%s: GET %s: status %d, want %d", tt.name, p, r.code, tt.want)
			}
			if r.code == http.StatusUnauthorized && !strings.HasPrefix(r.hdr.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("%s: 401 without a Basic challenge", tt.name)
			}
		}
	}
}

// TestAPIKeysTrimmed: keys are trimmed, as the password or token a
// browser sends is, and a key blank after trimming is refused.
func TestAPIKeysTrimmed(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	h := newHandler(t, Options{Store: db, APIKeys: []string{" k1 ", "\tk2"}})
	for _, hdr := range []string{"Basic " + basic("u", "k1"), "Basic " + basic("u", " k2 "), "Bearer k2"} {
		if r := do(t, h, http.MethodGet, "/ui/", nil, map[string]string{"Authorization": hdr}); r.code != http.StatusOK {
			t.Errorf("Authorization %q: status %d, want 200", hdr, r.code)
		}
	}
	for _, keys := range [][]string{{""}, {" "}, {"k", "\t\n"}} {
		_, err := New(Options{Store: db, APIKeys: keys})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("API key %d of %d is blank", len(keys), len(keys))) {
			t.Errorf("New with keys %q: %v, want an error naming the blank key", keys, err)
		}
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func TestNewOptions(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	if _, err := New(Options{}); err == nil {
		t.Error("New without a store succeeded")
	}
	for _, p := range []string{"ui", "/a b", "/x{y}"} {
		if _, err := New(Options{Store: db, Prefix: p}); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	h := newHandler(t, Options{Store: db, Prefix: "/tpo/web/"})
	r := get(t, h, "/tpo/web/runs/r1")
	if r.code != 200 || !strings.Contains(r.body, `href="/tpo/web/runs/r1/items/a"`) || !strings.Contains(r.body, `src="/tpo/web/static/app.js?v=`) {
		t.Errorf("prefix /tpo/web: status %d; links do not carry the prefix", r.code)
	}
}

// fakeLive is a Live source driven by the test.
type fakeLive struct {
	mu     sync.Mutex
	flying map[string]tpo.LiveRun
	subs   map[string][]chan tpo.Event
}

func newFakeLive() *fakeLive {
	return &fakeLive{flying: map[string]tpo.LiveRun{}, subs: map[string][]chan tpo.Event{}}
}

func (f *fakeLive) start(runID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flying[runID] = tpo.LiveRun{RunID: runID, Model: "m", Mode: tpo.ModeTPO, Width: 2, Depth: 1, Prompt: "live " + evil}
}

func (f *fakeLive) Subscribe(runID string) (<-chan tpo.Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan tpo.Event, 16)
	if _, ok := f.flying[runID]; !ok {
		close(ch)
		return ch, func() {}
	}
	f.subs[runID] = append(f.subs[runID], ch)
	return ch, func() {}
}

func (f *fakeLive) InFlight() []tpo.LiveRun {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []tpo.LiveRun
	for _, i := range f.flying {
		out = append(out, i)
	}
	return out
}

func (f *fakeLive) publish(runID string, e tpo.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.subs[runID] {
		ch <- e
	}
}

func (f *fakeLive) subscribers(runID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs[runID])
}

func (f *fakeLive) end(runID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.flying, runID)
	for _, ch := range f.subs[runID] {
		close(ch)
	}
	delete(f.subs, runID)
}

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// readEvents parses a stream of server-sent events onto a channel.
func readEvents(r io.Reader) <-chan sseEvent {
	out := make(chan sseEvent, 64)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		var ev sseEvent
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || data != nil {
					ev.data = strings.Join(data, "\n")
					out <- ev
				}
				ev, data = sseEvent{}, nil
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				data = append(data, line[len("data: "):])
			}
		}
	}()
	return out
}

func next(t *testing.T, events <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case e, ok := <-events:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return sseEvent{}
}

func TestLiveItem(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	ctx := context.Background()
	// A served request in flight: run r3 with one item and no step yet.
	if _, _, err := db.OpenRun(ctx, tpo.Run{ID: "r3", Kind: "serve", Source: "api", ItemCount: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartItem(ctx, "r3", 0, tpo.Item{ID: "cmpl", Messages: []tpo.Message{{Role: "user", Content: "q " + evil}}}); err != nil {
		t.Fatal(err)
	}
	live := newFakeLive()
	live.start("r3")
	h := newHandler(t, Options{Store: db, Live: live, KeepAlive: time.Hour})
	srv := httptest.NewServer(h)
	defer srv.Close()

	// The pages know the run is live.
	if r := get(t, h, "/ui/"); !strings.Contains(r.body, "Optimizing now") || !strings.Contains(r.body, `href="/ui/live/r3"`) {
		t.Error("the runs page does not list the run in flight")
	}
	if r := get(t, h, "/ui/live/r3"); r.code != http.StatusSeeOther || r.hdr.Get("Location") != "/ui/runs/r3/items/cmpl" {
		t.Errorf("live link: %d to %q", r.code, r.hdr.Get("Location"))
	}
	page := get(t, h, "/ui/runs/r3/items/cmpl")
	if !strings.Contains(page.body, `data-events="/ui/runs/r3/items/cmpl/events"`) {
		t.Fatal("the item page of a run in flight has no event stream")
	}
	if r := get(t, h, "/ui/runs/r3"); !strings.Contains(r.body, `data-events="/ui/runs/r3/events"`) {
		t.Error("the run page of a run in flight has no event stream")
	}

	resp, err := http.Get(srv.URL + "/ui/runs/r3/items/cmpl/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := readEvents(resp.Body)
	e := next(t, events)
	if e.name != "update" || !strings.Contains(e.data, "No step has finished yet") {
		t.Fatalf("first event %q: %.200s", e.name, e.data)
	}
	for live.subscribers("r3") == 0 {
		time.Sleep(time.Millisecond)
	}
	base := tpo.EventBase{ItemID: "cmpl", Step: 0}
	live.publish("r3", tpo.StepStarted{EventBase: base, Depth: 1})
	live.publish("r3", tpo.CandidatesScored{EventBase: base, Candidates: cands([]string{"first " + evil, "second\r\nline"}, 0.1, 0.9), Best: 0.9})
	next(t, events) // step started
	e = next(t, events)
	for _, want := range []string{"in progress", "first &lt;script&gt;", "Step 0: initial samples", "second"} {
		if !strings.Contains(e.data, want) {
			t.Errorf("update after scoring lacks %q", want)
		}
	}
	for _, m := range evilMarkers {
		if strings.Contains(e.data, m) {
			t.Errorf("live update holds %q unescaped", m)
		}
	}
	// An event of another item changes nothing.
	live.publish("r3", tpo.CandidatesScored{EventBase: tpo.EventBase{ItemID: "other"}})

	// Step 0 is saved; step 1 starts.
	step0 := tpo.Step{Step: 0, Candidates: cands([]string{"first " + evil, "second\r\nline"}, 0.1, 0.9)}
	if err := db.SaveStep(ctx, "r3", "cmpl", step0); err != nil {
		t.Fatal(err)
	}
	live.publish("r3", tpo.StepFinished{EventBase: base, Data: step0})
	e = next(t, events)
	if strings.Contains(e.data, "in progress") || !strings.Contains(e.data, "second") {
		t.Errorf("after the step was saved, the update still shows it in progress")
	}
	b1 := tpo.EventBase{ItemID: "cmpl", Step: 1}
	live.publish("r3", tpo.Critique{EventBase: b1, Chosen: tpo.Ref{Step: 0, Index: 1}, Rejected: &tpo.Ref{Step: 0, Index: 0}, Text: "live critique " + evil})
	e = next(t, events)
	for _, want := range []string{"Step 1", "in progress", "live critique &lt;script&gt;", "chosen in step 1", "rejected in step 1"} {
		if !strings.Contains(e.data, want) {
			t.Errorf("update after the critique lacks %q", want)
		}
	}
	live.publish("r3", tpo.Instructions{EventBase: b1, Text: "live instructions"})
	if e = next(t, events); !strings.Contains(e.data, "live instructions") || !strings.Contains(e.data, "live critique") {
		t.Errorf("update after the instructions lacks them or the critique")
	}
	live.publish("r3", tpo.UpdateParsed{EventBase: b1, Parsed: 1, Unparsed: 1})
	if e = next(t, events); !strings.Contains(e.data, "1 update sample parsed, 1 without") {
		t.Errorf("update after parsing lacks the counts")
	}

	// The optimization ends: the result is saved, the stream ends.
	res := tpo.Result{ID: "cmpl", Response: "second\r\nline", Score: 0.9, InitialBest: 0.9, Best: tpo.Ref{Step: 0, Index: 1}, Steps: []tpo.Step{step0}}
	if err := db.FinishItem(ctx, "r3", res); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishRun(ctx, "r3", time.Now()); err != nil {
		t.Fatal(err)
	}
	live.end("r3")
	e = next(t, events)
	if e.name != "update" || !strings.Contains(e.data, "Final answer") || !strings.Contains(e.data, "data-final") {
		t.Errorf("last update %q lacks the final answer: %.300s", e.name, e.data)
	}
	if !strings.Contains(e.data, "second&#13;\nline") && !strings.Contains(e.data, "second\nline") {
		t.Errorf("a carriage return broke the event: %q", e.data)
	}
	if e = next(t, events); e.name != "end" {
		t.Errorf("event %q, want end", e.name)
	}

	// A run not in flight has no stream: 204 tells the browser to stop.
	for _, p := range []string{"/ui/runs/r3/items/cmpl/events", "/ui/runs/r3/events", "/ui/runs/r1/events"} {
		if r := get(t, h, p); r.code != http.StatusNoContent {
			t.Errorf("GET %s: status %d, want 204", p, r.code)
		}
	}
	// Without a live source neither.
	if r := get(t, newHandler(t, Options{Store: db}), "/ui/runs/r3/events"); r.code != http.StatusNoContent {
		t.Errorf("no live source: status %d, want 204", r.code)
	}
}

func TestLiveRunProgress(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	if _, _, err := db.OpenRun(ctx, tpo.Run{ID: "r", Kind: "serve", Source: "api", ItemCount: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartItem(ctx, "r", 0, tpo.Item{ID: "i", Messages: []tpo.Message{{Role: "user", Content: "q"}}}); err != nil {
		t.Fatal(err)
	}
	live := newFakeLive()
	live.start("r")
	h := newHandler(t, Options{Store: db, Live: live, KeepAlive: time.Hour})
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/ui/runs/r/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := readEvents(resp.Body)
	if e := next(t, events); !strings.Contains(e.data, "0</span> done") || !strings.Contains(e.data, "live") {
		t.Errorf("first progress: %.300s", e.data)
	}
	for live.subscribers("r") == 0 {
		time.Sleep(time.Millisecond)
	}
	// Events other than saved steps do not redraw the progress.
	live.publish("r", tpo.CandidatesScored{EventBase: tpo.EventBase{ItemID: "i"}})
	res := tpo.Result{ID: "i", Response: "a", Score: 1, InitialBest: 1, Steps: []tpo.Step{{Step: 0, Candidates: cands([]string{"a"}, 1)}}}
	if err := db.FinishItem(ctx, "r", res); err != nil {
		t.Fatal(err)
	}
	live.publish("r", tpo.Done{EventBase: tpo.EventBase{ItemID: "i"}, Result: res})
	if e := next(t, events); !strings.Contains(e.data, "1</span> done") {
		t.Errorf("progress after Done: %.300s", e.data)
	}
	live.end("r")
	if e := next(t, events); e.name != "update" {
		t.Errorf("event %q after the end, want a last update", e.name)
	}
	if e := next(t, events); e.name != "end" {
		t.Errorf("event %q, want end", e.name)
	}
}

func TestDeleteLiveRunRefused(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	live := newFakeLive()
	live.start("r2")
	h := newHandler(t, Options{Store: db, Live: live})
	form := strings.NewReader(url.Values{"token": {h.deleteToken("r2")}}.Encode())
	r := do(t, h, http.MethodPost, "/ui/runs/r2/delete", form, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if r.code != http.StatusConflict {
		t.Errorf("deleting a run in flight: status %d, want 409", r.code)
	}
	if _, err := db.GetRun(context.Background(), "r2"); err != nil {
		t.Errorf("the run in flight was deleted: %v", err)
	}
}

// TestDNSRebinding: a page of another site whose name was made to resolve
// to the UI's address sends its own host name, and its requests look
// same-origin. With the UI's hosts set, it can neither read a page nor
// delete a run.
func TestDNSRebinding(t *testing.T) {
	db := openStore(t)
	fixture(t, db)
	hosts, err := guard.ParseHosts(guard.LoopbackHosts)
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, Options{Store: db, AllowedHosts: hosts})
	token := h.deleteToken("r1")
	as := func(method, host, target string, body io.Reader) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, body)
		req.Host = host
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", "http://"+host)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, p := range []string{"/ui/", "/ui/runs/r1", "/ui/runs/r1/delete", "/ui/runs/r1/items/a"} {
		rec := as(http.MethodGet, "rebound.example:8081", p, nil)
		if rec.Code != http.StatusMisdirectedRequest || strings.Contains(rec.Body.String(), token) || strings.Contains(rec.Body.String(), "What is 2+2") {
			t.Errorf("GET %s as rebound.example: status %d, body %q", p, rec.Code, rec.Body.String())
		}
	}
	form := url.Values{"token": {token}}.Encode()
	if rec := as(http.MethodPost, "rebound.example:8081", "/ui/runs/r1/delete", strings.NewReader(form)); rec.Code != http.StatusMisdirectedRequest {
		t.Errorf("POST delete as rebound.example: status %d", rec.Code)
	}
	if _, err := db.GetRun(context.Background(), "r1"); err != nil {
		t.Fatalf("the run was deleted by a rebound page: %v", err)
	}
	// Under its own name the UI works.
	if rec := as(http.MethodGet, "localhost:8081", "/ui/runs/r1", nil); rec.Code != 200 {
		t.Errorf("GET as localhost: %d", rec.Code)
	}
	if rec := as(http.MethodPost, "127.0.0.1:8081", "/ui/runs/r1/delete", strings.NewReader(form)); rec.Code != http.StatusSeeOther {
		t.Errorf("POST delete as 127.0.0.1: %d", rec.Code)
	}
}
