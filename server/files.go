package server

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"time"

	"github.com/tpoproject/tpo/files"
	"github.com/tpoproject/tpo/guard"
	"github.com/tpoproject/tpo/openai"
)

// FileStore keeps the files of the Files API: batch input files uploaded
// by clients, and the output files of batches. *files.Dir keeps them in a
// directory, for one process; *postgres.Files in the PostgreSQL store,
// where every replica of the server finds them.
type FileStore = files.Store

// maxFormField bounds the size of a form field other than the file.
const maxFormField = 64 << 10

// fileObject is the API's description of a file.
func fileObject(f files.File) openai.FileObject {
	return openai.FileObject{ID: f.ID, Object: "file", Bytes: f.Bytes, CreatedAt: f.Created.Unix(), Filename: f.Name,
		Purpose: f.Purpose, Status: "processed"}
}

// noFiles is the answer of the Files and Batch APIs on a server without
// a files directory.
func noFiles() *apiError {
	return &apiError{Status: http.StatusNotFound, Type: typeNotFound, Code: "files_off",
		Message: "this server keeps no files (start tpo serve with --files-dir): the Files and Batch APIs are off"}
}

// handleUploadFile answers POST /v1/files: a multipart form with the
// file and its purpose, "batch".
func (s *Server) handleUploadFile(w http.ResponseWriter, r *http.Request) {
	if s.opts.Files == nil {
		guard.Hangup(w, r)
		writeError(w, noFiles())
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		guard.Hangup(w, r)
		writeError(w, &apiError{Status: http.StatusUnsupportedMediaType, Type: typeInvalidRequest, Code: "unsupported_media_type",
			Message: "upload a file as a multipart/form-data body with the fields file and purpose"})
		return
	}
	upload := func(name string, rd io.Reader) (files.Pending, error) {
		return s.opts.Files.Upload(r.Context(), name, rd)
	}
	up, purpose, aerr := readUpload(multipart.NewReader(r.Body, params["boundary"]), upload, s.opts.ReadTimeout)
	if aerr != nil {
		if aerr.Status == http.StatusRequestTimeout || aerr.Status == http.StatusRequestEntityTooLarge {
			guard.Hangup(w, r)
		}
		writeError(w, aerr)
		return
	}
	f, err := up.Commit(r.Context(), purpose, s.opts.Now())
	if err != nil {
		s.log.Error("storing an uploaded file failed", "err", err)
		writeError(w, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "files_error", Message: "storing the file failed"})
		return
	}
	s.log.Info("file uploaded", "id", f.ID, "name", f.Name, "bytes", f.Bytes)
	writeJSON(w, http.StatusOK, fileObject(f))
}

// readUpload reads an upload's form: the file part, stored with upload,
// and the purpose, which must be "batch". Other fields are skipped. On
// error nothing is kept.
func readUpload(mr *multipart.Reader, upload func(name string, r io.Reader) (files.Pending, error), readTimeout time.Duration) (up files.Pending, purpose string, aerr *apiError) {
	defer func() {
		if aerr != nil && up != nil {
			up.Discard()
			up = nil
		}
	}()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return up, "", uploadError(err, readTimeout)
		}
		switch part.FormName() {
		case "file":
			if up != nil {
				return up, "", badRequest("file", "the form has more than one file")
			}
			name := part.FileName()
			if name == "" {
				name = "upload.jsonl"
			}
			if up, err = upload(name, part); err != nil {
				return up, "", uploadError(err, readTimeout)
			}
		case "purpose":
			b, err := io.ReadAll(io.LimitReader(part, 65))
			if err != nil {
				return up, "", uploadError(err, readTimeout)
			}
			purpose = string(b)
		default:
			if n, err := io.Copy(io.Discard, io.LimitReader(part, maxFormField+1)); err != nil || n > maxFormField {
				return up, "", badRequest(part.FormName(), "form field %q is larger than %d bytes", part.FormName(), maxFormField)
			}
		}
	}
	switch {
	case up == nil:
		return up, "", badRequest("file", "the form has no file (a field named file)")
	case purpose == "":
		return up, "", badRequest("purpose", "the form has no purpose: send purpose batch")
	case purpose != "batch":
		return up, "", badRequest("purpose", "purpose %.64q: tpo serve keeps batch input files only (purpose batch)", purpose)
	}
	return up, purpose, nil
}

// uploadError is the answer to a failed upload.
func uploadError(err error, readTimeout time.Duration) *apiError {
	var le *files.LimitError
	switch {
	case errors.As(err, &le):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest, Code: "file_too_large", Param: "file", Message: le.Error()}
	case guard.BodyTimedOut(err):
		return &apiError{Status: http.StatusRequestTimeout, Type: typeInvalidRequest, Code: "request_timeout",
			Message: fmt.Sprintf("the upload did not arrive within %v", readTimeout)}
	}
	return badRequest("", "reading the multipart form: %v", err)
}

// fileOf returns the file of the request's path, or writes why not.
func (s *Server) fileOf(w http.ResponseWriter, r *http.Request) (files.File, bool) {
	if s.opts.Files == nil {
		writeError(w, noFiles())
		return files.File{}, false
	}
	id := r.PathValue("id")
	f, err := s.opts.Files.Get(r.Context(), id)
	if err != nil {
		writeError(w, s.fileError(id, err))
		return files.File{}, false
	}
	return f, true
}

// fileError is the answer for a file that could not be read.
func (s *Server) fileError(id string, err error) *apiError {
	if errors.Is(err, files.ErrNotFound) {
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "file_not_found",
			Message: fmt.Sprintf("no file with id %q", id)}
	}
	s.log.Error("reading a file failed", "id", id, "err", err)
	return &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "files_error", Message: fmt.Sprintf("reading file %s failed", id)}
}

// handleGetFile answers GET /v1/files/{id}.
func (s *Server) handleGetFile(w http.ResponseWriter, r *http.Request) {
	if f, ok := s.fileOf(w, r); ok {
		writeJSON(w, http.StatusOK, fileObject(f))
	}
}

// handleFileContent answers GET /v1/files/{id}/content.
func (s *Server) handleFileContent(w http.ResponseWriter, r *http.Request) {
	f, ok := s.fileOf(w, r)
	if !ok {
		return
	}
	_, rd, err := s.opts.Files.Open(r.Context(), f.ID)
	if err != nil {
		writeError(w, s.fileError(f.ID, err))
		return
	}
	defer rd.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Name}))
	http.ServeContent(w, r, "", f.Created, rd)
}

// handleDeleteFile answers DELETE /v1/files/{id}.
func (s *Server) handleDeleteFile(w http.ResponseWriter, r *http.Request) {
	f, ok := s.fileOf(w, r)
	if !ok {
		return
	}
	if err := s.opts.Files.Delete(r.Context(), f.ID); err != nil {
		writeError(w, s.fileError(f.ID, err))
		return
	}
	writeJSON(w, http.StatusOK, openai.FileDeleted{ID: f.ID, Object: "file", Deleted: true})
}

// handleListFiles answers GET /v1/files: newest first, optionally for
// one purpose, paged with after and limit (default 10000).
func (s *Server) handleListFiles(w http.ResponseWriter, r *http.Request) {
	if s.opts.Files == nil {
		writeError(w, noFiles())
		return
	}
	q := r.URL.Query()
	limit, aerr := listLimit(q.Get("limit"), 10000, 10000)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	list, err := s.opts.Files.List(r.Context(), q.Get("purpose"))
	if err != nil {
		writeError(w, s.fileError("", err))
		return
	}
	objs := make([]openai.FileObject, 0, len(list))
	for _, f := range list {
		objs = append(objs, fileObject(f))
	}
	if after := q.Get("after"); after != "" {
		i := 0
		for i < len(objs) && objs[i].ID != after {
			i++
		}
		objs = objs[min(i+1, len(objs)):]
	}
	writeJSON(w, http.StatusOK, page(objs, limit, func(f openai.FileObject) string { return f.ID }))
}

// listLimit reads a list's limit parameter: 1 to most, def when absent.
func listLimit(s string, def, most int) (int, *apiError) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > most {
		return 0, badRequest("limit", "limit must be a number between 1 and %d, got %q", most, s)
	}
	return n, nil
}

// page returns the first limit of objs as a list page.
func page[T any](objs []T, limit int, id func(T) string) openai.List[T] {
	l := openai.List[T]{Object: "list", Data: objs, HasMore: len(objs) > limit}
	if l.HasMore {
		l.Data = objs[:limit]
	}
	if l.Data == nil {
		l.Data = []T{}
	}
	if n := len(l.Data); n > 0 {
		first, last := id(l.Data[0]), id(l.Data[n-1])
		l.FirstID, l.LastID = &first, &last
	}
	return l
}
