package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/pgtest"
	"github.com/tpoproject/tpo/postgres"
	"github.com/tpoproject/tpo/sim"
)

// coopSetup is a shared run's world: a simulated model server, a dataset,
// and a PostgreSQL store in a schema of its own.
type coopSetup struct {
	bin, dir, data, store string
	srv                   *sim.Server
}

const (
	coopItems = 40
	coopWidth = 3
	coopSeed  = 1000
)

func newCoopSetup(t *testing.T) *coopSetup {
	t.Helper()
	store := pgtest.Schema(t)
	if testing.Short() {
		t.Skip("builds and runs the tpo binary")
	}
	bin, err := buildTPO()
	if err != nil {
		t.Fatal(err)
	}
	// About 5s of work for one process at concurrency 4, bound by the
	// simulated clock rather than the machine's speed.
	srv := sim.New(sim.Options{Seed: 1, TimeScale: 0.05, MeanTokens: 60, Slots: 64, UnparsedRate: -1})
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	data := filepath.Join(dir, "data.jsonl")
	var b bytes.Buffer
	for i := 1; i <= coopItems; i++ {
		fmt.Fprintf(&b, `{"id": "%d", "prompt": "Answer question number %d, please."}`+"\n", i, i)
	}
	if err := os.WriteFile(data, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return &coopSetup{bin: bin, dir: dir, data: data, store: store, srv: srv}
}

// coopWorker is one tpo run process, with a server front of its own that
// records which steps it computed.
type coopWorker struct {
	name   string
	rec    *recorder
	cmd    *exec.Cmd
	out    string
	stderr bytes.Buffer
	done   chan error
}

// start starts a tpo run process on the shared run.
func (s *coopSetup) start(t *testing.T, name string, extra ...string) *coopWorker {
	t.Helper()
	w := &coopWorker{name: name, rec: &recorder{h: s.srv, seed: coopSeed, width: coopWidth},
		out: filepath.Join(s.dir, name+".jsonl"), done: make(chan error, 1)}
	hs := httptest.NewServer(w.rec)
	t.Cleanup(hs.Close)
	args := append([]string{"run", "--data", s.data, "--out", w.out, "--store", s.store,
		"--policy-url", hs.URL + "/v1", "--policy-model", "sim-policy",
		"--reward", "vllm", "--reward-url", hs.URL, "--reward-model", "sim-reward",
		"--width", strconv.Itoa(coopWidth), "--depth", "2", "--seed", strconv.Itoa(coopSeed),
		"--concurrency", "4", "--progress", "off"}, extra...)
	w.cmd = exec.Command(s.bin, args...)
	w.cmd.Stderr = &w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	t.Cleanup(func() { _ = w.cmd.Process.Kill() })
	return w
}

// wait waits for the process to end, at most d, and returns its exit code.
func (w *coopWorker) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case err := <-w.done:
		if err == nil {
			return 0
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		t.Fatalf("%s: %v", w.name, err)
	case <-time.After(d):
		_ = w.cmd.Process.Kill()
		t.Fatalf("%s did not end within %v; stderr:\n%s", w.name, d, w.stderr.String())
	}
	return -1
}

// steps counts the requests the process sent for each step.
func (w *coopWorker) steps() map[stepKey]int {
	n := map[stepKey]int{}
	for _, k := range w.rec.take() {
		n[k]++
	}
	return n
}

// requestsOf is the number of policy requests of a step: the samples of
// step 0; the loss, gradient and update of the others.
func requestsOf(step int) int {
	if step == 0 {
		return 1
	}
	return 3
}

// checkOut checks that a results file holds every item once, in input
// order, each with its three steps and without an error.
func checkCoopOut(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	n := 0
	for sc.Scan() {
		var l struct {
			ID    string            `json:"id"`
			Error *string           `json:"error"`
			Steps []json.RawMessage `json:"steps"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		n++
		if l.ID != strconv.Itoa(n) {
			t.Errorf("%s line %d: id %q, want %d", filepath.Base(path), n, l.ID, n)
		}
		if l.Error != nil {
			t.Errorf("%s: item %s failed: %s", filepath.Base(path), l.ID, *l.Error)
		}
		if len(l.Steps) != 3 {
			t.Errorf("%s: item %s: %d steps, want 3", filepath.Base(path), l.ID, len(l.Steps))
		}
	}
	if n != coopItems {
		t.Errorf("%s: %d lines, want %d", filepath.Base(path), n, coopItems)
	}
}

// checkStore checks the store's integrity and that every item is done.
func checkCoopStore(t *testing.T, url string) {
	t.Helper()
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(context.Background()); err != nil {
		t.Errorf("store integrity: %v", err)
	}
	runs, err := db.ListRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Done != coopItems || runs[0].Finished == nil {
		t.Errorf("runs: %+v, want one finished run with %d items done", runs, coopItems)
	}
}

// TestWorkersShareARun starts the same tpo run three times at once on a
// PostgreSQL store: every step of every item is computed once, by one of
// them, and each writes the whole run's results.
func TestWorkersShareARun(t *testing.T) {
	s := newCoopSetup(t)
	var ws []*coopWorker
	for i := range 3 {
		ws = append(ws, s.start(t, fmt.Sprintf("worker%d", i)))
	}
	by := map[stepKey][]string{}
	for _, w := range ws {
		if code := w.wait(t, 3*time.Minute); code != 0 {
			t.Fatalf("%s: exit %d; stderr:\n%s", w.name, code, w.stderr.String())
		}
		if !strings.Contains(w.stderr.String(), fmt.Sprintf("%d items: %d done, 0 failed, 0 already done", coopItems, coopItems)) {
			t.Errorf("%s's summary:\n%s", w.name, w.stderr.String())
		}
		for k, n := range w.steps() {
			if n != requestsOf(k.step) {
				t.Errorf("%s sent %d requests for item %s step %d, want %d", w.name, n, k.item, k.step, requestsOf(k.step))
			}
			by[k] = append(by[k], w.name)
		}
		checkCoopOut(t, w.out)
	}
	for k, who := range by {
		if len(who) > 1 {
			t.Errorf("item %s step %d was computed by %v", k.item, k.step, who)
		}
	}
	if len(by) != coopItems*3 {
		t.Errorf("%d steps computed, want %d", len(by), coopItems*3)
	}
	checkCoopStore(t, s.store)
}

// TestKilledWorkersItemsGoToOthers kills one of three workers in the
// middle of a run: the others finish its items once their lease has run
// out, computing again only the steps it had in flight.
func TestKilledWorkersItemsGoToOthers(t *testing.T) {
	s := newCoopSetup(t)
	const lease = "6s"
	victim := s.start(t, "victim", "--lease", lease)
	var survivors []*coopWorker
	for i := range 2 {
		survivors = append(survivors, s.start(t, fmt.Sprintf("survivor%d", i), "--lease", lease))
	}
	// Kill the victim once it is well into the run.
	deadline := time.Now().Add(time.Minute)
	for victim.rec.count() < 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.wait(t, time.Minute)
	lost := victim.steps()

	computed := map[stepKey]string{}
	for _, w := range survivors {
		if code := w.wait(t, 3*time.Minute); code != 0 {
			t.Fatalf("%s: exit %d; stderr:\n%s", w.name, code, w.stderr.String())
		}
		for k, n := range w.steps() {
			if n != requestsOf(k.step) {
				t.Errorf("%s sent %d requests for item %s step %d, want %d", w.name, n, k.item, k.step, requestsOf(k.step))
			}
			if other, ok := computed[k]; ok {
				t.Errorf("item %s step %d was computed by %s and %s", k.item, k.step, other, w.name)
			}
			computed[k] = w.name
		}
		checkCoopOut(t, w.out)
	}
	// The steps computed twice are the victim's in flight: at most its
	// concurrency, and at least one, as it was killed mid-run.
	again := 0
	for k := range lost {
		if _, ok := computed[k]; ok {
			again++
		} else {
			computed[k] = victim.name
		}
	}
	t.Logf("the victim computed %d steps, %d of which the others computed again", len(lost), again)
	if again < 1 || again > 4 {
		t.Errorf("%d steps of the victim computed again, want 1 to 4 (its steps in flight)", again)
	}
	if len(computed) != coopItems*3 {
		t.Errorf("%d steps computed, want %d", len(computed), coopItems*3)
	}
	checkCoopStore(t, s.store)
}

// TestPostgresRunResumesAfterCtrlC interrupts a single tpo run on a
// PostgreSQL store several times with SIGINT, as a person would with
// Ctrl-C: each run says how far it got, and the next resumes at once (the
// lease is far longer than the test), computing no saved step again.
func TestPostgresRunResumesAfterCtrlC(t *testing.T) {
	s := newCoopSetup(t)
	rng := rand.New(rand.NewPCG(3, 3))
	saved := map[stepKey]bool{}
	for attempt := 0; ; attempt++ {
		w := s.start(t, fmt.Sprintf("attempt%d", attempt))
		last := attempt == 3
		if !last {
			time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
			if err := w.cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
		}
		code := w.wait(t, 2*time.Minute)
		for k := range w.steps() {
			if saved[k] {
				t.Errorf("attempt %d: item %s step %d was saved before, yet computed again", attempt, k.item, k.step)
			}
		}
		stderr := strings.TrimSpace(w.stderr.String())
		if last || code == 0 {
			if code != 0 {
				t.Fatalf("last run: exit %d; stderr:\n%s", code, stderr)
			}
			checkCoopOut(t, w.out)
			break
		}
		// (The simulated reward model's scores lie in [0, 1], which tpo
		// warns about before.)
		// A run interrupted while it starts (on a loaded machine, before
		// it opened the run) has nothing to count and says only that.
		lines := strings.Split(stderr, "\n")
		lastLine := lines[len(lines)-1]
		early := lastLine == "interrupted" && len(w.steps()) == 0
		if code != 130 || !(ctrlCLineRE.MatchString(lastLine) || early) {
			t.Errorf("attempt %d: exit %d, stderr:\n%s\nwant 130 and the interrupted line last", attempt, code, stderr)
		}
		saved = pgSavedSteps(t, s.store)
	}
	checkCoopStore(t, s.store)
}

var ctrlCLineRE = regexp.MustCompile(`^interrupted: \d+ of 40 items done; run the same command again to resume$`)

// count returns how many requests the recorder has seen since the last take.
func (rc *recorder) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

// pgSavedSteps reads the steps a PostgreSQL store holds.
func pgSavedSteps(t *testing.T, url string) map[stepKey]bool {
	t.Helper()
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	runs, err := db.ListRuns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	saved := map[stepKey]bool{}
	for _, r := range runs {
		err := db.Results(context.Background(), r.ID, func(st tpo.ItemState) error {
			for _, s := range st.Steps {
				saved[stepKey{st.Item.ID, s.Step}] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return saved
}
