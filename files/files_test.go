package files

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// TestReopen: opening the directory again counts what it holds.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	d, err := Open(t.TempDir(), 100)
	if err != nil {
		t.Fatal(err)
	}
	up, err := d.Upload(ctx, "in.jsonl", strings.NewReader("line one\nline two\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Commit(ctx, "batch", now); err != nil {
		t.Fatal(err)
	}
	d2, err := Open(d.Path(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, used, _ := d2.Usage(ctx); used != 18 {
		t.Errorf("reopened: used = %d", used)
	}
	if d2.Where() != d.Path() {
		t.Errorf("Where = %q", d2.Where())
	}
}

// TestRefusedLeavesNothing: an upload past the limit leaves no file in
// the directory.
func TestRefusedLeavesNothing(t *testing.T) {
	d, err := Open(t.TempDir(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Upload(context.Background(), "big", strings.NewReader(strings.Repeat("x", 11))); err == nil {
		t.Fatal("an upload past the limit was kept")
	}
	if entries, _ := os.ReadDir(d.Path()); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}
