package files

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var now = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func TestUploadGetOpenDelete(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "files"), 100)
	if err != nil {
		t.Fatal(err)
	}
	up, err := d.Upload("in.jsonl", strings.NewReader("line one\nline two\n"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := up.Commit("batch", now)
	if err != nil {
		t.Fatal(err)
	}
	if !idRE.MatchString(f.ID) || f.Name != "in.jsonl" || f.Purpose != "batch" || f.Bytes != 18 || !f.Created.Equal(now) {
		t.Errorf("file = %+v", f)
	}
	got, r, err := d.Open(f.ID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r)
	r.Close()
	if got != f || string(body) != "line one\nline two\n" {
		t.Errorf("Open = %+v %q", got, body)
	}
	if _, used := d.Limit(); used != 18 {
		t.Errorf("used = %d, want 18", used)
	}
	// Opening the directory again counts what it holds.
	d2, err := Open(d.Path(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, used := d2.Limit(); used != 18 {
		t.Errorf("reopened: used = %d", used)
	}
	if err := d.Delete(f.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(f.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if _, used := d.Limit(); used != 0 {
		t.Errorf("used after Delete = %d", used)
	}
}

// TestLimit: an upload that would pass the limit is refused and leaves
// nothing behind; concurrent uploads share the room; the server's own
// files always fit.
func TestLimit(t *testing.T) {
	d, err := Open(t.TempDir(), 10)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Upload("big", strings.NewReader(strings.Repeat("x", 11)))
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != 10 {
		t.Fatalf("Upload of 11 bytes: %v", err)
	}
	if entries, _ := os.ReadDir(d.Path()); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 4 {
		wg.Go(func() {
			if up, err := d.Upload("x", strings.NewReader("12345")); err == nil {
				if _, err := up.Commit("batch", now); err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if ok != 2 {
		t.Errorf("%d uploads of 5 bytes fit in 10, want 2", ok)
	}
	f, err := d.Write("out.jsonl", "batch_output", now, func(w io.Writer) error {
		_, err := io.WriteString(w, "more than the room left")
		return err
	})
	if err != nil || f.Bytes != 23 {
		t.Errorf("Write = %+v, %v", f, err)
	}
	list, err := d.List("batch_output")
	if err != nil || len(list) != 1 || list[0].ID != f.ID {
		t.Errorf("List(batch_output) = %+v, %v", list, err)
	}
}

func TestBadIDs(t *testing.T) {
	d, err := Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "../etc/passwd", "file-", "file-" + strings.Repeat("0", 47) + "/", "file-" + strings.Repeat("A", 48)} {
		if _, err := d.Get(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v", id, err)
		}
		if err := d.Delete(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(%q) = %v", id, err)
		}
	}
}
