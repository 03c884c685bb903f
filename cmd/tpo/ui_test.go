package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/sim"
	"github.com/tpoproject/tpo/sqlite"
)

var uiListenRE = regexp.MustCompile(`at (http://\S+)/ui/`)

// startUI runs cmdUI in process and returns its base URL (without /ui).
func startUI(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	stderr := &syncBuffer{}
	env := newEnviron(strings.NewReader(""), io.Discard, stderr)
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	go func() { errc <- cmdUI(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), env) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("tpo ui: %v", err)
		}
	})
	deadline := time.After(10 * time.Second)
	for {
		if m := uiListenRE.FindStringSubmatch(stderr.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-errc:
			errc <- err
			t.Fatalf("tpo ui ended before listening: %v\nstderr:\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("tpo ui did not start listening\nstderr:\n%s", stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// serveBackendArgs are the backend flags of tpo serve for a sim server.
func serveBackendArgs(url string) []string {
	var out []string
	args := backendArgs(url)
	for i := 0; i < len(args); i++ {
		if args[i] == "--progress" {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func httpGet(t *testing.T, u string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

func TestUIUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no store", []string{"ui", "--store", filepath.Join(dir, "missing.db")}, 1, "missing.db"},
		{"argument", []string{"ui", "extra"}, 2, "no arguments"},
		{"public without keys", []string{"ui", "--addr", "0.0.0.0:0"}, 2, "API keys"},
		{"bad poll", []string{"ui", "--poll", "0s"}, 2, "--poll"},
	}
	for _, tt := range tests {
		code, _, stderr := cli(t, "", tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tt.name, code, stderr, tt.code, tt.want)
		}
	}
	if code, stdout, _ := cli(t, "", "help"); code != 0 || !strings.Contains(stdout, "ui ") {
		t.Errorf("usage does not list ui: %q", stdout)
	}
}

// fillStore runs tpo run over a small dataset, one of whose prompts holds
// HTML and script, and returns the store and its runs, newest first.
func fillStore(t *testing.T, url string, extra ...[]string) (string, []tpo.RunSummary) {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	os.WriteFile(data, []byte(`{"id": "monad", "prompt": "What is a monad?"}
{"id": "xss", "prompt": "Explain <script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\"> to me"}
{"id": "second", "prompt": "Name a second thing."}
`), 0o644)
	store := filepath.Join(dir, "tpo.db")
	runs := append([][]string{{"--width", "3", "--depth", "2"}}, extra...)
	for _, r := range runs {
		args := append(append([]string{"run", "--data", data, "--store", store}, r...), backendArgs(url)...)
		if code, _, stderr := cli(t, "", args...); code != 0 {
			t.Fatalf("tpo run %v: exit %d\n%s", r, code, stderr)
		}
	}
	db, err := sqlite.Open(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	list, err := db.ListRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return store, list
}

func TestUIServesStore(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 11})
	store, runs := fillStore(t, url)
	base := startUI(t, context.Background(), "--store", store)
	if code, _, hdr := httpGet(t, base+"/"); code != http.StatusFound || hdr.Get("Location") != "/ui/" {
		t.Errorf("GET /: %d to %q", code, hdr.Get("Location"))
	}
	code, body, _ := httpGet(t, base+"/ui/")
	if code != 200 || !strings.Contains(body, runs[0].ID) {
		t.Fatalf("GET /ui/: %d, run %s missing", code, runs[0].ID)
	}
	code, body, _ = httpGet(t, base+"/ui/runs/"+runs[0].ID+"/items/xss")
	if code != 200 || strings.Contains(body, "<script>window") || !strings.Contains(body, "&lt;script&gt;window.__pwned=1&lt;/script&gt;") {
		t.Errorf("item page: status %d; the prompt is not escaped", code)
	}
	if !strings.Contains(body, "Critique (textual loss)") || !strings.Contains(body, "[q=") {
		t.Errorf("item page lacks the trajectory")
	}
}

func TestServeMountsUI(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 12})
	store := filepath.Join(t.TempDir(), "serve.db")
	ctx, cancel := context.WithCancel(context.Background())
	base, errc, _ := startServe(t, ctx, append([]string{"--addr", "127.0.0.1:0", "--api-key", "sekret", "--store", store,
		"--width", "2", "--depth", "1"}, serveBackendArgs(url)...))
	defer func() {
		cancel()
		<-errc
	}()
	root := strings.TrimSuffix(base, "/v1")
	if code, _, hdr := httpGet(t, root+"/ui/"); code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("GET /ui/ without the key: %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, root+"/ui/", nil)
	req.SetBasicAuth("me", "sekret")
	code, body, _ := httpGet(t, root+"/ui/", "Authorization", req.Header.Get("Authorization"))
	if code != 200 || !strings.Contains(body, "Runs") {
		t.Errorf("GET /ui/ with the key: %d", code)
	}
	if code, _, _ := httpGet(t, root+"/ui/", "Authorization", "Bearer sekret"); code != 200 {
		t.Errorf("GET /ui/ with a bearer key: %d", code)
	}
	// The API is still there.
	if code, _, _ := httpGet(t, root+"/healthz"); code != 200 {
		t.Errorf("GET /healthz: %d", code)
	}
	if code, _, _ := httpGet(t, root+"/v1/models", "Authorization", "Bearer sekret"); code != 200 {
		t.Errorf("GET /v1/models: %d", code)
	}
}

// ---- browser tests ----

// chromiumPath finds Chromium, or skips the test; under CI a missing
// browser fails it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("TPO_CHROMIUM"), "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found: the browser tests need it under CI (set TPO_CHROMIUM)")
	}
	t.Skip("chromium not found (set TPO_CHROMIUM to run the browser tests)")
	return ""
}

// browser is a headless Chromium tab with guards: any JavaScript dialog
// (an alert a response smuggled in) and any console error or policy
// violation is recorded and fails the test at its end.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // artifacts

	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	profile, err := os.MkdirTemp("", "tpo-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Chromium's helpers may still write for a moment after it exits.
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	dir := os.Getenv("TPO_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, ctx: ctx, dir: dir}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.problem("a JavaScript dialog opened: " + ev.Message)
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException ||
				strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "Content-Security-Policy") {
				b.problem(fmt.Sprintf("console %s: %s (%s)", m.Type, m.Text, m.URL))
			}
		}
	}()
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Error(p)
		}
	})
	t.Logf("screenshots in %s", dir)
	return b
}

func (b *browser) problem(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, s)
}

// do runs actions with a deadline.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func jsEval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until the JavaScript predicate holds.
func (b *browser) waitFor(what, predicate string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 3000) : ""`))
		b.shot("failed-" + strings.NewReplacer(" ", "-", "/", "-").Replace(what))
		b.t.Fatalf("waiting for %s: %v\npage text:\n%s", what, err, text)
	}
}

func (b *browser) text() string { return jsEval[string](b, `document.body.innerText`) }

// shot saves a screenshot of the viewport.
func (b *browser) shot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
	}
	return path
}

func (b *browser) phone() {
	b.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
}

func (b *browser) desktop() { b.do("desktop viewport", chromedp.EmulateViewport(1280, 900)) }

// noOverflow checks that the page does not scroll sideways: wide tables
// scroll inside their own boxes.
func (b *browser) noOverflow(page string) {
	b.t.Helper()
	if w := jsEval[[]int](b, `[document.documentElement.scrollWidth, window.innerWidth]`); w[0] > w[1]+1 {
		b.t.Errorf("%s: the page is %dpx wide in a %dpx viewport", page, w[0], w[1])
	}
}

func TestUIBrowser(t *testing.T) {
	b := newBrowser(t)
	url := simServer(t, sim.Options{Seed: 21})
	store, runs := fillStore(t, url, []string{"--mode", "bon", "--width", "4"})
	if len(runs) != 2 {
		t.Fatalf("%d runs in the store, want 2", len(runs))
	}
	bon, tpoRun := runs[0], runs[1]
	base := startUI(t, context.Background(), "--store", store)

	// The runs page lists both runs.
	b.do("open the runs page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("table.runs")))
	txt := b.text()
	for _, want := range []string{tpoRun.ID, bon.ID, "tpo", "bon", "3×2", "sim-policy / vllm:sim-reward", "finished"} {
		if !strings.Contains(txt, want) {
			t.Errorf("runs page lacks %q", want)
		}
	}
	b.shot("runs-desktop")

	// Filter by kind and text.
	b.do("filter the runs", chromedp.SetValue(chromedp.CSS(`input[name=q]`), "bon"), chromedp.Submit(chromedp.CSS(`input[name=q]`)),
		chromedp.WaitVisible(chromedp.CSS("table.runs")))
	if n := jsEval[int](b, `document.querySelectorAll('table.runs tbody tr').length`); n != 1 {
		t.Errorf("filtering on bon: %d runs listed, want 1", n)
	}

	// Click through to the TPO run.
	b.do("open the run", chromedp.Navigate(base+"/ui/"), chromedp.Click(chromedp.CSS(`a[href="/ui/runs/`+tpoRun.ID+`"]`)),
		chromedp.WaitVisible(chromedp.ID("items-h")))
	b.waitFor("the run's charts", `document.querySelectorAll('.charts img').length === 2 &&
		[...document.querySelectorAll('.charts img')].every(i => i.complete && i.naturalWidth > 0)`, 10*time.Second)
	txt = b.text()
	for _, want := range []string{"Settings", "Progress", "3 done, 0 failed", "Slowest items", "What is a monad?", "Stored configuration"} {
		if !strings.Contains(txt, want) {
			t.Errorf("run page lacks %q", want)
		}
	}
	b.shot("run-desktop")

	// Search the items.
	b.do("search items", chromedp.SetValue(chromedp.CSS(`#items-h ~ form input[name=q]`), "monad"),
		chromedp.Submit(chromedp.CSS(`#items-h ~ form input[name=q]`)), chromedp.WaitVisible(chromedp.ID("items-h")))
	if n := jsEval[int](b, `document.querySelectorAll('#items-h ~ div table.items tbody tr').length`); n != 1 {
		t.Errorf("searching monad: %d items, want 1", n)
	}

	// Click through to the item whose prompt holds script.
	b.do("open the item", chromedp.Navigate(base+"/ui/runs/"+tpoRun.ID),
		chromedp.Click(chromedp.CSS(`#items-h ~ div a[href$="/items/xss"]`)), chromedp.WaitVisible(chromedp.ID("timeline-h")))
	b.waitFor("the item chart", `(i => i && i.complete && i.naturalWidth > 0)(document.querySelector('figure.chart img'))`, 10*time.Second)
	txt = b.text()
	for _, want := range []string{"Final answer", "Prompt", "Trajectory", "Step 0: initial samples", "Step 1", "Step 2",
		"Critique (textual loss)", "Instructions (textual gradient)", "What changed", "chosen in step 1",
		"<script>window.__pwned=1</script>"} {
		if !strings.Contains(txt, want) {
			t.Errorf("item page lacks %q", want)
		}
	}
	if got := jsEval[string](b, `String(window.__pwned)`); got != "undefined" {
		t.Errorf("script from the prompt ran: window.__pwned = %s", got)
	}
	if n := jsEval[int](b, `document.querySelectorAll('img[src="x"], main script').length`); n != 0 {
		t.Errorf("%d elements from model text made it into the DOM", n)
	}
	if n := jsEval[int](b, `document.querySelectorAll('li.step').length`); n != 3 {
		t.Errorf("%d steps on the item page, want 3", n)
	}
	if n := jsEval[int](b, `document.querySelectorAll('li.cand').length`); n < 3 {
		t.Errorf("%d candidates on the item page", n)
	}
	// The messages sent to the model are one click away.
	if jsEval[bool](b, `document.querySelector('details.calls').open`) {
		t.Error("the calls are open before a click")
	}
	b.do("open the calls", chromedp.Click(chromedp.CSS(`#step1 details.calls > summary`)))
	if !jsEval[bool](b, `document.querySelector('#step1 details.calls').open`) ||
		!strings.Contains(jsEval[string](b, `document.querySelector('#step1 details.calls').innerText`), "<script>window.__pwned=1</script>") {
		t.Error("the calls of step 1 do not show the prompt sent")
	}
	b.do("close the calls", chromedp.Click(chromedp.CSS(`#step1 details.calls > summary`)))
	b.do("top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	b.shot("item-desktop")
	b.do("scroll to the trajectory", chromedp.Evaluate[chromedp.Void](`document.getElementById('step1').scrollIntoView()`))
	b.shot("item-desktop-timeline")

	// On a phone.
	b.phone()
	for _, p := range []struct{ name, path, ready string }{
		{"runs-phone", "/ui/", "table.runs"},
		{"run-phone", "/ui/runs/" + tpoRun.ID, "#items-h"},
		{"item-phone", "/ui/runs/" + tpoRun.ID + "/items/xss", "#timeline-h"},
	} {
		b.do("open "+p.name, chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready)))
		b.noOverflow(p.name)
		b.shot(p.name)
	}
	b.desktop()

	// Delete the bon run, through its confirmation page.
	b.do("delete the bon run", chromedp.Navigate(base+"/ui/runs/"+bon.ID), chromedp.Click(chromedp.CSS(`a.danger`)),
		chromedp.WaitVisible(chromedp.ID("confirm-delete")))
	b.shot("delete-confirm")
	b.do("confirm", chromedp.Click(chromedp.ID("confirm-delete")), chromedp.WaitVisible(chromedp.CSS(".notice")))
	if txt := b.text(); !strings.Contains(txt, "was deleted") || strings.Contains(txt, bon.ID+"\t") {
		t.Errorf("after deleting: %q", txt)
	}
	db, err := sqlite.Open(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if list, _ := db.ListRuns(context.Background()); len(list) != 1 || list[0].ID != tpoRun.ID {
		t.Errorf("after deleting, the store holds %d runs", len(list))
	}
}

// gate holds chat completion requests on their way to a backend until the
// test lets them through, one at a time or all at once.
type gate struct {
	ch     chan struct{}
	closed sync.Once
}

func newGate(t *testing.T, backend string) (*gate, string) {
	t.Helper()
	g := &gate{ch: make(chan struct{})}
	target, _ := url.Parse(backend)
	proxy := httputil.NewSingleHostReverseProxy(target)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/chat/completions") {
			select {
			case <-g.ch:
			case <-r.Context().Done():
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { g.open(); hs.Close() })
	return g, hs.URL
}

// next lets one waiting request through; it waits for one to arrive.
func (g *gate) next(t *testing.T) {
	t.Helper()
	select {
	case g.ch <- struct{}{}:
	case <-time.After(20 * time.Second):
		t.Fatal("no request reached the gate")
	}
}

// open lets every request through from now on.
func (g *gate) open() { g.closed.Do(func() { close(g.ch) }) }

var liveLinkRE = regexp.MustCompile(`href="/ui/live/([^"]+)"`)

func TestUIBrowserLive(t *testing.T) {
	b := newBrowser(t)
	simURL := simServer(t, sim.Options{Seed: 31})
	g, gated := newGate(t, simURL)
	store := filepath.Join(t.TempDir(), "serve.db")
	ctx, cancel := context.WithCancel(context.Background())
	args := []string{"--addr", "127.0.0.1:0", "--store", store, "--width", "2", "--depth", "2",
		"--policy-url", gated + "/v1", "--policy-model", "sim-policy",
		"--reward", "vllm", "--reward-url", simURL, "--reward-model", "sim-reward"}
	base, errc, _ := startServe(t, ctx, args)
	defer func() {
		g.open()
		cancel()
		<-errc
	}()
	root := strings.TrimSuffix(base, "/v1")

	// A request, held at the gate before its first sample.
	answered := make(chan string, 1)
	go func() {
		resp, err := http.Post(base+"/chat/completions", "application/json",
			strings.NewReader(`{"model":"sim-policy","messages":[{"role":"user","content":"Watch me <b>live</b>"}]}`))
		if err != nil {
			answered <- err.Error()
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		answered <- fmt.Sprintf("%d %s", resp.StatusCode, body)
	}()
	var runID string
	for deadline := time.Now().Add(10 * time.Second); runID == ""; {
		_, body, _ := httpGet(t, root+"/ui/")
		if m := liveLinkRE.FindStringSubmatch(body); m != nil {
			runID = m[1]
		} else if time.Now().After(deadline) {
			t.Fatal("the request never showed up as in flight on /ui/")
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}

	b.do("open the runs page", chromedp.Navigate(root+"/ui/"), chromedp.WaitVisible(chromedp.CSS(".live-list")))
	if !strings.Contains(b.text(), "Watch me <b>live</b>") {
		t.Error("the runs page does not show the prompt in flight")
	}
	b.do("follow the live link", chromedp.Click(chromedp.CSS(`a[href="/ui/live/`+runID+`"]`)), chromedp.WaitVisible(chromedp.ID("timeline-h")))
	b.waitFor("the event stream", `document.getElementById('item-body').dataset.state === 'live'`, 10*time.Second)
	if !strings.Contains(b.text(), "No step has finished yet") {
		t.Errorf("before any sample, the page shows: %q", b.text())
	}

	// The samples come back: step 0 appears, without a reload.
	b.do("mark the page", chromedp.Evaluate[chromedp.Void](`window.__same = true`))
	g.next(t)
	b.waitFor("step 0", `!!document.querySelector('#step0') && document.querySelectorAll('#step0 li.cand').length === 2`, 15*time.Second)
	// The critique of step 1 shows while step 1 is still running.
	g.next(t)
	b.waitFor("the live critique", `!!document.querySelector('li.step.in-progress details.critique')`, 15*time.Second)
	b.shot("live-item-critique")
	g.next(t) // gradient
	b.waitFor("the live instructions", `!!document.querySelector('li.step.in-progress details.instructions')`, 15*time.Second)
	g.next(t) // update
	b.waitFor("step 1 saved", `!!document.querySelector('#step1:not(.in-progress) ul.cands')`, 15*time.Second)
	b.shot("live-item-step1")

	// Let the rest through: the page ends with the final answer.
	g.open()
	select {
	case a := <-answered:
		if !strings.HasPrefix(a, "200 ") {
			t.Fatalf("the request failed: %s", a)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the request did not finish")
	}
	b.waitFor("the final answer", `document.getElementById('item-body').dataset.state === 'final' &&
		/Final answer/.test(document.getElementById('item-body').innerText)`, 15*time.Second)
	if !jsEval[bool](b, `window.__same === true`) {
		t.Error("the page reloaded instead of updating")
	}
	if n := jsEval[int](b, `document.querySelectorAll('li.step').length`); n != 3 {
		t.Errorf("%d steps at the end, want 3", n)
	}
	b.shot("live-item-final")
}

// TestUIBrowserPolls watches a tpo run written by another process (here:
// another store handle) from tpo ui, which has no live events: the run page
// polls and shows the progress.
func TestUIBrowserPolls(t *testing.T) {
	b := newBrowser(t)
	simURL := simServer(t, sim.Options{Seed: 41})
	g, gated := newGate(t, simURL)
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	os.WriteFile(data, []byte("{\"id\": \"one\", \"prompt\": \"first\"}\n{\"id\": \"two\", \"prompt\": \"second\"}\n"), 0o644)
	store := filepath.Join(dir, "tpo.db")
	var code int
	done := make(chan struct{})
	go func() {
		defer close(done)
		code, _, _ = cli(t, "", "run", "--data", data, "--store", store, "--width", "2", "--depth", "1", "--concurrency", "1",
			"--policy-url", gated+"/v1", "--policy-model", "sim-policy", "--reward", "vllm", "--reward-url", simURL,
			"--reward-model", "sim-reward", "--progress", "off")
	}()
	defer func() {
		g.open()
		<-done
	}()
	g.next(t) // the first sample: the run and its first item exist now
	base := startUI(t, context.Background(), "--store", store, "--poll", "200ms")
	db, err := sqlite.Open(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	runs, err := db.ListRuns(context.Background())
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %v, %v", runs, err)
	}
	b.do("open the run", chromedp.Navigate(base+"/ui/runs/"+runs[0].ID), chromedp.WaitVisible(chromedp.ID("progress")))
	b.waitFor("polling", `document.getElementById('progress').dataset.state === 'polling'`, 10*time.Second)
	if txt := jsEval[string](b, `document.getElementById('progress').innerText`); !strings.Contains(txt, "0 done") || !strings.Contains(txt, "unfinished") {
		t.Errorf("progress before any item finished: %q", txt)
	}
	b.shot("poll-run-start")
	g.open()
	<-done
	if code != 0 {
		t.Fatalf("tpo run: exit %d", code)
	}
	b.waitFor("the finished run", `document.getElementById('progress').dataset.state === 'final' &&
		/2 done/.test(document.getElementById('progress').innerText)`, 20*time.Second)
	b.waitFor("the run's charts", `document.querySelectorAll('#progress .charts img').length === 2 &&
		[...document.querySelectorAll('#progress .charts img')].every(i => i.complete && i.naturalWidth > 0)`, 10*time.Second)
	b.shot("poll-run-finished")
}

// TestUIAllowedHosts: tpo ui answers to loopback names by default and gets
// 421 for another host, at the root and under /ui.
func TestUIAllowedHosts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ui.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	base := startUI(t, context.Background(), "--store", path)
	for _, p := range []string{"/", "/ui/", "/ui/static/app.js"} {
		if code, body := hostStatus(t, base, p, "rebound.example:8081"); code != http.StatusMisdirectedRequest || !strings.Contains(body, "--allowed-host") {
			t.Errorf("GET %s for rebound.example: %d %q", p, code, body)
		}
		if code, _ := hostStatus(t, base, p, "localhost:8081"); code >= 400 {
			t.Errorf("GET %s for localhost: %d", p, code)
		}
	}
}
