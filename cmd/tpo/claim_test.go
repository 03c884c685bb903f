package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/sim"
	"github.com/tpoproject/tpo/sqlite"
)

// claimData writes a dataset of n items and returns its path.
func claimData(t *testing.T, dir string, n int) string {
	t.Helper()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `{"id": "q%d", "prompt": "question %d"}`+"\n", i, i)
	}
	data := filepath.Join(dir, "d.jsonl")
	if err := os.WriteFile(data, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// openClaims opens the SQLite store at path for the test, as another
// process would.
func openClaims(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// onlyRun returns the one run of a store, with its items.
func onlyRun(t *testing.T, db *sqlite.DB) (tpo.Run, []tpo.ItemSummary) {
	t.Helper()
	runs, err := db.ListRuns(context.Background())
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %v, %v; want one", runs, err)
	}
	items, _, err := db.ListItems(context.Background(), runs[0].ID, tpo.ItemFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return runs[0].Run, items
}

// unclaimed fails t unless run runID has no claim (it claims the run to
// see, and gives it back).
func unclaimed(t *testing.T, db *sqlite.DB, runID string) {
	t.Helper()
	probe := tpo.RunClaim{Owner: tpo.Owner{Host: "probe", PID: 1, Started: time.Now()}, Token: "probe", Since: time.Now()}
	held, ok, err := db.ClaimRun(context.Background(), runID, probe, "")
	if err != nil || !ok {
		t.Fatalf("run %s is still claimed by %+v (%v)", runID, held, err)
	}
	if _, err := db.ReleaseRun(context.Background(), runID, "probe"); err != nil {
		t.Fatal(err)
	}
}

// TestRunClaimedByAnotherHost: a run that a process of another host
// claims is refused, naming the run, the process and since when, with
// nothing computed; --force takes it over; and a claim of a process of
// this host that no longer runs is taken over without it.
func TestRunClaimedByAnotherHost(t *testing.T) {
	ctx := context.Background()
	url := simServer(t, sim.Options{Seed: 11})
	dir := t.TempDir()
	data, store := claimData(t, dir, 6), filepath.Join(dir, "tpo.db")
	args := append([]string{"run", "--data", data, "--store", store, "--width", "2", "--depth", "1"}, backendArgs(url)...)
	if code, _, stderr := cli(t, "", append(args, "--limit", "1")...); code != 0 {
		t.Fatalf("first run: exit %d; stderr:\n%s", code, stderr)
	}
	db := openClaims(t, store)
	run, _ := onlyRun(t, db)
	unclaimed(t, db, run.ID) // released at the end

	// A process of build-7 works on the run.
	at := time.Now().Add(-5 * time.Minute).Truncate(time.Second)
	other := tpo.RunClaim{Owner: tpo.Owner{Host: "build-7", PID: 4242, Started: at}, Token: "tok-build-7", Since: at}
	if _, ok, err := db.ClaimRun(ctx, run.ID, other, ""); !ok || err != nil {
		t.Fatalf("claim as build-7: %v, %v", ok, err)
	}
	code, stdout, stderr := cli(t, "", args...)
	want := regexp.MustCompile(fmt.Sprintf(`\ntpo run: run %s is being worked on by pid 4242 on host build-7 since %s \(5m\ds ago\); wait for it to finish, or pass --force if that process is gone\n$`,
		run.ID, at.UTC().Format("2006-01-02 15:04:05 UTC")))
	if code != 1 || stdout != "" || !want.MatchString("\n"+stderr) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("second process: exit %d, stdout %q, stderr:\n%s\nwant exit 1 and the one line\n%s", code, stdout, stderr, want)
	}
	if _, items := onlyRun(t, db); len(items) != 1 {
		t.Errorf("the refused process started %d items, want none (1 from before)", len(items)-1)
	}
	held, ok, err := db.ClaimRun(ctx, run.ID, tpo.RunClaim{Owner: other.Owner, Token: "probe", Since: at}, "")
	if ok || err != nil || held.Token != other.Token {
		t.Errorf("after the refusal the claim is %+v (%v, %v), want build-7's, untouched", held, ok, err)
	}

	// --force takes it over, with a warning naming the process.
	code, _, stderr = cli(t, "", append(args, "--force", "--limit", "3")...)
	if code != 0 || !strings.Contains(stderr, fmt.Sprintf("warning: --force: taking over run %s from pid 4242 on host build-7, which has worked on it since %s", run.ID, at.UTC().Format("2006-01-02 15:04:05 UTC"))) ||
		!strings.Contains(stderr, "2 done, 0 failed, 1 already done") {
		t.Errorf("--force: exit %d; stderr:\n%s", code, stderr)
	}
	unclaimed(t, db, run.ID)

	// A process of this host that no longer runs: taken over at once.
	host, _ := os.Hostname()
	gone := tpo.RunClaim{Owner: tpo.Owner{Host: host, PID: 1 << 30, Started: at}, Token: "tok-gone", Since: at}
	if _, ok, err := db.ClaimRun(ctx, run.ID, gone, ""); !ok || err != nil {
		t.Fatalf("claim as a gone process: %v, %v", ok, err)
	}
	code, _, stderr = cli(t, "", args...)
	took := regexp.MustCompile(fmt.Sprintf(`\ntaking over run %s from pid %d on host %s, which worked on it since %s \(5m\ds ago\) and no longer runs\n`,
		run.ID, 1<<30, regexp.QuoteMeta(host), at.UTC().Format("2006-01-02 15:04:05 UTC")))
	if code != 0 || !took.MatchString("\n"+stderr) || !strings.Contains(stderr, "3 done, 0 failed, 3 already done") {
		t.Errorf("stale claim: exit %d; stderr:\n%s", code, stderr)
	}
	unclaimed(t, db, run.ID)
}

// TestRunClaimedByALiveProcess: while a tpo run works on a run, a second
// one on the same store and data refuses it; Ctrl-C on the first releases
// the run.
func TestRunClaimedByALiveProcess(t *testing.T) {
	slow := simServer(t, sim.Options{Seed: 12, TimeScale: 0.05})
	dir := t.TempDir()
	data, store := claimData(t, dir, 8), filepath.Join(dir, "tpo.db")
	args := append([]string{"run", "--data", data, "--store", store, "--width", "2", "--depth", "2", "--concurrency", "2"}, backendArgs(slow)...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		code   int
		stderr string
	}
	first := make(chan result, 1)
	go func() {
		code, _, stderr := cliCtx(ctx, t, "", args...)
		first <- result{code, stderr}
	}()
	// The first process claims the run before it starts an item.
	db := openClaims(t, store)
	var run tpo.Run
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		runs, err := db.ListRuns(context.Background())
		if err == nil && len(runs) == 1 {
			if items, _, err := db.ListItems(context.Background(), runs[0].ID, tpo.ItemFilter{}); err == nil && len(items) > 0 {
				run = runs[0].Run
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the first process started no item in 30s")
		}
	}

	host, _ := os.Hostname()
	code, _, stderr := cli(t, "", args...)
	want := fmt.Sprintf("tpo run: run %s is being worked on by pid %d on host %s since ", run.ID, os.Getpid(), host)
	if code != 1 || !strings.Contains(stderr, want) || !strings.HasSuffix(stderr, "; wait for it to finish, or stop it and run this command again\n") {
		t.Errorf("second process: exit %d; stderr:\n%s\nwant exit 1 and %q...", code, stderr, want)
	}

	cancel()
	r := <-first
	if r.code != 130 || !strings.Contains(r.stderr, "interrupted: ") {
		t.Errorf("first process: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	unclaimed(t, db, run.ID)
}

func TestForceUsage(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--force", "a prompt"},
		{"run", "--force", "--store", "postgres://u:p@localhost:1/db", "--data", "d.jsonl"},
	} {
		if code, _, stderr := cli(t, "", args...); code != 2 || !strings.Contains(stderr, "--force") {
			t.Errorf("%q: exit %d, stderr %s; want a usage error", args, code, stderr)
		}
	}
}
