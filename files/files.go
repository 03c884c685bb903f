// Package files keeps the files of tpo serve's Files API (batch input and
// output), within a size limit. Store is what the server needs of them;
// Dir keeps them in a directory, for one process (a SQLite store), and
// package postgres keeps them in the database that tpo serve replicas
// share, so that any replica serves any file. In a Dir a file's content is
// kept in ID, its description in ID.json. Uploads stream to a temporary
// file and are refused once the directory would hold more than its limit;
// files the server writes itself (a batch's output) always fit.
package files

import (
	"context"
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

// LimitError is the error of an upload that would take the files past
// their limit.
type LimitError struct {
	Limit, Used int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("the file does not fit: the stored files hold %d of the %d bytes allowed; delete files to make room", e.Used, e.Limit)
}

// Store keeps files within a size limit. Its methods are safe for
// concurrent use; every error for a file that does not exist wraps
// ErrNotFound.
type Store interface {
	// Upload stores the content of r as a file to be committed,
	// refusing it with a *LimitError, keeping nothing, when the files
	// would hold more than their limit. A failure to read r is returned
	// as it is (wrapped).
	Upload(ctx context.Context, name string, r io.Reader) (Pending, error)
	// Write stores a file the server writes itself, with the content
	// fill writes; it counts as used room but is never refused for lack
	// of it.
	Write(ctx context.Context, name, purpose string, now time.Time, fill func(w io.Writer) error) (File, error)
	// Get returns a file's description.
	Get(ctx context.Context, id string) (File, error)
	// Open returns a file's description and its content, which the
	// caller closes.
	Open(ctx context.Context, id string) (File, Content, error)
	// Delete removes a file.
	Delete(ctx context.Context, id string) error
	// List returns the files for purpose ("": all), newest first (then
	// by id, descending).
	List(ctx context.Context, purpose string) ([]File, error)
	// Usage returns the room for uploads in bytes (0: no limit) and how much
	// the files (and the uploads under way) use.
	Usage(ctx context.Context) (limit, used int64, err error)
	// Where says where the files are, for messages.
	Where() string
}

// Pending is an uploaded file not yet described: Commit or Discard it.
type Pending interface {
	// Commit keeps the upload as a file for purpose, created at now.
	Commit(ctx context.Context, purpose string, now time.Time) (File, error)
	// Discard removes the upload (it may be called after a failed
	// Commit, and more than once).
	Discard()
}

// Content is a file's content, read from the start or from any offset.
type Content = io.ReadSeekCloser

// File describes a stored file.
type File struct {
	ID      string    `json:"id"`
	Name    string    `json:"filename"`
	Purpose string    `json:"purpose"`
	Bytes   int64     `json:"bytes"`
	Created time.Time `json:"created"`
}

// Dir is a directory of files. It is safe for concurrent use by the
// goroutines of one process; processes that share a directory do not
// share its limit.
type Dir struct {
	path  string
	limit int64

	mu   sync.Mutex
	used int64 // bytes of the files and of the uploads under way
}

var _ Store = (*Dir)(nil)

// idRE matches the ids this package makes, and nothing that could name
// another path.
var idRE = regexp.MustCompile(`^file-[0-9a-f]{48}$`)

// ValidID reports whether id is one NewID could have made: every other id
// names no file.
func ValidID(id string) bool { return idRE.MatchString(id) }

// Open opens the directory at path, creating it when missing, with limit
// bytes of room for uploads (0: no limit).
func Open(path string, limit int64) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("files directory: %w", err)
	}
	d := &Dir{path: path, limit: limit}
	list, err := d.List(context.Background(), "")
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

// Where returns the directory's path.
func (d *Dir) Where() string { return d.path }

// Usage returns the room for uploads in bytes, and how much is used by
// the files and the uploads under way of this process.
func (d *Dir) Usage(context.Context) (limit, used int64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.limit, d.used, nil
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
func (d *Dir) Upload(_ context.Context, name string, r io.Reader) (Pending, error) {
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
func (up *Upload) Commit(_ context.Context, purpose string, now time.Time) (File, error) {
	if up.tmp == "" {
		return File{}, errors.New("files directory: the upload was discarded")
	}
	f := File{ID: NewID(), Name: up.name, Purpose: purpose, Bytes: up.bytes, Created: now.UTC()}
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
func (d *Dir) Write(_ context.Context, name, purpose string, now time.Time, fill func(w io.Writer) error) (File, error) {
	f := File{ID: NewID(), Name: name, Purpose: purpose, Created: now.UTC()}
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
func (d *Dir) Get(_ context.Context, id string) (File, error) {
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
func (d *Dir) Open(ctx context.Context, id string) (File, Content, error) {
	f, err := d.Get(ctx, id)
	if err != nil {
		return File{}, nil, err
	}
	r, err := os.Open(d.content(id))
	if errors.Is(err, os.ErrNotExist) {
		return File{}, nil, fmt.Errorf("file %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return File{}, nil, fmt.Errorf("file %q: %w", id, err)
	}
	return f, r, nil
}

// Delete removes a file.
func (d *Dir) Delete(ctx context.Context, id string) error {
	f, err := d.Get(ctx, id)
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
func (d *Dir) List(ctx context.Context, purpose string) ([]File, error) {
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
		f, err := d.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
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

// NewID returns a new file id: file- and 48 random hex digits.
func NewID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "file-" + hex.EncodeToString(b[:])
}
