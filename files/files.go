// Package files keeps the files of tpo serve's Files API (batch input and
// output) in a directory, within a size limit: a file's content is kept
// in ID, its description in ID.json. Uploads stream to a temporary file
// and are refused once the directory would hold more than its limit;
// files the server writes itself (a batch's output) always fit.
package files

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tpoproject/tpo/internal/atomicfile"
)

// ErrNotFound is wrapped by the errors for a file that does not exist.
var ErrNotFound = errors.New("no such file")

// LimitError is the error of an upload that would take the directory
// past its limit.
type LimitError struct {
	Limit, Used int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("the file does not fit: the files directory holds %d of its %d bytes; delete files to make room", e.Used, e.Limit)
}

// File describes a stored file.
type File struct {
	ID      string    `json:"id"`
	Name    string    `json:"filename"`
	Purpose string    `json:"purpose"`
	Bytes   int64     `json:"bytes"`
	Created time.Time `json:"created"`
}

// Dir is a directory of files. It is safe for concurrent use by the
// goroutines of one process.
type Dir struct {
	path  string
	limit int64

	mu   sync.Mutex
	used int64 // bytes of the files and of the uploads under way
}

// idRE matches the ids this package makes, and nothing that could name
// another path.
var idRE = regexp.MustCompile(`^file-[0-9a-f]{48}$`)

// Open opens the directory at path, creating it when missing, with limit
// bytes of room for uploads (0: none).
func Open(path string, limit int64) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("files directory: %w", err)
	}
	d := &Dir{path: path, limit: limit}
	list, err := d.List("")
	if err != nil {
		return nil, err
	}
	for _, f := range list {
		d.used += f.Bytes
	}
	return d, nil
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

// Limit returns the room for uploads in bytes, and how much is used.
func (d *Dir) Limit() (limit, used int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.limit, d.used
}

// Upload is a file being uploaded: its content is written, its
// description not yet. Commit or Discard it.
type Upload struct {
	d     *Dir
	tmp   string
	name  string
	bytes int64
}

// Upload writes r to a temporary file of the directory. It fails with a
// *LimitError, keeping nothing, when the directory would hold more than
// its limit.
func (d *Dir) Upload(name string, r io.Reader) (*Upload, error) {
	tmp, err := os.CreateTemp(d.path, ".upload-*")
	if err != nil {
		return nil, fmt.Errorf("files directory: %w", err)
	}
	up := &Upload{d: d, tmp: tmp.Name(), name: name}
	_, err = io.Copy(tmp, &budgetReader{r: r, up: up})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		up.Discard()
		return nil, err
	}
	return up, nil
}

// budgetReader counts what an upload read against the directory's room.
type budgetReader struct {
	r  io.Reader
	up *Upload
}

func (b *budgetReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		if lerr := b.up.d.reserve(int64(n)); lerr != nil {
			return 0, lerr
		}
		b.up.bytes += int64(n)
	}
	return n, err
}

// reserve counts n more bytes as used, unless that passes the limit.
func (d *Dir) reserve(n int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.limit > 0 && d.used+n > d.limit {
		return &LimitError{Limit: d.limit, Used: d.used}
	}
	d.used += n
	return nil
}

func (d *Dir) release(n int64) {
	d.mu.Lock()
	d.used -= n
	d.mu.Unlock()
}

// Commit keeps the upload as a file for purpose.
func (up *Upload) Commit(purpose string, now time.Time) (File, error) {
	f := File{ID: newID(), Name: up.name, Purpose: purpose, Bytes: up.bytes, Created: now.UTC()}
	if err := up.d.describe(f); err != nil {
		up.Discard()
		return File{}, err
	}
	if err := os.Rename(up.tmp, up.d.content(f.ID)); err != nil {
		os.Remove(up.d.meta(f.ID))
		up.Discard()
		return File{}, fmt.Errorf("files directory: %w", err)
	}
	up.tmp = ""
	return f, nil
}

// Discard removes the upload.
func (up *Upload) Discard() {
	if up.tmp != "" {
		os.Remove(up.tmp)
		up.d.release(up.bytes)
		up.tmp, up.bytes = "", 0
	}
}

// Write stores a file the server writes itself, with the content fill
// writes; it counts as used room but is never refused for lack of it.
func (d *Dir) Write(name, purpose string, now time.Time, fill func(w io.Writer) error) (File, error) {
	f := File{ID: newID(), Name: name, Purpose: purpose, Created: now.UTC()}
	err := atomicfile.Write(d.content(f.ID), func(w io.Writer) error {
		cw := &countWriter{w: w}
		err := fill(cw)
		f.Bytes = cw.n
		return err
	})
	if err != nil {
		return File{}, fmt.Errorf("files directory: %w", err)
	}
	if err := d.describe(f); err != nil {
		os.Remove(d.content(f.ID))
		return File{}, err
	}
	d.mu.Lock()
	d.used += f.Bytes
	d.mu.Unlock()
	return f, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// describe writes a file's description.
func (d *Dir) describe(f File) error {
	data, err := json.Marshal(f)
	if err == nil {
		err = atomicfile.WriteBytes(d.meta(f.ID), data)
	}
	if err != nil {
		return fmt.Errorf("files directory: %w", err)
	}
	return nil
}

// Get returns a file's description.
func (d *Dir) Get(id string) (File, error) {
	if !idRE.MatchString(id) {
		return File{}, fmt.Errorf("file %q: %w", id, ErrNotFound)
	}
	data, err := os.ReadFile(d.meta(id))
	if errors.Is(err, os.ErrNotExist) {
		return File{}, fmt.Errorf("file %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return File{}, fmt.Errorf("file %q: %w", id, err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return File{}, fmt.Errorf("file %q: its description: %w", id, err)
	}
	return f, nil
}

// Open returns a file's description and its content, which the caller
// closes.
func (d *Dir) Open(id string) (File, *os.File, error) {
	f, err := d.Get(id)
	if err != nil {
		return File{}, nil, err
	}
	r, err := os.Open(d.content(id))
	if err != nil {
		return File{}, nil, fmt.Errorf("file %q: %w", id, err)
	}
	return f, r, nil
}

// Delete removes a file.
func (d *Dir) Delete(id string) error {
	f, err := d.Get(id)
	if err != nil {
		return err
	}
	if err := os.Remove(d.content(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("file %q: %w", id, err)
	}
	if err := os.Remove(d.meta(id)); err != nil {
		return fmt.Errorf("file %q: %w", id, err)
	}
	d.release(f.Bytes)
	return nil
}

// List returns the files for purpose ("": all), newest first.
func (d *Dir) List(purpose string) ([]File, error) {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("files directory: %w", err)
	}
	var out []File
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !idRE.MatchString(id) {
			continue
		}
		f, err := d.Get(id)
		if err != nil {
			return nil, err
		}
		if purpose == "" || f.Purpose == purpose {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b File) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out, nil
}

func (d *Dir) content(id string) string { return filepath.Join(d.path, id) }
func (d *Dir) meta(id string) string    { return filepath.Join(d.path, id+".json") }

func newID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "file-" + hex.EncodeToString(b[:])
}
