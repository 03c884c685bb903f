package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/sim"
	"github.com/tpoproject/tpo/sqlite"
)

// buildTPO builds the tpo binary once per test binary run.
var buildTPO = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tpo-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tpo")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// stepKey names one step of one item.
type stepKey struct {
	item string
	step int
}

var questionRE = regexp.MustCompile(`question number (\d+)\b`)

// recorder wraps the simulated server and maps every chat request to the
// item and step it belongs to (the item from the question text every
// prompt carries, the step from the request's seed).
type recorder struct {
	h     http.Handler
	seed  int64
	width int
	mu    sync.Mutex
	reqs  []stepKey
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/chat/completions" {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req struct {
			Seed     *int64 `json:"seed"`
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		if json.Unmarshal(body, &req) == nil && req.Seed != nil {
			item := ""
			for _, m := range req.Messages {
				if s := questionRE.FindStringSubmatch(m.Content); s != nil {
					item = s[1]
					break
				}
			}
			r := int((*req.Seed - rc.seed) / int64(rc.width))
			step := (r + 2) / 3 // request 0 is step 0; 1,2,3 step 1; 4,5,6 step 2
			rc.mu.Lock()
			rc.reqs = append(rc.reqs, stepKey{item, step})
			rc.mu.Unlock()
		}
	}
	rc.h.ServeHTTP(w, r)
}

func (rc *recorder) take() []stepKey {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := rc.reqs
	rc.reqs = nil
	return out
}

// savedSteps reads the steps the store holds.
func savedSteps(t *testing.T, path string) map[stepKey]bool {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(context.Background()); err != nil {
		t.Fatalf("store integrity: %v", err)
	}
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

// TestRunSurvivesSIGKILL kills `tpo run` at random moments, reruns it until
// it finishes, and checks that every item completes exactly once, the store
// stays intact, and no step that had been saved is ever computed again.
func TestRunSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the tpo binary")
	}
	bin, err := buildTPO()
	if err != nil {
		t.Fatal(err)
	}
	const (
		items = 40
		width = 3
		seed  = 1000
		kills = 10
	)
	// About 5s of wall time of uninterrupted work, bound by the simulated
	// clock rather than the machine's speed, so that the run cannot finish
	// before the kills are done.
	srv := sim.New(sim.Options{Seed: 1, TimeScale: 0.05, MeanTokens: 60, Slots: 16, UnparsedRate: -1})
	defer srv.Close()
	rec := &recorder{h: srv, seed: seed, width: width}
	hs := httptest.NewServer(rec)
	defer hs.Close()

	dir := t.TempDir()
	data := filepath.Join(dir, "data.jsonl")
	var b bytes.Buffer
	for i := 1; i <= items; i++ {
		fmt.Fprintf(&b, `{"id": "%d", "prompt": "Answer question number %d, please."}`+"\n", i, i)
	}
	if err := os.WriteFile(data, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "tpo.db")
	out := filepath.Join(dir, "out.jsonl")
	args := []string{"run", "--data", data, "--out", out, "--store", store,
		"--policy-url", hs.URL + "/v1", "--policy-model", "sim-policy",
		"--reward", "vllm", "--reward-url", hs.URL, "--reward-model", "sim-reward",
		"--width", strconv.Itoa(width), "--depth", "2", "--seed", strconv.Itoa(seed),
		"--concurrency", "4", "--progress", "off"}

	rng := rand.New(rand.NewPCG(7, 7))
	killed := 0
	for attempt := 0; attempt < kills+20; attempt++ {
		saved := map[stepKey]bool{}
		if _, err := os.Stat(store); err == nil {
			saved = savedSteps(t, store)
		}
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var waitErr error
		finished := false
		if killed < kills {
			select {
			case waitErr = <-done:
				finished = true
			case <-time.After(time.Duration(100+rng.IntN(400)) * time.Millisecond):
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-done
				killed++
			}
		} else {
			select {
			case waitErr = <-done:
				finished = true
			case <-time.After(2 * time.Minute):
				_ = cmd.Process.Kill()
				t.Fatalf("final run did not finish; stderr:\n%s", stderr.String())
			}
		}
		for _, k := range rec.take() {
			if saved[k] {
				t.Errorf("attempt %d: item %s step %d was saved before, yet computed again", attempt, k.item, k.step)
			}
		}
		if finished {
			if waitErr != nil {
				t.Fatalf("run failed: %v\n%s", waitErr, stderr.String())
			}
			break
		}
	}
	if killed < kills {
		t.Errorf("the run finished after %d kills, want %d: the workload is too small", killed, kills)
	}

	// Every item exactly once, in input order, without errors.
	f, err := os.Open(out)
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
			t.Errorf("line %d: id %q, want %d", n, l.ID, n)
		}
		if l.Error != nil {
			t.Errorf("item %s failed: %s", l.ID, *l.Error)
		}
		if len(l.Steps) != 3 {
			t.Errorf("item %s: %d steps, want 3", l.ID, len(l.Steps))
		}
	}
	if n != items {
		t.Errorf("results: got %d lines, want %d", n, items)
	}
	savedSteps(t, store) // integrity check once more
	if killed < 1 {
		t.Error("the process was never killed mid-run")
	}
}
