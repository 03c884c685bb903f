package benchdata

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/tpoproject/tpo/internal/atomicfile"
)

// MirrorEnv is the environment variable that names a mirror replacing the
// canonical locations: a directory or an http(s) URL.
const MirrorEnv = "TPO_DATA_MIRROR"

// maxDownload bounds one download; the largest upstream file is under 2 MB.
const maxDownload = 64 << 20

// DefaultDir is the cache directory: tpo/data under the user's cache
// directory (os.UserCacheDir).
func DefaultDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the data sets: %w", err)
	}
	return filepath.Join(d, "tpo", "data"), nil
}

// Store gets converted files into a cache directory.
type Store struct {
	// Dir is the cache directory; files are kept as Dir/NAME/FILE.
	Dir string
	// Mirror, when not empty, replaces the canonical locations: a
	// directory or an http(s) URL holding NAME/FILE (a converted file)
	// or NAME/SOURCE (an upstream file, under its Source.Mirror name).
	Mirror string
	// Client fetches URLs; nil means http.DefaultClient.
	Client *http.Client
	// Log, when not nil, is told of every download.
	Log *slog.Logger
}

// Path is where the cache keeps a file.
func (s *Store) Path(r Ref) string {
	return filepath.Join(s.Dir, r.Set.Name, r.File.Name)
}

// Cached reports whether the cache holds the file, intact.
func (s *Store) Cached(r Ref) bool {
	data, err := os.ReadFile(s.Path(r))
	return err == nil && sum(data) == r.File.SHA256
}

// Get returns the path of the cached file, getting it first when the cache
// does not hold it intact. fetched reports whether it was got now.
func (s *Store) Get(ctx context.Context, r Ref) (path string, fetched bool, err error) {
	path = s.Path(r)
	if s.Cached(r) {
		return path, false, nil
	}
	data, err := s.obtain(ctx, r)
	if err != nil {
		return "", false, err
	}
	if err := writeAtomic(path, data); err != nil {
		return "", false, fmt.Errorf("%s: caching %s: %w", r, r.File.Name, err)
	}
	return path, true, nil
}

// obtain gets the converted file: from a mirror's copy of it, else by
// converting its sources.
func (s *Store) obtain(ctx context.Context, r Ref) ([]byte, error) {
	if s.Mirror != "" {
		data, err := s.fetch(ctx, s.mirrorLocation(r.Set, r.File.Name))
		switch {
		case err == nil:
			if got := sum(data); got != r.File.SHA256 {
				return nil, fmt.Errorf("%s: %s has sha256 %s, want %s: not the file tpo knows", r, s.mirrorLocation(r.Set, r.File.Name), got, r.File.SHA256)
			}
			return data, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%s: the mirror %s (%s): %w", r, s.Mirror, MirrorEnv, err)
		}
	}
	srcs := make([][]byte, len(r.File.Sources))
	for i, src := range r.File.Sources {
		data, err := s.source(ctx, r, src)
		if err != nil {
			return nil, err
		}
		srcs[i] = data
	}
	out, err := r.File.convert(srcs)
	if err != nil {
		return nil, fmt.Errorf("%s: converting: %w", r, err)
	}
	if got := sum(out); got != r.File.SHA256 {
		return nil, fmt.Errorf("%s: the converted %s has sha256 %s, want %s (a fault of tpo's conversion)", r, r.File.Name, got, r.File.SHA256)
	}
	return out, nil
}

// source gets an upstream file from the mirror, or from its canonical
// locations in turn, and checks its sha256.
func (s *Store) source(ctx context.Context, r Ref, src Source) ([]byte, error) {
	locs := src.URLs
	if s.Mirror != "" {
		locs = []string{s.mirrorLocation(r.Set, src.Mirror)}
	}
	var errs []error
	for _, loc := range locs {
		if s.Log != nil {
			s.Log.Info("downloading", "set", r.Set.Name, "from", loc)
		}
		data, err := s.fetch(ctx, loc)
		if err == nil && sum(data) != src.SHA256 {
			err = fmt.Errorf("%s has sha256 %s, want %s: not the pinned file", loc, sum(data), src.SHA256)
		}
		if err == nil {
			return data, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, err)
	}
	if s.Mirror != "" {
		return nil, fmt.Errorf("%s: the mirror %s (%s) has neither %s nor its source:\n%w", r, s.Mirror, MirrorEnv, r.File.Name, indent(errs))
	}
	return nil, fmt.Errorf("%s: cannot download the source of %s:\n%w\nWithout network, set %s to a directory or URL holding a copy laid out as NAME/FILE, as this project's ../shared/data is",
		r, r.File.Name, indent(errs), MirrorEnv)
}

// indent joins errors one a line, indented.
func indent(errs []error) error {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = "  " + e.Error()
	}
	return errors.New(strings.Join(lines, "\n"))
}

// mirrorLocation is where the mirror keeps a set's file.
func (s *Store) mirrorLocation(set Set, name string) string {
	if isURL(s.Mirror) {
		return strings.TrimRight(s.Mirror, "/") + "/" + url.PathEscape(set.Name) + "/" + url.PathEscape(name)
	}
	return filepath.Join(s.Mirror, set.Name, name)
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// fetch reads a URL or a file. A file or URL that does not exist (404) is
// an error wrapping fs.ErrNotExist.
func (s *Store) fetch(ctx context.Context, loc string) ([]byte, error) {
	if !isURL(loc) {
		return os.ReadFile(loc)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
	if err != nil {
		return nil, err
	}
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("GET %s: %w", loc, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, notFoundError{fmt.Sprintf("GET %s: %s", loc, resp.Status)}
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", loc, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDownload+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", loc, err)
	}
	if len(data) > maxDownload {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", loc, maxDownload)
	}
	return data, nil
}

// notFoundError is a 404: it counts as fs.ErrNotExist.
type notFoundError struct{ msg string }

func (e notFoundError) Error() string        { return e.msg }
func (e notFoundError) Is(target error) bool { return target == fs.ErrNotExist }

func sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// writeAtomic writes data to path (making its directory) through a
// temporary file, so that a reader never sees half a file.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, data)
}
