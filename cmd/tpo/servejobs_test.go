package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeJobFlags: --preset sets what /v1/models lists; the files
// directory is beside the store by default, or --files-dir; bad values
// are usage errors naming the flag.
func TestServeJobFlags(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, errc, stderr := startServe(t, ctx, []string{"--sim", "--addr", "127.0.0.1:0", "--store", filepath.Join(dir, "s.db"),
		"--preset", "tpo-d2-n5", "--preset", "bon-n8"})
	if !strings.Contains(stderr.String(), "files (batches) in "+filepath.Join(dir, "tpo-files")) {
		t.Errorf("start-up lines do not name the files directory beside the store:\n%s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "tpo-files")); err != nil {
		t.Errorf("files directory: %v", err)
	}
	resp, err := http.Get(base + "/models")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	if err != nil || !strings.Contains(strings.Join(ids, " "), "tpo-d2-n5/sim-policy") || !strings.Contains(strings.Join(ids, " "), "bon-n8/sim-policy") ||
		strings.Contains(strings.Join(ids, " "), "off/") {
		t.Errorf("models = %v, %v", ids, err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	for _, args := range [][]string{
		{"serve", "--sim", "--preset", "best-n3"},
		{"serve", "--sim", "--preset", "bon-d2"},
		{"serve", "--sim", "--files-limit", "0"},
		{"serve", "--sim", "--batch-concurrency", "0"},
	} {
		code, _, stderr := cli(t, "", args...)
		if code != 2 || !strings.Contains(stderr, strings.TrimPrefix(args[len(args)-2], "--")) {
			t.Errorf("%q: exit %d, want 2 naming the flag:\n%s", args, code, stderr)
		}
	}
}

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1 KiB"}, {1536, "1.5 KiB"},
		{3<<20 + 200<<10, "3.2 MiB"}, {1 << 30, "1 GiB"}, {1<<62 + 1<<61, "6 EiB"},
	} {
		if got := byteSize(tc.n); got != tc.want {
			t.Errorf("byteSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
