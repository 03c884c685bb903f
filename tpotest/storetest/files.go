package storetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/tpoproject/tpo/files"
)

// RunFiles checks the files.Store contract: an upload is kept as sent
// (in pieces of any size, large or empty) once committed, and read back
// from any offset; it is refused, keeping nothing, past the limit, which
// concurrent uploads share; the server's own files always fit; List
// sorts newest first; ids the store did not make name no file. open
// opens a new, empty store with room for limit bytes of uploads.
func RunFiles(t *testing.T, open func(t *testing.T, limit int64) files.Store) {
	t.Run("UploadGetOpenDelete", func(t *testing.T) { testFileLifecycle(t, open(t, 100)) })
	t.Run("Large", func(t *testing.T) { testLargeFile(t, open(t, 16<<20)) })
	t.Run("Empty", func(t *testing.T) { testEmptyFile(t, open(t, 10)) })
	t.Run("Limit", func(t *testing.T) { testFileLimit(t, open(t, 10)) })
	t.Run("Discard", func(t *testing.T) { testDiscard(t, open(t, 10)) })
	t.Run("ReadError", func(t *testing.T) { testUploadReadError(t, open(t, 1<<20)) })
	t.Run("WriteError", func(t *testing.T) { testWriteError(t, open(t, 10)) })
	t.Run("List", func(t *testing.T) { testListFiles(t, open(t, 0)) })
	t.Run("BadIDs", func(t *testing.T) { testBadFileIDs(t, open(t, 10)) })
}

// upload uploads content and commits it for purpose at created.
func upload(t *testing.T, s files.Store, name string, r io.Reader, purpose string, created time.Time) files.File {
	t.Helper()
	ctx := context.Background()
	up, err := s.Upload(ctx, name, r)
	if err != nil {
		t.Fatalf("Upload %s: %v", name, err)
	}
	f, err := up.Commit(ctx, purpose, created)
	if err != nil {
		t.Fatalf("Commit %s: %v", name, err)
	}
	return f
}

// sameFile compares descriptions, their times with Equal.
func sameFile(t *testing.T, what string, got, want files.File) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Purpose != want.Purpose || got.Bytes != want.Bytes || !got.Created.Equal(want.Created) {
		t.Errorf("%s = %+v, want %+v", what, got, want)
	}
}

// content reads a file's whole content.
func content(t *testing.T, s files.Store, id string) (files.File, []byte) {
	t.Helper()
	f, r, err := s.Open(context.Background(), id)
	if err != nil {
		t.Fatalf("Open %s: %v", id, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading %s: %v", id, err)
	}
	return f, b
}

// used returns the bytes the store counts as used.
func used(t *testing.T, s files.Store) int64 {
	t.Helper()
	_, n, err := s.Usage(context.Background())
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	return n
}

func testFileLifecycle(t *testing.T, s files.Store) {
	ctx := context.Background()
	f := upload(t, s, "in.jsonl", strings.NewReader("line one\nline two\n"), "batch", epoch)
	if !files.ValidID(f.ID) || f.Name != "in.jsonl" || f.Purpose != "batch" || f.Bytes != 18 || !f.Created.Equal(epoch) {
		t.Errorf("committed file = %+v", f)
	}
	got, err := s.Get(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameFile(t, "Get", got, f)
	opened, body := content(t, s, f.ID)
	sameFile(t, "Open", opened, f)
	if string(body) != "line one\nline two\n" {
		t.Errorf("content = %q", body)
	}
	if limit, n, err := s.Usage(ctx); err != nil || limit != 100 || n != 18 {
		t.Errorf("Usage = %d, %d, %v; want 100, 18", limit, n, err)
	}
	list, err := s.List(ctx, "")
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	sameFile(t, "List", list[0], f)
	if s.Where() == "" {
		t.Error("Where is empty")
	}
	if err := s.Delete(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, f.ID); !errors.Is(err, files.ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if _, _, err := s.Open(ctx, f.ID); !errors.Is(err, files.ErrNotFound) {
		t.Errorf("Open after Delete: %v", err)
	}
	if err := s.Delete(ctx, f.ID); !errors.Is(err, files.ErrNotFound) {
		t.Errorf("Delete again: %v", err)
	}
	if n := used(t, s); n != 0 {
		t.Errorf("used after Delete = %d", n)
	}
}

// testLargeFile uploads several MiB in small reads and reads them back
// whole and from offsets on either side of every MiB.
func testLargeFile(t *testing.T, s files.Store) {
	data := make([]byte, 3<<20+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	f := upload(t, s, "big.jsonl", iotest.HalfReader(bytes.NewReader(data)), "batch", epoch)
	if f.Bytes != int64(len(data)) {
		t.Errorf("Bytes = %d, want %d", f.Bytes, len(data))
	}
	if _, body := content(t, s, f.ID); !bytes.Equal(body, data) {
		t.Fatalf("content: %d bytes, not those uploaded (%d)", len(body), len(data))
	}
	_, r, err := s.Open(context.Background(), f.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if end, err := r.Seek(0, io.SeekEnd); err != nil || end != int64(len(data)) {
		t.Errorf("Seek to the end = %d, %v; want %d", end, err, len(data))
	}
	for _, off := range []int64{0, 1, 1<<20 - 7, 1 << 20, 2<<20 + 3, 3<<20 - 1, int64(len(data)) - 5} {
		if _, err := r.Seek(off, io.SeekStart); err != nil {
			t.Fatalf("Seek(%d): %v", off, err)
		}
		buf := make([]byte, 20)
		n, err := io.ReadFull(r, buf)
		want := data[off:min(off+20, int64(len(data)))]
		if !bytes.Equal(buf[:n], want) || (err != nil && n != len(want)) {
			t.Errorf("20 bytes at %d: got %d (%v), not the uploaded ones", off, n, err)
		}
	}
	if pos, err := r.Seek(-10, io.SeekCurrent); err != nil || pos != int64(len(data))-10 {
		t.Errorf("Seek(-10, current) = %d, %v", pos, err)
	}
	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek before the start: no error")
	}
	if n, err := r.Seek(int64(len(data))+5, io.SeekStart); err != nil {
		t.Errorf("Seek past the end = %d, %v; want no error", n, err)
	} else if k, err := r.Read(make([]byte, 4)); k != 0 || err != io.EOF {
		t.Errorf("Read past the end = %d, %v; want 0, EOF", k, err)
	}
}

func testEmptyFile(t *testing.T, s files.Store) {
	f := upload(t, s, "empty.jsonl", strings.NewReader(""), "batch", epoch)
	if f.Bytes != 0 {
		t.Errorf("Bytes = %d", f.Bytes)
	}
	if _, body := content(t, s, f.ID); len(body) != 0 {
		t.Errorf("content = %q", body)
	}
}

// testFileLimit: an upload that would pass the limit is refused and
// leaves nothing behind; concurrent uploads share the room; the server's
// own files always fit.
func testFileLimit(t *testing.T, s files.Store) {
	ctx := context.Background()
	_, err := s.Upload(ctx, "big", strings.NewReader(strings.Repeat("x", 11)))
	var le *files.LimitError
	if !errors.As(err, &le) || le.Limit != 10 {
		t.Fatalf("Upload of 11 bytes into 10: %v", err)
	}
	if list, err := s.List(ctx, ""); err != nil || len(list) != 0 {
		t.Errorf("after a refused upload: List = %+v, %v", list, err)
	}
	if n := used(t, s); n != 0 {
		t.Errorf("after a refused upload: used = %d", n)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for range 4 {
		wg.Go(func() {
			up, err := s.Upload(ctx, "x", strings.NewReader("12345"))
			if err == nil {
				_, err = up.Commit(ctx, "batch", epoch)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.As(err, new(*files.LimitError)):
				refused++
			default:
				t.Errorf("concurrent upload: %v", err)
			}
		})
	}
	wg.Wait()
	if ok != 2 || refused != 2 {
		t.Errorf("of 4 uploads of 5 bytes into 10, %d fit and %d were refused; want 2 and 2", ok, refused)
	}
	f, err := s.Write(ctx, "out.jsonl", "batch_output", epoch, func(w io.Writer) error {
		_, err := io.WriteString(w, "more than the room left")
		return err
	})
	if err != nil || f.Bytes != 23 || !files.ValidID(f.ID) {
		t.Errorf("Write = %+v, %v", f, err)
	}
	if _, body := content(t, s, f.ID); string(body) != "more than the room left" {
		t.Errorf("written content = %q", body)
	}
	list, err := s.List(ctx, "batch_output")
	if err != nil || len(list) != 1 || list[0].ID != f.ID {
		t.Errorf("List(batch_output) = %+v, %v", list, err)
	}
	if n := used(t, s); n != 33 {
		t.Errorf("used = %d, want 33", n)
	}
}

func testDiscard(t *testing.T, s files.Store) {
	ctx := context.Background()
	up, err := s.Upload(ctx, "x", strings.NewReader("12345678"))
	if err != nil {
		t.Fatal(err)
	}
	if n := used(t, s); n != 8 {
		t.Errorf("used by an upload under way = %d, want 8", n)
	}
	up.Discard()
	up.Discard()
	if n := used(t, s); n != 0 {
		t.Errorf("used after Discard = %d", n)
	}
	if f, err := up.Commit(ctx, "batch", epoch); err == nil {
		t.Errorf("Commit after Discard = %+v", f)
	}
	if list, err := s.List(ctx, ""); err != nil || len(list) != 0 {
		t.Errorf("List = %+v, %v", list, err)
	}
	// The room is free again.
	upload(t, s, "y", strings.NewReader("0123456789"), "batch", epoch)
}

func testUploadReadError(t *testing.T, s files.Store) {
	ctx := context.Background()
	boom := errors.New("the client went away")
	r := io.MultiReader(strings.NewReader(strings.Repeat("x", 3000)), iotest.ErrReader(boom))
	if up, err := s.Upload(ctx, "x", r); !errors.Is(err, boom) {
		t.Fatalf("Upload = %v, %v; want the reader's error", up, err)
	}
	if n := used(t, s); n != 0 {
		t.Errorf("used after a failed upload = %d", n)
	}
	if list, err := s.List(ctx, ""); err != nil || len(list) != 0 {
		t.Errorf("List = %+v, %v", list, err)
	}
}

func testWriteError(t *testing.T, s files.Store) {
	ctx := context.Background()
	boom := errors.New("no more lines")
	_, err := s.Write(ctx, "out.jsonl", "batch_output", epoch, func(w io.Writer) error {
		io.WriteString(w, "a line\n")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("Write = %v, want fill's error", err)
	}
	if list, err := s.List(ctx, ""); err != nil || len(list) != 0 {
		t.Errorf("List after a failed Write = %+v, %v", list, err)
	}
	if n := used(t, s); n != 0 {
		t.Errorf("used after a failed Write = %d", n)
	}
}

func testListFiles(t *testing.T, s files.Store) {
	ctx := context.Background()
	later := epoch.Add(time.Hour)
	a := upload(t, s, "a", strings.NewReader("a"), "batch", epoch)
	b := upload(t, s, "b", strings.NewReader("b"), "batch", later)
	c, err := s.Write(ctx, "c", "batch_output", later, func(w io.Writer) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	// Newest first; b and c at the same time, by id descending.
	want := []files.File{b, c, a}
	if b.ID < c.ID {
		want = []files.File{c, b, a}
	}
	list, err := s.List(ctx, "")
	if err != nil || len(list) != 3 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	for i := range want {
		sameFile(t, "List()["+string(rune('0'+i))+"]", list[i], want[i])
	}
	batch, err := s.List(ctx, "batch")
	if err != nil || len(batch) != 2 || batch[0].ID != b.ID || batch[1].ID != a.ID {
		t.Errorf("List(batch) = %+v, %v", batch, err)
	}
	if none, err := s.List(ctx, "fine-tune"); err != nil || len(none) != 0 {
		t.Errorf("List(fine-tune) = %+v, %v", none, err)
	}
}

func testBadFileIDs(t *testing.T, s files.Store) {
	ctx := context.Background()
	for _, id := range []string{"", "../etc/passwd", "file-", "file-" + strings.Repeat("0", 47) + "/",
		"file-" + strings.Repeat("A", 48), "file-" + strings.Repeat("0", 48), "file-\x00"} {
		if _, err := s.Get(ctx, id); !errors.Is(err, files.ErrNotFound) {
			t.Errorf("Get(%q) = %v", id, err)
		}
		if _, _, err := s.Open(ctx, id); !errors.Is(err, files.ErrNotFound) {
			t.Errorf("Open(%q) = %v", id, err)
		}
		if err := s.Delete(ctx, id); !errors.Is(err, files.ErrNotFound) {
			t.Errorf("Delete(%q) = %v", id, err)
		}
	}
}
