package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/files"
	"github.com/tpoproject/tpo/openai"
)

// upload posts content as a batch input file and returns its id.
func (e *testEnv) upload(t *testing.T, content string) string {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "requests.jsonl")
	io.WriteString(fw, content)
	mw.WriteField("purpose", "batch")
	mw.Close()
	resp, err := http.Post(e.ts.URL+"/v1/files", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var f openai.FileObject
	decodeJSON(t, resp, http.StatusOK, &f)
	if f.Object != "file" || f.Purpose != "batch" || f.Bytes != int64(len(content)) || f.Filename != "requests.jsonl" {
		t.Fatalf("uploaded %+v", f)
	}
	return f.ID
}

// chatLines returns n lines of chat completion requests.
func chatLines(n int, body func(i int) string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"custom_id":"req-%d","method":"POST","url":"/v1/chat/completions","body":%s}`+"\n", i, body(i))
	}
	return b.String()
}

func (e *testEnv) createBatch(t *testing.T, fileID, endpoint string) openai.Batch {
	t.Helper()
	var b openai.Batch
	decodeJSON(t, e.postTo(t, "/v1/batches", `{"input_file_id":"`+fileID+`","endpoint":"`+endpoint+`","completion_window":"24h","metadata":{"job":"nightly"}}`), http.StatusOK, &b)
	return b
}

func pollBatch(t *testing.T, ts *httptest.Server, id string, cond func(openai.Batch) bool) openai.Batch {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var b openai.Batch
		decodeJSON(t, get(t, ts.URL+"/v1/batches/"+id, ""), http.StatusOK, &b)
		if cond(b) {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s stayed %s (%+v)", id, b.Status, b.RequestCounts)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// outputLines downloads a file of output lines, by custom_id.
func outputLines(t *testing.T, ts *httptest.Server, id *string) map[string]openai.BatchOutput {
	t.Helper()
	out := map[string]openai.BatchOutput{}
	if id == nil {
		return out
	}
	resp := get(t, ts.URL+"/v1/files/"+*id+"/content", "")
	for _, line := range strings.Split(strings.TrimSpace(readAll(t, resp)), "\n") {
		var o openai.BatchOutput
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		out[o.CustomID] = o
	}
	return out
}

// TestBatch: 20 requests through files and batches to the output file,
// one of them refused as the endpoint would (in the error file); every
// optimization is a run of kind batch in the store.
func TestBatch(t *testing.T) {
	e := newTestEnv(t, nil)
	content := chatLines(20, func(i int) string {
		if i == 7 {
			return `{"model":"m","messages":[{"role":"user","content":"q7"}],"tpo":{"width":999}}`
		}
		return fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"question %d"}],"tpo":{"width":2,"depth":1}}`, i)
	})
	fileID := e.upload(t, content)
	b := e.createBatch(t, fileID, "/v1/chat/completions")
	if b.Status != "validating" || b.InputFileID != fileID || b.ExpiresAt == nil || b.Metadata["job"] != "nightly" || !strings.HasPrefix(b.ID, "batch_") {
		t.Errorf("created %+v", b)
	}
	done := pollBatch(t, e.ts, b.ID, func(b openai.Batch) bool { return batchFinal(b.Status) })
	if done.Status != "completed" || done.RequestCounts != (openai.BatchRequestCounts{Total: 20, Completed: 19, Failed: 1}) ||
		done.OutputFileID == nil || done.ErrorFileID == nil || done.CompletedAt == nil || done.InProgressAt == nil || done.FinalizingAt == nil {
		t.Fatalf("done %+v", done)
	}
	out := outputLines(t, e.ts, done.OutputFileID)
	if len(out) != 19 {
		t.Fatalf("%d output lines", len(out))
	}
	for i := range 20 {
		if i == 7 {
			continue
		}
		o := out[fmt.Sprintf("req-%d", i)]
		var c completion
		if o.Response == nil || o.Response.StatusCode != 200 || o.Error != nil || json.Unmarshal(o.Response.Body, &c) != nil {
			t.Fatalf("line %d: %+v", i, o)
		}
		if c.Object != "chat.completion" || len(c.Choices) != 1 || c.Choices[0].Message.Content == "" || c.TPO == nil || c.TPO.Width != 2 || c.TPO.Requests != 4 {
			t.Errorf("line %d body %s", i, o.Response.Body)
		}
	}
	errs := outputLines(t, e.ts, done.ErrorFileID)
	var body errorBody
	if o := errs["req-7"]; len(errs) != 1 || o.Response == nil || o.Response.StatusCode != 400 || json.Unmarshal(o.Response.Body, &body) != nil || *body.Error.Param != "tpo.width" {
		t.Errorf("error lines %+v", errs)
	}
	var batchRuns int
	for _, r := range e.store.Runs() {
		if r.Kind == "batch" && r.Finished != nil {
			batchRuns++
			if items := e.store.Items(r.ID); len(items) != 19 {
				t.Errorf("run %s has %d items", r.ID, len(items))
			}
		}
	}
	if batchRuns != 1 {
		t.Errorf("%d finished batch runs, want 1", batchRuns)
	}
	var list openai.List[openai.Batch]
	decodeJSON(t, get(t, e.ts.URL+"/v1/batches?limit=5", ""), http.StatusOK, &list)
	if len(list.Data) != 1 || list.Data[0].ID != b.ID || list.HasMore {
		t.Errorf("list %+v", list)
	}
}

// TestBatchInvalidFile: a file with malformed lines fails validation,
// each problem naming its line.
func TestBatchInvalidFile(t *testing.T) {
	e := newTestEnv(t, nil)
	content := `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}
not json
{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}
{"custom_id":"c","method":"GET","url":"/v1/chat/completions","body":{}}
{"custom_id":"d","method":"POST","url":"/v1/embeddings","body":{}}
`
	b := e.createBatch(t, e.upload(t, content), "/v1/chat/completions")
	done := pollBatch(t, e.ts, b.ID, func(b openai.Batch) bool { return batchFinal(b.Status) })
	if done.Status != "failed" || done.FailedAt == nil || done.Errors == nil || len(done.Errors.Data) != 4 {
		t.Fatalf("done %+v", done)
	}
	for i, want := range []struct {
		line int
		code string
	}{{2, "invalid_json_line"}, {3, "duplicate_custom_id"}, {4, "invalid_method"}, {5, "mismatched_url"}} {
		if e := done.Errors.Data[i]; *e.Line != want.line || e.Code != want.code {
			t.Errorf("error %d = %+v (line %d), want line %d %s", i, e, *e.Line, want.line, want.code)
		}
	}
}

// TestBatchCreateErrors: what POST /v1/batches refuses.
func TestBatchCreateErrors(t *testing.T) {
	e := newTestEnv(t, nil)
	fileID := e.upload(t, chatLines(1, func(int) string { return `{}` }))
	tests := []struct {
		body  string
		param string
	}{
		{`{"endpoint":"/v1/chat/completions","completion_window":"24h"}`, "input_file_id"},
		{`{"input_file_id":"file-nope","endpoint":"/v1/chat/completions","completion_window":"24h"}`, "input_file_id"},
		{`{"input_file_id":"` + fileID + `","endpoint":"/v1/embeddings","completion_window":"24h"}`, "endpoint"},
		{`{"input_file_id":"` + fileID + `","endpoint":"/v1/responses","completion_window":"1h"}`, "completion_window"},
	}
	for _, tt := range tests {
		var b errorBody
		decodeJSON(t, e.postTo(t, "/v1/batches", tt.body), http.StatusBadRequest, &b)
		if b.Error.Param == nil || *b.Error.Param != tt.param {
			t.Errorf("%s: %+v", tt.body, b.Error)
		}
	}
	var b errorBody
	decodeJSON(t, get(t, e.ts.URL+"/v1/batches/batch_nope", ""), http.StatusNotFound, &b)
}

// TestBatchCancel: a batch cancelled midway is cancelled, with what
// finished in its output file and the rest in its error file.
func TestBatchCancel(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.BatchConcurrency = 1 })
	release := make(chan struct{})
	e.up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
		if mentions(req, "question 2") {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	defer close(release)
	content := chatLines(5, func(i int) string {
		return fmt.Sprintf(`{"messages":[{"role":"user","content":"question %d"}],"tpo":{"mode":"bon","width":2}}`, i)
	})
	b := e.createBatch(t, e.upload(t, content), "/v1/chat/completions")
	pollBatch(t, e.ts, b.ID, func(b openai.Batch) bool { return b.RequestCounts.Completed == 2 })
	var c openai.Batch
	decodeJSON(t, e.postTo(t, "/v1/batches/"+b.ID+"/cancel", ``), http.StatusOK, &c)
	if c.Status != "cancelling" || c.CancellingAt == nil {
		t.Errorf("cancel answered %+v", c)
	}
	done := pollBatch(t, e.ts, b.ID, func(b openai.Batch) bool { return batchFinal(b.Status) })
	if done.Status != "cancelled" || done.CancelledAt == nil || done.RequestCounts.Completed != 2 {
		t.Fatalf("done %+v", done)
	}
	out, errs := outputLines(t, e.ts, done.OutputFileID), outputLines(t, e.ts, done.ErrorFileID)
	if len(out) != 2 || len(errs) != 3 || errs["req-4"].Error == nil || errs["req-4"].Error.Code != "batch_cancelled" || errs["req-4"].Response != nil {
		t.Errorf("output %v, errors %v", out, errs)
	}
}

// TestBatchResumes: a batch stopped by a shutdown midway is continued by
// the next server on the same store and files: the requests it had
// finished are not optimized again.
func TestBatchResumes(t *testing.T) {
	first := tpo.Owner{Host: "box", PID: 1, Started: time.Unix(1, 0)}
	e := newTestEnv(t, func(o *Options) { o.BatchConcurrency = 1; o.Owner = &first })
	var calls atomic.Int32
	e.up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
		calls.Add(1)
		if mentions(req, "question 3") {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	content := chatLines(6, func(i int) string {
		return fmt.Sprintf(`{"messages":[{"role":"user","content":"question %d"}],"tpo":{"mode":"bon","width":2}}`, i)
	})
	b := e.createBatch(t, e.upload(t, content), "/v1/chat/completions")
	pollBatch(t, e.ts, b.ID, func(b openai.Batch) bool { return b.RequestCounts.Completed == 3 })
	if err := e.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var stopped openai.Batch
	decodeJSON(t, get(t, e.ts.URL+"/v1/batches/"+b.ID, ""), http.StatusOK, &stopped)
	if stopped.Status != "in_progress" {
		t.Fatalf("after shutdown: %+v", stopped)
	}

	// The next server: same store and files, another process.
	opts := e.opts
	second := tpo.Owner{Host: "box", PID: 2, Started: time.Unix(2, 0)}
	opts.Owner = &second
	e.up.block = func(ctx context.Context, call int, req tpo.GenerateRequest) error {
		calls.Add(1)
		return nil
	}
	before := calls.Load()
	srv2, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewServer(srv2)
	defer ts2.Close()
	_, resumed, err := srv2.ResumeJobs(context.Background(), func(o tpo.Owner) bool { return o.PID == 2 })
	if err != nil || len(resumed) != 1 || resumed[0] != b.ID {
		t.Fatalf("ResumeJobs = %v, %v", resumed, err)
	}
	done := pollBatch(t, ts2, b.ID, func(b openai.Batch) bool { return batchFinal(b.Status) })
	if done.Status != "completed" || done.RequestCounts != (openai.BatchRequestCounts{Total: 6, Completed: 6}) {
		t.Fatalf("done %+v", done)
	}
	if n := calls.Load() - before; n != 3 {
		t.Errorf("the resumed batch made %d policy calls, want 3 (one per request left)", n)
	}
	if out := outputLines(t, ts2, done.OutputFileID); len(out) != 6 {
		t.Errorf("%d output lines", len(out))
	}
}

// TestBatchResponses: a batch of /v1/responses requests; its output
// bodies are response objects.
func TestBatchResponses(t *testing.T) {
	e := newTestEnv(t, nil)
	content := `{"custom_id":"r1","method":"POST","url":"/v1/responses","body":{"model":"m","input":"one","tpo":{"mode":"bon","width":2}}}
{"custom_id":"r2","method":"POST","url":"/v1/responses","body":{"model":"m","input":"two","stream":true}}
`
	b := e.createBatch(t, e.upload(t, content), "/v1/responses")
	done := pollBatch(t, e.ts, b.ID, func(b openai.Batch) bool { return batchFinal(b.Status) })
	out, errs := outputLines(t, e.ts, done.OutputFileID), outputLines(t, e.ts, done.ErrorFileID)
	var r response
	if o := out["r1"]; o.Response == nil || json.Unmarshal(o.Response.Body, &r) != nil || r.Object != "response" || r.Status != "completed" || r.text() == "" {
		t.Errorf("r1: %+v", out["r1"])
	}
	if o := errs["r2"]; o.Response == nil || o.Response.StatusCode != 400 || !strings.Contains(string(o.Response.Body), "cannot be streamed") {
		t.Errorf("r2: %+v", errs["r2"])
	}
}

// TestFiles: upload, describe, list, read, delete; the limit; what the
// upload refuses.
func TestFiles(t *testing.T) {
	e := newTestEnv(t, nil)
	id := e.upload(t, "{}\n")
	var f openai.FileObject
	decodeJSON(t, get(t, e.ts.URL+"/v1/files/"+id, ""), http.StatusOK, &f)
	if f.ID != id || f.Status != "processed" {
		t.Errorf("file %+v", f)
	}
	var list openai.List[openai.FileObject]
	decodeJSON(t, get(t, e.ts.URL+"/v1/files?purpose=batch", ""), http.StatusOK, &list)
	if len(list.Data) != 1 || list.Data[0].ID != id {
		t.Errorf("list %+v", list)
	}
	if body := readAll(t, get(t, e.ts.URL+"/v1/files/"+id+"/content", "")); body != "{}\n" {
		t.Errorf("content %q", body)
	}
	req, _ := http.NewRequest(http.MethodDelete, e.ts.URL+"/v1/files/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var del openai.FileDeleted
	decodeJSON(t, resp, http.StatusOK, &del)
	if !del.Deleted || del.ID != id {
		t.Errorf("deleted %+v", del)
	}
	var b errorBody
	decodeJSON(t, get(t, e.ts.URL+"/v1/files/"+id, ""), http.StatusNotFound, &b)

	post := func(ct string, body string, origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/v1/files", strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if origin != "" {
			req.Header.Set("Origin", origin)
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	form := func(purpose, content string) (string, string) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		fw, _ := mw.CreateFormFile("file", "x.jsonl")
		io.WriteString(fw, content)
		if purpose != "" {
			mw.WriteField("purpose", purpose)
		}
		mw.Close()
		return mw.FormDataContentType(), body.String()
	}
	ct, body := form("fine-tune", "{}")
	decodeJSON(t, post(ct, body, ""), http.StatusBadRequest, &b)
	if *b.Error.Param != "purpose" {
		t.Errorf("purpose: %+v", b.Error)
	}
	ct, body = form("batch", strings.Repeat("x", 2<<20))
	decodeJSON(t, post(ct, body, ""), http.StatusRequestEntityTooLarge, &b)
	if *b.Error.Code != "file_too_large" {
		t.Errorf("too large: %+v", b.Error)
	}
	decodeJSON(t, post("application/json", `{}`, ""), http.StatusUnsupportedMediaType, &b)
	ct, body = form("batch", "{}")
	decodeJSON(t, post(ct, body, "https://evil.example"), http.StatusForbidden, &b)
	if n, _ := e.opts.Files.List(context.Background(), ""); len(n) != 0 {
		t.Errorf("files kept after refused uploads: %v", n)
	}
}

func TestReadBatchInput(t *testing.T) {
	long := `{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"p":"` + strings.Repeat("y", 200) + `"}}`
	in := "\n" + `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"n":1}}` + "\r\n\n" + long + "\n" +
		`{"custom_id":"b\u0007","method":"POST","url":"/v1/chat/completions","body":{}}` + "\n" +
		`{"custom_id":"c","method":"POST","url":"/v1/chat/completions","body":[]}`
	reqs, probs, err := readBatchInput(strings.NewReader(in), "/v1/chat/completions", 150)
	if err != nil || reqs != nil || len(probs) != 3 {
		t.Fatalf("got %v %+v %v", reqs, probs, err)
	}
	for i, want := range []int{4, 5, 6} {
		if *probs[i].Line != want {
			t.Errorf("problem %d on line %d, want %d: %+v", i, *probs[i].Line, want, probs[i])
		}
	}
	reqs, probs, err = readBatchInput(strings.NewReader(in[:strings.Index(in, long)]), "/v1/chat/completions", 150)
	if err != nil || len(probs) != 0 || len(reqs) != 1 || reqs[0].Line != 2 || reqs[0].CustomID != "a" {
		t.Errorf("got %+v %+v %v", reqs, probs, err)
	}
}

func FuzzReadBatchInput(f *testing.F) {
	f.Add(`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}` + "\n")
	f.Add("\n\n{}\n[]\nnull\n")
	f.Add(`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}` + "\n" + `{"custom_id":"a"}`)
	f.Fuzz(func(t *testing.T, in string) {
		reqs, probs, err := readBatchInput(strings.NewReader(in), "/v1/chat/completions", 256)
		if err != nil {
			t.Fatalf("reading from memory failed: %v", err)
		}
		if (len(reqs) == 0) == (len(probs) == 0) {
			t.Fatalf("%d requests and %d problems: want one or the other", len(reqs), len(probs))
		}
		seen := map[string]bool{}
		for _, r := range reqs {
			if seen[r.CustomID] || r.Method != "POST" || !isObject(r.Body) || r.Line < 1 {
				t.Fatalf("accepted %+v", r)
			}
			seen[r.CustomID] = true
		}
	})
}

// FuzzReadUpload: whatever the multipart body, an upload is refused with
// a 4xx or kept whole, and nothing is left of a refused one.
func FuzzReadUpload(f *testing.F) {
	f.Add("--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n{}\r\n--B\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--B--\r\n")
	f.Add("--B\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--B--\r\n")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, body string) {
		var kept, discarded int
		upload := func(name string, r io.Reader) (files.Pending, error) {
			if _, err := io.Copy(io.Discard, r); err != nil {
				return nil, err
			}
			kept++
			return &fakeUpload{discarded: &discarded}, nil
		}
		up, purpose, aerr := readUpload(multipart.NewReader(strings.NewReader(body), "B"), upload, time.Second)
		if aerr != nil {
			if aerr.Status < 400 || aerr.Status >= 500 {
				t.Fatalf("error status %d", aerr.Status)
			}
			if up != nil || kept != discarded {
				t.Fatalf("refused upload kept: %d uploads, %d discarded", kept, discarded)
			}
			return
		}
		if up == nil || purpose != "batch" || kept != 1 || discarded != 0 {
			t.Fatalf("accepted: %v %q, %d uploads", up, purpose, kept)
		}
	})
}

type fakeUpload struct{ discarded *int }

func (f *fakeUpload) Commit(context.Context, string, time.Time) (files.File, error) {
	return files.File{}, nil
}
func (f *fakeUpload) Discard() { *f.discarded++ }
