package main

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpoproject/tpo/internal/shareddata"
)

// sharedDataDir returns ../shared/data beside the repository (see
// internal/shareddata).
func sharedDataDir(t *testing.T) string { return shareddata.Path(t, 2, "") }

// dataMirror serves ../shared/data over HTTP as TPO_DATA_MIRROR, with an
// empty cache directory, and returns the cache's data directory.
func dataMirror(t *testing.T) (cache string) {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(sharedDataDir(t))))
	t.Cleanup(srv.Close)
	t.Setenv("TPO_DATA_MIRROR", srv.URL)
	home := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", home)
	t.Setenv("HOME", home)
	base, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(base, "tpo", "data")
}

func TestDataGetAndList(t *testing.T) {
	cache := dataMirror(t)
	code, stdout, stderr := cli(t, "", "data", "get", "xstest", "arena_hard_v0.1")
	want := "xstest: " + filepath.Join(cache, "xstest", "xstest.jsonl") + " (fetched, sha256 checked)\n" +
		"arena_hard_v0.1: " + filepath.Join(cache, "arena_hard_v0.1", "question.jsonl") + " (fetched, sha256 checked)\n" +
		"arena_hard_v0.1:baseline: " + filepath.Join(cache, "arena_hard_v0.1", "baseline_gpt-4-0314.jsonl") + " (fetched, sha256 checked)\n"
	if code != 0 || stdout != want || stderr != "" {
		t.Fatalf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, stdout, want, stderr)
	}
	code, stdout, _ = cli(t, "", "data", "get", "xstest")
	if code != 0 || !strings.HasSuffix(stdout, "xstest.jsonl (cached already)\n") {
		t.Errorf("again: exit %d, %s", code, stdout)
	}
	code, stdout, _ = cli(t, "", "data", "list")
	for _, s := range []string{
		"xstest: XSTest v2", "  licence: CC BY 4.0",
		"  --data xstest  450 rows  " + filepath.Join(cache, "xstest", "xstest.jsonl"),
		"  --data math500  500 rows  not cached", "alpaca_eval: ", "licence: CC BY-NC 4.0 (AlpacaEval's data): non-commercial",
		"  --data alpaca_eval:baseline  805 rows  not cached", "cache: " + cache, "mirror (TPO_DATA_MIRROR): http://127.0.0.1:",
	} {
		if !strings.Contains(stdout, s) {
			t.Errorf("tpo data list lacks %q:\n%s", s, stdout)
		}
	}
	if code != 0 {
		t.Errorf("list: exit %d", code)
	}
	// ../shared/data has no copy of AlpacaEval 2's baseline: the prompts
	// are got, the baseline's failure is said, and the exit status is 1.
	code, stdout, stderr = cli(t, "", "data", "get", "alpaca_eval")
	if code != 1 || !strings.Contains(stdout, "alpaca_eval: "+filepath.Join(cache, "alpaca_eval", "alpaca_eval.jsonl")) ||
		!strings.Contains(stderr, "alpaca_eval:baseline: the mirror http://127.0.0.1:") ||
		!strings.HasSuffix(stderr, "tpo data: 1 file of 2 could not be got\n") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, args := range [][]string{{"data", "get", "nope"}, {"data", "get"}, {"data", "get", "xstest:baseline"}, {"data"}, {"data", "list", "x"}} {
		if code, _, stderr := cli(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, stderr)
		}
	}
}

func TestDataNameAsData(t *testing.T) {
	cache := dataMirror(t)
	dir := t.TempDir()
	// The first use of a name downloads it, and says so once.
	res := writeTemp(t, dir, "res.jsonl", jsonLines(t, kv{"id": "1", "response": "Sure: kill it with `kill -9 PID`."}))
	code, stdout, stderr := cli(t, "", "eval", "xstest", "--results", res, "--data", "xstest", "--json")
	if code != 0 || !strings.Contains(stderr, "tpo: --data xstest: fetched into the cache: "+filepath.Join(cache, "xstest", "xstest.jsonl")+" (sha256 checked; licence: CC BY 4.0") ||
		!strings.Contains(stdout, `"command":"xstest"`) {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	code, _, stderr = cli(t, "", "eval", "xstest", "--results", res, "--data", "xstest", "--json")
	if code != 0 || strings.Contains(stderr, "fetched") {
		t.Errorf("second use: exit %d, stderr %s", code, stderr)
	}
	// tpo run reads a name too.
	out := filepath.Join(dir, "out.jsonl")
	code, _, stderr = cli(t, "", "run", "--sim", "--sim-time-scale", "0.0005", "--data", "math500", "--limit", "2",
		"--depth", "1", "--width", "2", "--progress", "off", "--store", filepath.Join(dir, "tpo.db"), "--out", out)
	if code != 0 {
		t.Fatalf("tpo run --data math500: exit %d\n%s", code, stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		if i := strings.Index(sc.Text(), `"id":"`); i >= 0 {
			ids = append(ids, strings.SplitN(sc.Text()[i+6:], `"`, 2)[0])
		}
	}
	if strings.Join(ids, ",") != "test/precalculus/807.json,test/intermediate_algebra/1994.json" {
		t.Errorf("ids %v", ids)
	}
	// A name tpo does not know, and no such file: said at once.
	code, _, stderr = cli(t, "", "eval", "math", "--results", res, "--data", "math5000")
	if code != 2 || !strings.Contains(stderr, "--data math5000: no such file, and not a data set tpo knows (math500, alpaca_eval, ") {
		t.Errorf("unknown name: exit %d, %s", code, stderr)
	}
}

func TestDataMirrorUnreachable(t *testing.T) {
	home := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", home)
	t.Setenv("HOME", home)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	t.Setenv("TPO_DATA_MIRROR", dead)
	code, _, stderr := cli(t, "", "eval", "math", "--results", "x.jsonl", "--data", "math500")
	want := "tpo eval: --data: math500: the mirror " + dead + " (TPO_DATA_MIRROR): GET " + dead + "/math500/math500.jsonl: dial tcp "
	if code != 1 || !strings.HasPrefix(stderr, want) || !strings.HasSuffix(stderr, "connection refused\n") {
		t.Errorf("exit %d: %s\nwant %s...", code, stderr, want)
	}
}
