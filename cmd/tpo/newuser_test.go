package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/sim"
	"github.com/tpoproject/tpo/sqlite"
)

func TestPlural(t *testing.T) {
	tests := []struct {
		n    int
		want string
	}{{0, "0 runs"}, {1, "1 run"}, {2, "2 runs"}, {805, "805 runs"}}
	for _, tt := range tests {
		if got := plural(tt.n, "run", "runs"); got != tt.want {
			t.Errorf("plural(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestIDList(t *testing.T) {
	ids := make([]string, 805)
	for i := range ids {
		ids[i] = fmt.Sprint(i + 1)
	}
	tests := []struct {
		ids  []string
		want string
	}{
		{nil, ""},
		{ids[:3], "1, 2, 3"},
		{ids[:10], "1, 2, 3, 4, 5, 6, 7, 8, 9, 10"},
		{ids, "1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 795 more"},
	}
	for _, tt := range tests {
		if got := idList(tt.ids, maxListed); got != tt.want {
			t.Errorf("idList(%d ids) = %q, want %q", len(tt.ids), got, tt.want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"tpo.db", "tpo.db"},
		{"/tmp/x/tpo.db", "/tmp/x/tpo.db"},
		{"my runs.db", "'my runs.db'"},
		{"it's.db", `'it'\''s.db'`},
		{"", "''"},
	}
	for _, tt := range tests {
		if got := shellQuote(tt.in); got != tt.want {
			t.Errorf("shellQuote(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFailureTally(t *testing.T) {
	type fail struct {
		seq     int
		id, err string
	}
	same := make([]fail, 805)
	for i := range same {
		same[i] = fail{i, fmt.Sprint(i + 1), "step 0: sample: policy server http://h/v1: 500 Internal Server Error"}
	}
	var many []fail
	for i := range 8 {
		for j := 0; j <= i; j++ {
			many = append(many, fail{len(many), fmt.Sprintf("i%d", len(many)), fmt.Sprintf("error %d", i)})
		}
	}
	tests := []struct {
		name  string
		fails []fail
		want  string
	}{
		{"one", []fail{{4, "e", `item "e": no messages`}},
			"H; hint\n  no messages (item e)"},
		{"all the same", same,
			"H, all with the same error; hint\n  step 0: sample: policy server http://h/v1: 500 Internal Server Error"},
		{"dataset lines are locations", []fail{
			{2, "x", "d.jsonl:3: field \"prompt\": want a string, got number"},
			{0, "line-1", "d.jsonl:1: field \"prompt\": want a string, got number"},
			{1, "b", "score: reward server down"},
			{6, "line-7", "d.jsonl:7: field \"prompt\": want a string, got number"},
			{9, "line-10", "d.jsonl:10: field \"prompt\": want a string, got number"},
		},
			"H; hint\n" +
				"  4 items: d.jsonl: field \"prompt\": want a string, got number (lines 1, 3, 7 and 1 more)\n" +
				"  1 item: score: reward server down (item b)"},
		{"one cause at different responses and steps", []fail{
			{0, "a", "step 0: score: reward: tokenizing response 0: POST /tokenize: 404 Not Found: no model"},
			{1, "b", "step 0: score: reward: tokenizing response 3: POST /tokenize: 404 Not Found: no model"},
			{2, "c", "step 1: score: reward: tokenizing response 3: POST /tokenize: 404 Not Found: no model"},
			{3, "d", "step 0: score: reward: tokenizing response 1: POST /tokenize: 500 Internal Server Error"},
			{4, "e", "step 0: score: reward: response 2: the conversation is 900 tokens, more than the reward model's maximum of 512"},
			{5, "f", "step 1: score: reward: response 4: the conversation is 612 tokens, more than the reward model's maximum of 512"},
		},
			"H; hint\n" +
				"  3 items: step #: score: reward: tokenizing response #: POST /tokenize: 404 Not Found: no model (items a, b, c)\n" +
				"  2 items: step #: score: reward: response #: the conversation is # tokens, more than the reward model's maximum of 512 (items e, f)\n" +
				"  1 item: step 0: score: reward: tokenizing response 1: POST /tokenize: 500 Internal Server Error (item d)"},
		{"ties in input order, capped", many,
			"H; hint\n" +
				"  8 items: error 7 (items i28, i29, i30 and 5 more)\n" +
				"  7 items: error 6 (items i21, i22, i23 and 4 more)\n" +
				"  6 items: error 5 (items i15, i16, i17 and 3 more)\n" +
				"  5 items: error 4 (items i10, i11, i12 and 2 more)\n" +
				"  4 items: error 3 (items i6, i7, i8 and 1 more)\n" +
				"  and 6 items with 3 other errors (see the error field of the results)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft := failureTally{data: "d.jsonl"}
			for _, f := range tt.fails {
				ft.add(f.seq, f.id, f.err)
			}
			if got := ft.describe("H", "; hint", maxReasons); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
	var empty failureTally
	if got := empty.describe("H", "", maxReasons); got != "" {
		t.Errorf("no failures: %q, want nothing", got)
	}
}

func TestRetryCountsSummary(t *testing.T) {
	type r struct{ name, url, reason string }
	rep := func(n int, x r) []r {
		out := make([]r, n)
		for i := range out {
			out[i] = x
		}
		return out
	}
	cat := func(rs ...[]r) []r {
		var out []r
		for _, x := range rs {
			out = append(out, x...)
		}
		return out
	}
	tests := []struct {
		name    string
		retries []r
		want    string
	}{
		{"none", nil, ""},
		{"policy and reward", cat(
			rep(9, r{"policy", "http://p/v1", "429"}),
			rep(2, r{"reward", "http://r", httpx.ReasonConnection}),
			rep(3, r{"policy", "http://p/v1", "503"})),
			"retries: policy 12 (429: 9, 503: 3); reward 2 (connection error: 2)"},
		{"replicas named by URL", cat(
			rep(2, r{"policy", "http://a/v1", "503"}),
			rep(5, r{"policy", "http://b/v1", "timeout"})),
			"retries: policy http://b/v1 5 (timeout: 5); policy http://a/v1 2 (503: 2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c retryCounts
			for _, x := range tt.retries {
				c.ObserveRetry(httpx.Retry{Name: x.name, URL: x.url, Reason: x.reason})
			}
			if got := c.summary(); got != tt.want {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestUnreachableHint(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	wrapped := fmt.Errorf("policy server X: GET /models: %w (gave up after 4 retries)", refused)
	tests := []struct {
		name    string
		urls    []string
		want    []string
		notWant []string
	}{
		{"policy", []string{defaultPolicyURL}, []string{"cannot reach the policy server at " + defaultPolicyURL, "connection refused", "start Ollama", "--policy-url", "--sim"}, []string{"gave up"}},
		{"policy", []string{"http://gpu:8000/v1"}, []string{"http://gpu:8000/v1", "--policy-url", "--sim"}, []string{"Ollama"}},
		{"judge", []string{"http://gpu:8000/v1"}, []string{"cannot reach the judge server", "--judge-url"}, []string{"Ollama", "--sim"}},
	}
	for _, tt := range tests {
		err := unreachable(tt.name, tt.urls, wrapped)
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s %v: %q lacks %q", tt.name, tt.urls, err, w)
			}
		}
		for _, w := range tt.notWant {
			if strings.Contains(err.Error(), w) {
				t.Errorf("%s %v: %q has %q", tt.name, tt.urls, err, w)
			}
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%v does not wrap the cause", err)
		}
	}
}

// writeDataset writes n items {"id": "1", "prompt": "question 1"}, ...
func writeDataset(t *testing.T, path string, n int) {
	t.Helper()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `{"id": "%d", "prompt": "Answer question number %d."}`+"\n", i, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunFailuresOnce runs a dataset whose every item fails the same way:
// the reason is said once, with the count, the retries are one summary
// line and no retry is a warning.
func TestRunFailuresOnce(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 11, Faults: sim.Faults{ServerError: 1}})
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	writeDataset(t, data, 12)
	args := append([]string{"run", "--data", data, "--store", filepath.Join(dir, "tpo.db"), "--retries", "1", "--concurrency", "4"}, backendArgs(url)...)
	code, stdout, stderr := cli(t, "", args...)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout: %q, want nothing", stdout)
	}
	if n := strings.Count(stderr, "500 Internal Server Error"); n != 1 {
		t.Errorf("the error is said %d times, want once:\n%s", n, stderr)
	}
	for _, want := range []string{
		"12 of 12 items failed, all with the same error; run the same command again to retry them\n  step 0: sample: policy server",
		"retries: policy 12 (500: 12)\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	for _, bad := range []string{"level=WARN", "retrying", "tpo export"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("stderr has %q:\n%s", bad, stderr)
		}
	}
}

// TestRunRetriesSummary checks the retry line of a run that succeeds
// despite a server answering 429 now and then.
func TestRunRetriesSummary(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 12, Faults: sim.Faults{RateLimited: 0.2, RetryAfter: 1}})
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	writeDataset(t, data, 3)
	args := append([]string{"run", "--data", data, "--store", filepath.Join(dir, "tpo.db"), "--retries", "8",
		"--width", "2", "--depth", "1"}, backendArgs(url)...)
	code, _, stderr := cli(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	re := regexp.MustCompile(`(?m)^retries: (policy|reward) (\d+) \(429: (\d+)\)(; (policy|reward) (\d+) \(429: (\d+)\))?$`)
	if !re.MatchString(stderr) {
		t.Errorf("no retries line like %s:\n%s", re, stderr)
	}
	if strings.Contains(stderr, "level=") {
		t.Errorf("log lines on stderr:\n%s", stderr)
	}
}

// TestRunResultsHint: a dataset run without --out says where the results
// are, and the command it gives writes them.
func TestRunResultsHint(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 13})
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	writeDataset(t, data, 3)
	store := filepath.Join(dir, "my runs.db")
	args := append([]string{"run", "--data", data, "--store", store, "--width", "2", "--depth", "1"}, backendArgs(url)...)
	code, _, stderr := cli(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	m := regexp.MustCompile(`the results are in the store (.+), run (\w+); write them to a file with\n  tpo export --store '(.+)' --format jsonl --out results.jsonl (\w+)\n`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no hint at the results:\n%s", stderr)
	}
	if m[1] != store || m[3] != store || m[2] != m[4] {
		t.Errorf("hint names store %q / %q and runs %q / %q, want %q and one run", m[1], m[3], m[2], m[4], store)
	}
	out := filepath.Join(dir, "results.jsonl")
	if code, _, stderr := cli(t, "", "export", "--store", store, "--format", "jsonl", "--out", out, m[4]); code != 0 {
		t.Fatalf("the hinted export: exit %d:\n%s", code, stderr)
	}
	if n := len(readLines(t, out)); n != 3 {
		t.Errorf("exported %d lines, want 3", n)
	}
}

// TestRunLimit: --limit N optimizes the first N items; the run is the same
// whatever the limit, so a larger limit resumes it, and --out holds the
// first N items.
func TestRunLimit(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 14})
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	writeDataset(t, data, 6)
	out := filepath.Join(dir, "out.jsonl")
	base := append([]string{"run", "--data", data, "--store", filepath.Join(dir, "tpo.db"), "--out", out,
		"--width", "2", "--depth", "1"}, backendArgs(url)...)
	runRE := regexp.MustCompile(`run (\w+): `)
	tests := []struct {
		limit   string
		summary string
		ids     []string
	}{
		{"2", "2 items: 2 done, 0 failed, 0 already done", []string{"1", "2"}},
		{"4", "4 items: 2 done, 0 failed, 2 already done", []string{"1", "2", "3", "4"}},
		{"1", "1 item: 0 done, 0 failed, 1 already done", []string{"1"}},
		{"0", "6 items: 2 done, 0 failed, 4 already done", []string{"1", "2", "3", "4", "5", "6"}},
	}
	runID := ""
	for _, tt := range tests {
		code, _, stderr := cli(t, "", append(base, "--limit", tt.limit)...)
		if code != 0 {
			t.Fatalf("--limit %s: exit %d; stderr:\n%s", tt.limit, code, stderr)
		}
		if !strings.Contains(stderr, tt.summary) {
			t.Errorf("--limit %s: stderr lacks %q:\n%s", tt.limit, tt.summary, stderr)
		}
		m := runRE.FindStringSubmatch(stderr)
		if m == nil {
			t.Fatalf("--limit %s: no run id:\n%s", tt.limit, stderr)
		}
		if runID == "" {
			runID = m[1]
		} else if m[1] != runID {
			t.Errorf("--limit %s: run %s, want the same run %s", tt.limit, m[1], runID)
		}
		var ids []string
		for _, l := range readLines(t, out) {
			ids = append(ids, l["id"].(string))
		}
		if fmt.Sprint(ids) != fmt.Sprint(tt.ids) {
			t.Errorf("--limit %s: --out holds %v, want %v", tt.limit, ids, tt.ids)
		}
	}
	for _, bad := range [][]string{{"--limit", "-1"}, {"--limit", "x"}} {
		if code, _, stderr := cli(t, "", append(base, bad...)...); code != 2 || !strings.Contains(stderr, "limit") {
			t.Errorf("%v: exit %d, stderr:\n%s", bad, code, stderr)
		}
	}
	if code, _, stderr := cli(t, "", "run", "--limit", "3", "a prompt"); code != 2 || !strings.Contains(stderr, "--limit needs --data") {
		t.Errorf("--limit with a prompt: exit %d, stderr:\n%s", code, stderr)
	}
}

// TestRunOutStdout: with --out - the results go to stdout, and nothing
// else does.
func TestRunOutStdout(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 15})
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	writeDataset(t, data, 3)
	store := filepath.Join(dir, "tpo.db")
	tests := []struct {
		name  string
		args  []string
		lines int
	}{
		{"dataset", []string{"--data", data}, 3},
		{"prompt", []string{"-v", "What is a monad?"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"run", "--store", store, "--out", "-", "--width", "2", "--depth", "1"}, backendArgs(url)...), tt.args...)
			code, stdout, stderr := cli(t, "", args...)
			if code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if len(lines) != tt.lines {
				t.Fatalf("stdout: %d lines, want %d:\n%s", len(lines), tt.lines, stdout)
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, `{"id":`) || !strings.HasSuffix(l, "}") {
					t.Errorf("stdout line %d is not a result: %.80q", i+1, l)
				}
			}
			if strings.Contains(stderr, "tpo export") {
				t.Errorf("stderr points at the store though the results were written:\n%s", stderr)
			}
		})
	}
}

// waitForSim polls the simulator's accounting until ok holds.
func waitForSim(t *testing.T, url string, ok func(sim.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + sim.EndpointStats)
		if err == nil {
			var st sim.Stats
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && ok(st) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the simulator never saw what was waited for")
}

var interruptedRE = regexp.MustCompile(`^interrupted: (\d+) of 30 items done; run the same command again to resume\n$`)

// TestRunInterruptedInProcess: a dataset run whose context is cancelled
// ends with the one interrupted line and exit status 130.
func TestRunInterruptedInProcess(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 16, TimeScale: 0.02})
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	writeDataset(t, data, 30)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var o, e strings.Builder
	env := newEnviron(strings.NewReader(""), &o, &e)
	args := append([]string{"run", "--data", data, "--store", filepath.Join(dir, "tpo.db"), "--concurrency", "2"}, backendArgs(url)...)
	done := make(chan int)
	go func() { done <- runMain(ctx, args, env) }()
	waitForSim(t, url, func(st sim.Stats) bool { return st.RewardCalls > 0 })
	cancel()
	code := <-done
	if code != 130 {
		t.Errorf("exit %d, want 130; stderr:\n%s", code, e.String())
	}
	if !interruptedRE.MatchString(e.String()) {
		t.Errorf("stderr is not the one interrupted line:\n%q", e.String())
	}
	if o.Len() != 0 {
		t.Errorf("stdout: %q, want nothing", o.String())
	}
}

// TestRunOneInterrupted: a single prompt whose context is cancelled ends
// with one line and exit status 130.
func TestRunOneInterrupted(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 19, TimeScale: 0.05})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var o, e strings.Builder
	env := newEnviron(strings.NewReader(""), &o, &e)
	args := append([]string{"run", "--store", filepath.Join(t.TempDir(), "tpo.db"), "What is a monad?"}, backendArgs(url)...)
	done := make(chan int)
	go func() { done <- runMain(ctx, args, env) }()
	waitForSim(t, url, func(st sim.Stats) bool { return st.Requests[sim.EndpointChat] > 0 })
	cancel()
	if code := <-done; code != 130 || e.String() != "interrupted before the answer was finished\n" || o.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q; want 130 and one line", code, o.String(), e.String())
	}
}

// TestRunSIGINT sends SIGINT to the tpo binary in the middle of a dataset
// run: it prints one line with the items done, including those of an
// earlier run, and exits with status 130; the same command then resumes.
func TestRunSIGINT(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the tpo binary")
	}
	bin, err := buildTPO()
	if err != nil {
		t.Fatal(err)
	}
	url := simServer(t, sim.Options{Seed: 17, TimeScale: 0.01})
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	writeDataset(t, data, 30)
	store := filepath.Join(dir, "tpo.db")
	args := append([]string{"run", "--data", data, "--store", store, "--concurrency", "2", "--width", "2", "--depth", "1"}, backendArgs(url)...)

	// An earlier run did the first 3 items.
	if code, _, stderr := cli(t, "", append(args, "--limit", "3")...); code != 0 {
		t.Fatalf("first run: exit %d:\n%s", code, stderr)
	}
	before := simRequests(t, url)
	cmd := exec.Command(bin, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForSim(t, url, func(st sim.Stats) bool { return st.Requests[sim.EndpointChat] > before+4 })
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit: %v, want status 130; stderr:\n%s", err, stderr.String())
	}
	m := interruptedRE.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("stderr is not the one interrupted line:\n%q", stderr.String())
	}
	done, failed, err := storeCounts(t, store)
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != fmt.Sprint(done) || failed != 0 || done < 3 || done == 30 {
		t.Errorf("said %s items done; the store has %d done, %d failed (want 3 to 29 done)", m[1], done, failed)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q, want nothing", stdout.String())
	}

	code, _, errText := cli(t, "", args...)
	if code != 0 || !strings.Contains(errText, fmt.Sprintf("%d already done", done)) {
		t.Errorf("resuming: exit %d, want 0 and %d already done:\n%s", code, done, errText)
	}
}

// simRequests returns the chat requests the simulator has answered.
func simRequests(t *testing.T, url string) int64 {
	t.Helper()
	var n int64
	waitForSim(t, url, func(st sim.Stats) bool { n = st.Requests[sim.EndpointChat]; return true })
	return n
}

// storeCounts counts the done and failed items of the only run of a store.
func storeCounts(t *testing.T, path string) (done, failed int, err error) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	runs, err := db.ListRuns(context.Background())
	if err != nil || len(runs) != 1 {
		return 0, 0, fmt.Errorf("runs: %d, %v; want one run", len(runs), err)
	}
	return runs[0].Done, runs[0].Failed, nil
}

// screen returns the lines a terminal shows after printing out: a carriage
// return goes back to the start of the line, and what follows overwrites.
func screen(out string) []string {
	var lines [][]rune
	line, col := []rune{}, 0
	for _, r := range out {
		switch r {
		case '\r':
			col = 0
		case '\n':
			lines = append(lines, line)
			line, col = []rune{}, 0
		default:
			if col < len(line) {
				line[col] = r
			} else {
				line = append(line, r)
			}
			col++
		}
	}
	lines = append(lines, line)
	var out2 []string
	for _, l := range lines {
		out2 = append(out2, strings.TrimRight(string(l), " "))
	}
	return out2
}

func TestScreen(t *testing.T) {
	got := screen("abc\r   \rde\nxy\rz\n")
	want := []string{"de", "zy", ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("screen = %q, want %q", got, want)
	}
}

// TestProgressBarAndLogs runs a dataset with the progress bar on while
// the optimizer logs warnings (no update sample parses): on the screen,
// every log line is whole, no bar is left broken, and the bar is gone at
// the end.
func TestProgressBarAndLogs(t *testing.T) {
	url := simServer(t, sim.Options{Seed: 18, UnparsedRate: 1})
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	writeDataset(t, data, 8)
	args := append([]string{"run", "--data", data, "--store", filepath.Join(dir, "tpo.db"), "--concurrency", "2",
		"--width", "2", "--depth", "2"}, backendArgs(url)...)
	args = append(args, "--progress", "on") // after backendArgs' "off"
	code, _, stderr := cli(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "items") || !strings.Contains(stderr, "\r") {
		t.Fatalf("no progress bar was drawn:\n%q", stderr)
	}
	lines := screen(stderr)
	warnings := 0
	for i, l := range lines {
		switch {
		case strings.Contains(l, "level=WARN"):
			warnings++
			if !strings.HasPrefix(l, "time=") || strings.Contains(l, "items/s") || strings.Contains(l, "|") {
				t.Errorf("screen line %d mixes a log line and the bar: %q", i+1, l)
			}
		case strings.Contains(l, "items/s") || strings.Contains(l, "optimizing"):
			t.Errorf("screen line %d is a bar left behind: %q", i+1, l)
		}
	}
	if warnings == 0 {
		t.Fatalf("no warning was logged: the test tests nothing:\n%s", strings.Join(lines, "\n"))
	}
	if last := lines[len(lines)-2]; !strings.HasPrefix(last, "the results are in the store") && !strings.HasPrefix(last, "  tpo export") {
		t.Errorf("the screen ends with %q, want the summary", last)
	}
}
