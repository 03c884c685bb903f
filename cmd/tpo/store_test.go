package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo/internal/pgtest"
	"github.com/tpoproject/tpo/sim"
)

func TestStoreName(t *testing.T) {
	tests := []struct {
		spec, name string
		isURL      bool
	}{
		{"tpo.db", "tpo.db", false},
		{"/data/runs/tpo.db", "/data/runs/tpo.db", false},
		{"postgres://tpo:s3cret@db:5432/tpo", "postgres://tpo:xxxxx@db:5432/tpo", true},
		{"postgresql://tpo@db/tpo?password=s3cret", "postgresql://tpo@db/tpo?password=xxxxx", true},
		{"mysql://u:s3cret@h/db", "mysql://u:xxxxx@h/db", false},
	}
	for _, tt := range tests {
		if got := storeName(tt.spec); got != tt.name {
			t.Errorf("storeName(%q) = %q, want %q", tt.spec, got, tt.name)
		}
		if got := isStoreURL(tt.spec); got != tt.isURL {
			t.Errorf("isStoreURL(%q) = %v", tt.spec, got)
		}
	}
}

func TestStoreUnknownScheme(t *testing.T) {
	for _, args := range [][]string{
		{"export", "--format", "jsonl", "--out", "-", "abc"},
		{"report", "abc"},
		{"eval", "reward", "abc"},
		{"ui"},
		{"run", "--sim", "hello"},
	} {
		code, _, stderr := cli(t, "", append(args, "--store", "mysql://u:s3cret@h/db")...)
		if code != 2 || !strings.Contains(stderr, `--store mysql://u:xxxxx@h/db: unknown scheme "mysql"`) || strings.Contains(stderr, "s3cret") {
			t.Errorf("tpo %s: exit %d, stderr %q; want 2 and the scheme, without the password", args[0], code, stderr)
		}
	}
}

// password returns the password of a URL.
func password(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := p.User.Password()
	return pw
}

// TestPostgresStore runs, resumes, exports, reports and shows a dataset
// stored in PostgreSQL, as a user would, and never prints the password.
func TestPostgresStore(t *testing.T) {
	store := pgtest.Schema(t)
	pw := password(t, store)
	simURL := simServer(t, sim.Options{Seed: 5})
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	writeDataset(t, data, 4)
	args := append([]string{"run", "--data", data, "--store", store, "--width", "2", "--depth", "1"}, backendArgs(simURL)...)

	var said []string
	code, _, stderr := cli(t, "", args...)
	said = append(said, stderr)
	if code != 0 {
		t.Fatalf("tpo run: exit %d; stderr:\n%s", code, stderr)
	}
	m := regexp.MustCompile(`run (\w+): 4 items: 4 done, 0 failed, 0 already done \(store postgres://\S+:xxxxx@`).FindStringSubmatch(stderr)
	if m == nil || !strings.Contains(stderr, "(with the password in place of xxxxx)") {
		t.Fatalf("tpo run: stderr lacks the counts, the redacted store or the password hint:\n%s", stderr)
	}
	runID := m[1]

	code, _, stderr = cli(t, "", append(args, "--out", filepath.Join(dir, "out.jsonl"))...)
	said = append(said, stderr)
	if code != 0 || !strings.Contains(stderr, "0 done, 0 failed, 4 already done") {
		t.Errorf("tpo run again: exit %d; stderr:\n%s", code, stderr)
	}
	if lines := readLines(t, filepath.Join(dir, "out.jsonl")); len(lines) != 4 {
		t.Errorf("--out: %d lines, want 4", len(lines))
	}

	code, stdout, stderr := cli(t, "", "export", "--store", store, "--format", "jsonl", "--out", "-", runID)
	said = append(said, stderr)
	if n := strings.Count(stdout, "\n"); code != 0 || n != 4 {
		t.Errorf("tpo export: exit %d, %d lines; stderr:\n%s", code, n, stderr)
	}
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var a struct{ ID, Response string }
		if err := json.Unmarshal([]byte(l), &a); err != nil || a.ID == "" || a.Response == "" {
			t.Errorf("tpo export: line %q: %v", l, err)
		}
	}

	report := filepath.Join(dir, "r.html")
	code, _, stderr = cli(t, "", "report", "--store", store, "--out", report, runID)
	said = append(said, stderr)
	if html, _ := os.ReadFile(report); code != 0 || !strings.Contains(string(html), "tpo-2-1") {
		t.Errorf("tpo report: exit %d, stderr:\n%s", code, stderr)
	}
	code, _, stderr = cli(t, "", "report", "--store", store, "nosuchrun")
	said = append(said, stderr)
	if code != 2 || !strings.Contains(stderr, `"nosuchrun" is neither a results file nor a run in postgres://`) {
		t.Errorf("tpo report of a missing run: exit %d, stderr:\n%s", code, stderr)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := startUI(t, ctx, "--store", store)
	if code, body, _ := httpGet(t, base+"/ui/runs/"+runID); code != 200 || !strings.Contains(body, "4 of 4") {
		t.Errorf("tpo ui: GET the run: %d\n%s", code, body)
	}
	for _, s := range said {
		if strings.Contains(s, pw) {
			t.Errorf("the password shows in:\n%s", s)
		}
	}
}

// TestPostgresStoreErrors: a store that cannot be reached or refuses the
// password fails every command at once, naming where, never the password.
func TestPostgresStoreErrors(t *testing.T) {
	base := pgtest.URL(t)
	wrongPW, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	wrongPW.User = url.UserPassword(wrongPW.User.Username(), "hunter2-secret")
	refused := *wrongPW
	refused.Host = "127.0.0.1:1"
	tests := []struct {
		url  string
		want string
	}{
		{wrongPW.String(), "cannot connect to PostgreSQL at " + wrongPW.Host + " (database "},
		{wrongPW.String(), "password authentication failed"},
		{refused.String(), "cannot connect to PostgreSQL at 127.0.0.1:1 (database "},
		{refused.String(), "connection refused"},
	}
	simURL := simServer(t, sim.Options{Seed: 6})
	commands := [][]string{
		append([]string{"run", "hello"}, backendArgs(simURL)...),
		{"export", "--format", "jsonl", "--out", "-", "abc"},
		{"report", "abc"},
		{"eval", "reward", "abc"},
		{"ui", "--addr", "127.0.0.1:0"},
		append([]string{"serve", "--addr", "127.0.0.1:0"}, serveBackendArgs(simURL)...),
	}
	for _, tt := range tests {
		for _, c := range commands {
			start := time.Now()
			code, _, stderr := cli(t, "", append(c, "--store", tt.url)...)
			if code != 1 || !strings.Contains(stderr, tt.want) || !strings.Contains(stderr, "store postgres://") {
				t.Errorf("tpo %s --store %s: exit %d, stderr %q; want 1 and %q", c[0], storeName(tt.url), code, stderr, tt.want)
			}
			if strings.Contains(stderr, "hunter2-secret") {
				t.Errorf("tpo %s: the password shows in %q", c[0], stderr)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("tpo %s took %v to fail", c[0], d)
			}
		}
	}
}

// TestPostgresServe records what tpo serve answers in PostgreSQL, where
// tpo export finds it.
func TestPostgresServe(t *testing.T) {
	store := pgtest.Schema(t)
	simURL := simServer(t, sim.Options{Seed: 7})
	ctx, cancel := context.WithCancel(context.Background())
	base, errc, stderr := startServe(t, ctx, append([]string{"--addr", "127.0.0.1:0", "--store", store, "--width", "2", "--depth", "1"},
		serveBackendArgs(simURL)...))
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("tpo serve: %v", err)
		}
		if strings.Contains(stderr.String(), password(t, store)) {
			t.Errorf("the password shows in:\n%s", stderr)
		}
	}()
	if !strings.Contains(stderr.String(), "store postgres://") {
		t.Errorf("tpo serve does not name its store:\n%s", stderr)
	}
	resp, err := http.Post(base+"/chat/completions", "application/json",
		strings.NewReader(`{"model": "sim-policy", "messages": [{"role": "user", "content": "Explain RAID 5."}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct {
		TPO struct {
			RunID string `json:"run_id"`
		} `json:"tpo"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != 200 || c.TPO.RunID == "" {
		t.Fatalf("status %d, run %q, %v", resp.StatusCode, c.TPO.RunID, err)
	}
	code, stdout, errOut := cli(t, "", "export", "--store", store, "--format", "jsonl", "--out", "-", c.TPO.RunID)
	if code != 0 || strings.Count(stdout, "\n") != 1 || !strings.Contains(stdout, "Explain RAID 5.") {
		t.Errorf("tpo export of the served run: exit %d, stdout %q, stderr %q", code, stdout, errOut)
	}
}

// TestPostgresServeBatches: two tpo serve replicas on one PostgreSQL
// store keep the files of the Files and Batch APIs in it: a file
// uploaded to one makes a batch created on the other, and the first
// serves its output. No files directory is made; --files-dir is refused.
func TestPostgresServeBatches(t *testing.T) {
	store := pgtest.Schema(t)
	t.Chdir(t.TempDir()) // where a files directory would appear
	simURL := simServer(t, sim.Options{Seed: 8})
	// Bounded: a tpo serve that took the flag would serve on.
	refused, stop := context.WithTimeout(context.Background(), 10*time.Second)
	var errOut bytes.Buffer
	code := runMain(refused, append([]string{"serve", "--addr", "127.0.0.1:0", "--store", store, "--files-dir", t.TempDir()},
		serveBackendArgs(simURL)...), newEnviron(strings.NewReader(""), io.Discard, &errOut))
	stop()
	if code != 2 || !strings.Contains(errOut.String(), "--files-dir: with a PostgreSQL store the files of the Files and Batch APIs are kept in the database") {
		t.Errorf("--files-dir with a PostgreSQL store: exit %d, stderr %q; want a usage error", code, errOut.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bases [2]string
	var stops [2]func()
	for i := range bases {
		rctx, stop := context.WithCancel(ctx)
		base, errc, stderr := startServe(t, rctx, append([]string{"--addr", "127.0.0.1:0", "--store", store, "--width", "2", "--depth", "1"},
			serveBackendArgs(simURL)...))
		bases[i] = base
		stops[i] = func() {
			stop()
			if err := <-errc; err != nil {
				t.Errorf("tpo serve %d: %v", i, err)
			}
			if !strings.Contains(stderr.String(), "tpo serve: files (batches) in the PostgreSQL store, ") {
				t.Errorf("tpo serve %d does not say where the files are:\n%s", i, stderr)
			}
		}
	}
	a, b := bases[0], bases[1]
	var in strings.Builder
	for i := range 3 {
		fmt.Fprintf(&in, `{"custom_id":"q%d","method":"POST","url":"/v1/chat/completions","body":{"model":"sim-policy","messages":[{"role":"user","content":"Explain RAID %d."}]}}`+"\n", i, i)
	}
	var file struct{ ID string }
	postForm(t, a+"/files", "requests.jsonl", in.String(), &file)
	var batch struct {
		ID           string `json:"id"`
		Status       string `json:"status"`
		OutputFileID string `json:"output_file_id"`
	}
	postJSON(t, b+"/batches", `{"input_file_id":"`+file.ID+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`, &batch)
	deadline := time.Now().Add(30 * time.Second)
	for batch.Status != "completed" {
		if time.Now().After(deadline) || batch.Status == "failed" {
			t.Fatalf("batch %s, created on B: %s", batch.ID, batch.Status)
		}
		time.Sleep(50 * time.Millisecond)
		code, body, _ := httpGet(t, a+"/batches/"+batch.ID)
		if code != http.StatusOK || json.Unmarshal([]byte(body), &batch) != nil {
			t.Fatalf("GET the batch from A: %d %s", code, body)
		}
	}
	code, out, _ := httpGet(t, a+"/files/"+batch.OutputFileID+"/content")
	if code != http.StatusOK || strings.Count(out, `"status_code":200`) != 3 {
		t.Errorf("the output file, downloaded from A: %d\n%s", code, out)
	}
	for _, stop := range stops {
		stop()
	}
	if _, err := os.Stat("tpo-files"); !os.IsNotExist(err) {
		t.Errorf("tpo serve made a files directory in the working directory: %v", err)
	}
}

// postForm uploads content as a batch input file and decodes the answer.
func postForm(t *testing.T, u, name, content string, v any) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", name)
	io.WriteString(fw, content)
	mw.WriteField("purpose", "batch")
	mw.Close()
	resp, err := http.Post(u, mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	decodeOK(t, resp, v)
}

// postJSON posts body and decodes the answer.
func postJSON(t *testing.T, u, body string, v any) {
	t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	decodeOK(t, resp, v)
}

func decodeOK(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", resp.Request.URL, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v: %s", resp.Request.URL, err, b)
	}
}
