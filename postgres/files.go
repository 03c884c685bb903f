package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tpoproject/tpo/files"
)

// DefaultChunkSize is the size of the chunks a file's content is stored in.
const DefaultChunkSize = 1 << 20

// abandonedAfter is how long an upload under way may go without a new
// chunk before the next upload removes it as abandoned (its process died):
// far longer than a live client takes to send one chunk.
const abandonedAfter = time.Hour

// discardTimeout bounds the removal of a discarded upload, which runs
// when the request that made it may be over.
const discardTimeout = 30 * time.Second

// Files keeps the files of tpo serve's Files API (batch input, output and
// error files) in the database, so that every replica of tpo serve on the
// store serves every file. A file is a row of the table files and its
// content chunks of file_chunks (bytea, DefaultChunkSize each), written
// and read a chunk at a time. The limit counts the bytes of every file
// and upload under way in the database, whichever process made them: an
// upload's chunks are counted as they arrive, under an advisory lock, so
// that replicas uploading at once never pass it together. It is safe for
// concurrent use by goroutines and processes.
type Files struct {
	db    *DB
	limit int64
	chunk int
}

var _ files.Store = (*Files)(nil)

// Files returns the store's files, with limit bytes of room for uploads
// (0: no limit).
func (db *DB) Files(limit int64) *Files {
	return &Files{db: db, limit: limit, chunk: DefaultChunkSize}
}

// Where says where the files are.
func (fs *Files) Where() string { return "the PostgreSQL store" }

// Usage returns the room for uploads and the bytes of every file and
// upload under way in the database.
func (fs *Files) Usage(ctx context.Context) (limit, used int64, err error) {
	if err := fs.db.pool.QueryRow(ctx, `SELECT coalesce(sum(bytes), 0) FROM files`).Scan(&used); err != nil {
		return 0, 0, fmt.Errorf("files: %w", err)
	}
	return fs.limit, used, nil
}

// upload is an upload under way: a row of files, not done.
type upload struct {
	fs        *Files
	id, name  string
	bytes     int64
	discarded bool
}

// Upload stores r a chunk at a time, each counted against the limit
// before it is written; it first removes the uploads that were abandoned.
func (fs *Files) Upload(ctx context.Context, name string, r io.Reader) (files.Pending, error) {
	if _, err := fs.db.pool.Exec(ctx, `DELETE FROM files WHERE NOT done AND updated < now() - $1 * interval '1 second'`,
		abandonedAfter.Seconds()); err != nil {
		return nil, fmt.Errorf("files: removing abandoned uploads: %w", err)
	}
	up := &upload{fs: fs, id: files.NewID(), name: cleanText(name)}
	if _, err := fs.db.pool.Exec(ctx, `INSERT INTO files (id, name, chunk_size, created) VALUES ($1, $2, $3, now())`,
		up.id, up.name, fs.chunk); err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	if err := up.fill(ctx, r); err != nil {
		up.Discard()
		return nil, err
	}
	return up, nil
}

// fill reads r to its end, storing each chunk.
func (up *upload) fill(ctx context.Context, r io.Reader) error {
	buf := make([]byte, up.fs.chunk)
	for n := 0; ; n++ {
		k, err := readChunk(r, buf)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the upload: %w", err)
		}
		if k > 0 {
			if aerr := up.add(ctx, n, buf[:k]); aerr != nil {
				return aerr
			}
		}
		if err != nil {
			return nil
		}
	}
}

// readChunk fills buf from r, short only at r's end (io.EOF) or error.
func readChunk(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// add counts chunk n against the limit, then stores it.
func (up *upload) add(ctx context.Context, n int, data []byte) error {
	if err := pgx.BeginFunc(ctx, up.fs.db.pool, func(tx pgx.Tx) error { return up.reserve(ctx, tx, int64(len(data))) }); err != nil {
		return err
	}
	if _, err := up.fs.db.pool.Exec(ctx, `INSERT INTO file_chunks (file_id, n, data) VALUES ($1, $2, $3)`, up.id, n, data); err != nil {
		return fmt.Errorf("files: storing the upload: %w", err)
	}
	up.bytes += int64(len(data))
	return nil
}

// reserve adds n bytes to the upload unless the files would then hold
// more than the limit. The lock (one per schema) makes the count and the
// addition one step for every process on the database.
func (up *upload) reserve(ctx context.Context, tx pgx.Tx, n int64) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('tpo files of ' || coalesce(current_schema(), ''), 0))`); err != nil {
		return fmt.Errorf("files: lock the limit: %w", err)
	}
	var used int64
	if err := tx.QueryRow(ctx, `SELECT coalesce(sum(bytes), 0) FROM files`).Scan(&used); err != nil {
		return fmt.Errorf("files: %w", err)
	}
	if limit := up.fs.limit; limit > 0 && used+n > limit {
		return &files.LimitError{Limit: limit, Used: used}
	}
	tag, err := tx.Exec(ctx, `UPDATE files SET bytes = bytes + $2, updated = now() WHERE id = $1 AND NOT done`, up.id, n)
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("files: upload %s was removed as abandoned (no chunk for %v)", up.id, abandonedAfter)
	}
	return nil
}

// Commit makes the upload a file for purpose, which every process sees.
func (up *upload) Commit(ctx context.Context, purpose string, now time.Time) (files.File, error) {
	if up.discarded {
		return files.File{}, errors.New("files: the upload was discarded")
	}
	f := files.File{ID: up.id}
	err := up.fs.db.pool.QueryRow(ctx, `UPDATE files SET done = true, purpose = $2, created = $3 WHERE id = $1 AND NOT done
		RETURNING name, purpose, bytes, created`, up.id, cleanText(purpose), now).Scan(&f.Name, &f.Purpose, &f.Bytes, &f.Created)
	if errors.Is(err, pgx.ErrNoRows) {
		err = fmt.Errorf("upload %s was removed as abandoned", up.id)
	}
	if err != nil {
		up.Discard()
		return files.File{}, fmt.Errorf("files: %w", err)
	}
	f.Created = f.Created.UTC()
	up.discarded = true // done: Discard leaves it
	return f, nil
}

// Discard removes the upload, unless it was committed.
func (up *upload) Discard() {
	if up.discarded {
		return
	}
	up.discarded = true
	ctx, cancel := context.WithTimeout(context.Background(), discardTimeout)
	defer cancel()
	// On failure the upload is removed as abandoned later.
	_, _ = up.fs.db.pool.Exec(ctx, `DELETE FROM files WHERE id = $1 AND NOT done`, up.id)
}

// Write stores a file the server writes, in one transaction: it is seen
// whole or not at all. It is never refused for lack of room.
func (fs *Files) Write(ctx context.Context, name, purpose string, now time.Time, fill func(w io.Writer) error) (files.File, error) {
	f := files.File{ID: files.NewID()}
	err := pgx.BeginFunc(ctx, fs.db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO files (id, name, chunk_size, created) VALUES ($1, $2, $3, $4)`,
			f.ID, cleanText(name), fs.chunk, now); err != nil {
			return err
		}
		cw := &chunkWriter{ctx: ctx, tx: tx, id: f.ID, buf: make([]byte, 0, fs.chunk)}
		if err := fill(cw); err != nil {
			return err
		}
		if err := cw.flush(); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `UPDATE files SET done = true, purpose = $2, bytes = $3 WHERE id = $1
			RETURNING name, purpose, bytes, created`, f.ID, cleanText(purpose), cw.total).Scan(&f.Name, &f.Purpose, &f.Bytes, &f.Created)
	})
	if err != nil {
		return files.File{}, fmt.Errorf("files: writing %s: %w", name, err)
	}
	f.Created = f.Created.UTC()
	return f, nil
}

// chunkWriter writes a file's content a chunk at a time.
type chunkWriter struct {
	ctx   context.Context
	tx    pgx.Tx
	id    string
	buf   []byte
	n     int   // chunks written
	total int64 // bytes written
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p, written = p[k:], written+k
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// flush writes the buffered chunk, if any.
func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.tx.Exec(w.ctx, `INSERT INTO file_chunks (file_id, n, data) VALUES ($1, $2, $3)`, w.id, w.n, w.buf); err != nil {
		return err
	}
	w.n++
	w.total += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

const fileColumns = `id, name, purpose, bytes, created`

func scanFile(scan func(...any) error, extra ...any) (files.File, error) {
	var f files.File
	if err := scan(append([]any{&f.ID, &f.Name, &f.Purpose, &f.Bytes, &f.Created}, extra...)...); err != nil {
		return files.File{}, err
	}
	f.Created = f.Created.UTC()
	return f, nil
}

// Get returns a file's description.
func (fs *Files) Get(ctx context.Context, id string) (files.File, error) {
	f, _, err := fs.get(ctx, id)
	return f, err
}

// get returns a file's description and the size of its chunks.
func (fs *Files) get(ctx context.Context, id string) (files.File, int64, error) {
	if !files.ValidID(id) {
		return files.File{}, 0, fmt.Errorf("file %q: %w", id, files.ErrNotFound)
	}
	var chunk int64
	f, err := scanFile(fs.db.pool.QueryRow(ctx, `SELECT `+fileColumns+`, chunk_size FROM files WHERE id = $1 AND done`, id).Scan, &chunk)
	if errors.Is(err, pgx.ErrNoRows) {
		return files.File{}, 0, fmt.Errorf("file %q: %w", id, files.ErrNotFound)
	}
	if err != nil {
		return files.File{}, 0, fmt.Errorf("file %q: %w", id, err)
	}
	return f, chunk, nil
}

// Open returns a file's description and its content, read from the
// database a chunk at a time with ctx.
func (fs *Files) Open(ctx context.Context, id string) (files.File, files.Content, error) {
	f, chunk, err := fs.get(ctx, id)
	if err != nil {
		return files.File{}, nil, err
	}
	return f, &chunkReader{ctx: ctx, fs: fs, id: id, size: f.Bytes, chunk: chunk, n: -1}, nil
}

// Delete removes a file.
func (fs *Files) Delete(ctx context.Context, id string) error {
	if !files.ValidID(id) {
		return fmt.Errorf("file %q: %w", id, files.ErrNotFound)
	}
	tag, err := fs.db.pool.Exec(ctx, `DELETE FROM files WHERE id = $1 AND done`, id)
	if err != nil {
		return fmt.Errorf("file %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("file %q: %w", id, files.ErrNotFound)
	}
	return nil
}

// List returns the files for purpose ("": all), newest first.
func (fs *Files) List(ctx context.Context, purpose string) ([]files.File, error) {
	rows, err := fs.db.pool.Query(ctx, `SELECT `+fileColumns+` FROM files WHERE done AND ($1 = '' OR purpose = $1)
		ORDER BY created DESC, id COLLATE "C" DESC`, cleanText(purpose))
	if err == nil {
		var list []files.File
		list, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (files.File, error) { return scanFile(r.Scan) })
		if err == nil {
			return list, nil
		}
	}
	return nil, fmt.Errorf("list files: %w", err)
}

// chunkReader reads a file's content, loading the chunk that holds the
// read position when it is not the one loaded.
type chunkReader struct {
	ctx         context.Context
	fs          *Files
	id          string
	size, chunk int64
	pos         int64
	n           int64 // the chunk in buf, -1 for none
	buf         []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	n := r.pos / r.chunk
	if n != r.n {
		if err := r.load(n); err != nil {
			return 0, err
		}
	}
	off := r.pos - n*r.chunk
	if off >= int64(len(r.buf)) {
		return 0, fmt.Errorf("file %q: chunk %d holds %d bytes, fewer than the file's size implies", r.id, n, len(r.buf))
	}
	k := copy(p, r.buf[off:])
	r.pos += int64(k)
	return k, nil
}

// load reads chunk n.
func (r *chunkReader) load(n int64) error {
	r.n, r.buf = -1, r.buf[:0]
	err := r.fs.db.pool.QueryRow(r.ctx, `SELECT data FROM file_chunks WHERE file_id = $1 AND n = $2`, r.id, n).Scan(&r.buf)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("file %q (deleted while read?): %w", r.id, files.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("file %q: %w", r.id, err)
	}
	r.n = n
	return nil
}

func (r *chunkReader) Seek(offset int64, whence int) (int64, error) {
	pos := offset
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		pos += r.pos
	case io.SeekEnd:
		pos += r.size
	default:
		return 0, fmt.Errorf("file %q: seek: bad whence %d", r.id, whence)
	}
	if pos < 0 {
		return 0, fmt.Errorf("file %q: seek to %d, before the start", r.id, pos)
	}
	r.pos = pos
	return pos, nil
}

func (r *chunkReader) Close() error {
	r.buf, r.n = nil, -1
	return nil
}
