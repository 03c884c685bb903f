package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo/files"
	"github.com/tpoproject/tpo/internal/pgtest"
	"github.com/tpoproject/tpo/tpotest/storetest"
)

// TestFilesContract runs the files contract with the default chunks, and
// with chunks of an odd size, so that reads and writes cross chunk
// boundaries anywhere.
func TestFilesContract(t *testing.T) {
	pgtest.URL(t)
	for _, chunk := range []int{DefaultChunkSize, 64<<10 + 3} {
		t.Run(fmt.Sprintf("chunk=%d", chunk), func(t *testing.T) {
			storetest.RunFiles(t, func(t *testing.T, limit int64) files.Store {
				fs := openTest(t).Files(limit)
				fs.chunk = chunk
				return fs
			})
		})
	}
}

// TestFilesShared: two processes on one database (two pools) see each
// other's files, and share one limit.
func TestFilesShared(t *testing.T) {
	ctx := context.Background()
	u := pgtest.Schema(t)
	var stores [2]*Files
	for i := range stores {
		db, err := Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		stores[i] = db.Files(10)
	}
	a, b := stores[0], stores[1]
	up, err := a.Upload(ctx, "in.jsonl", strings.NewReader("123456"))
	if err != nil {
		t.Fatal(err)
	}
	// Counted for b while it is under way.
	if _, err := b.Upload(ctx, "other.jsonl", strings.NewReader("123456")); !errors.As(err, new(*files.LimitError)) {
		t.Fatalf("upload past the shared limit on the other process: %v", err)
	}
	f, err := up.Commit(ctx, "batch", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, r, err := b.Open(ctx, f.ID)
	if err != nil || got.Bytes != 6 {
		t.Fatalf("the other process opens %+v, %v", got, err)
	}
	r.Close()
	if _, used, err := b.Usage(ctx); err != nil || used != 6 {
		t.Errorf("the other process counts %d, %v", used, err)
	}
	if err := b.Delete(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(ctx, f.ID); !errors.Is(err, files.ErrNotFound) {
		t.Errorf("deleted by the other process, still there: %v", err)
	}
}

// TestFilesAbandoned: an upload whose process died holds its room until
// it has had no chunk for an hour; the next upload then removes it.
func TestFilesAbandoned(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	fs := db.Files(10)
	if _, err := fs.Upload(ctx, "dead.jsonl", strings.NewReader("12345678")); err != nil {
		t.Fatal(err)
	}
	// Its process dies: the upload is neither committed nor discarded.
	if _, err := fs.Upload(ctx, "x", strings.NewReader("12345")); !errors.As(err, new(*files.LimitError)) {
		t.Fatalf("an upload under way does not hold its room: %v", err)
	}
	if _, err := db.pool.Exec(ctx, `UPDATE files SET updated = now() - interval '61 minutes' WHERE NOT done`); err != nil {
		t.Fatal(err)
	}
	up, err := fs.Upload(ctx, "x", strings.NewReader("12345"))
	if err != nil {
		t.Fatalf("after the abandoned upload's hour: %v", err)
	}
	up.Discard()
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM files`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d files rows left, %v", n, err)
	}
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM file_chunks`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d chunks left, %v", n, err)
	}
}
