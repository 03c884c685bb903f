package benchdata

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tpoproject/tpo/internal/shareddata"
)

// sharedData returns ../shared/data beside the repository (see
// internal/shareddata).
func sharedData(t *testing.T) string { return shareddata.Path(t, 1, "") }

func TestWriteStringLikePython(t *testing.T) {
	// What json.dumps(s, ensure_ascii=False) writes.
	tests := []struct{ in, want string }{
		{`plain`, `"plain"`},
		{"quote \" backslash \\ slash /", `"quote \" backslash \\ slash /"`},
		{"new\nline\r\ttab\b\f", `"new\nline\r\ttab\b\f"`},
		{"\x01\x1f\x7f", `"\u0001\u001f` + "\x7f" + `"`},
		{"é € 😀 \u2028 <>&", "\"é € 😀 \u2028 <>&\""},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		writeString(&b, tt.in)
		if b.String() != tt.want {
			t.Errorf("writeString(%q) = %s, want %s", tt.in, b.String(), tt.want)
		}
	}
	var w lineWriter
	w.object(field{"id", "1"}, field{"level", 3})
	if got := w.b.String(); got != "{\"id\": \"1\", \"level\": 3}\n" {
		t.Errorf("object = %q", got)
	}
}

// TestConvertSharedOriginals converts the upstream files kept in
// ../shared/data and checks the result against the pinned sha256 and the
// converted file kept beside them, byte for byte.
func TestConvertSharedOriginals(t *testing.T) {
	dir := sharedData(t)
	for _, s := range Sets() {
		for _, f := range s.Files {
			r := Ref{Set: s, File: f}
			t.Run(r.String(), func(t *testing.T) {
				var srcs [][]byte
				for _, src := range f.Sources {
					data, err := os.ReadFile(filepath.Join(dir, s.Name, src.Mirror))
					if errors.Is(err, os.ErrNotExist) {
						t.Skipf("../shared/data has no %s/%s (tested with a small fixture instead)", s.Name, src.Mirror)
					}
					if err != nil {
						t.Fatal(err)
					}
					if got := sum(data); got != src.SHA256 {
						t.Fatalf("%s/%s has sha256 %s, want %s", s.Name, src.Mirror, got, src.SHA256)
					}
					srcs = append(srcs, data)
				}
				out, err := f.convert(srcs)
				if err != nil {
					t.Fatal(err)
				}
				if got := sum(out); got != f.SHA256 {
					t.Errorf("converted sha256 %s, want %s", got, f.SHA256)
				}
				if n := bytes.Count(out, []byte{'\n'}); n != f.Rows {
					t.Errorf("%d rows, want %d", n, f.Rows)
				}
				if kept, err := os.ReadFile(filepath.Join(dir, s.Name, f.Name)); err == nil && !bytes.Equal(kept, out) {
					t.Errorf("differs from ../shared/data/%s/%s", s.Name, f.Name)
				}
			})
		}
	}
}

func TestConvertBaselines(t *testing.T) {
	// Arena-Hard's answers come sorted by uid; the converted file follows
	// the questions' order and takes the last message's answer.
	questions := `{"uid": "q2", "category": "c", "cluster": "k", "prompt": "second"}
{"uid": "q1", "category": "c", "cluster": "k", "prompt": "first"}
`
	answers := `{"uid": "q1", "ans_id": "a", "model": "gpt-4-0314", "messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": {"answer": "one"}}], "tstamp": 1.5}
{"uid": "q2", "ans_id": "b", "model": "gpt-4-0314", "messages": [{"role": "user", "content": "second"}, {"role": "assistant", "content": {"answer": "two \"2\""}}], "tstamp": 1.5}
`
	out, err := convertArenaBaseline([][]byte{[]byte(questions), []byte(answers)})
	want := `{"question_id": "q2", "model": "gpt-4-0314", "answer": "two \"2\""}
{"question_id": "q1", "model": "gpt-4-0314", "answer": "one"}
`
	if err != nil || string(out) != want {
		t.Errorf("arena baseline:\n%s%v\nwant\n%s", out, err, want)
	}
	if _, err := convertArenaBaseline([][]byte{[]byte(questions), []byte(answers[:strings.Index(answers, "\n")+1])}); err == nil ||
		!strings.Contains(err.Error(), "question q2: no answer of the baseline") {
		t.Errorf("missing answer: %v", err)
	}
	outputs := `[{"dataset": "helpful_base", "instruction": "Hi?", "output": "Hello.", "generator": "gpt4_1106_preview"},
{"dataset": "koala", "instruction": "Bye?", "output": "Ciao\n", "generator": "gpt4_1106_preview"}]`
	out, err = convertAlpacaBaseline([][]byte{[]byte(outputs)})
	want = `{"id": "0", "model": "gpt4_1106_preview", "answer": "Hello."}
{"id": "1", "model": "gpt4_1106_preview", "answer": "Ciao\n"}
`
	if err != nil || string(out) != want {
		t.Errorf("alpaca baseline:\n%s%v\nwant\n%s", out, err, want)
	}
}

func TestConvertAlpacaFromTatsuLab(t *testing.T) {
	// The instructions come from tatsu-lab/alpaca_eval's own file, the
	// reference outputs of AlpacaEval 2 (a JSON array in the set's order),
	// like the baseline: the id is the position.
	outputs := `[{"dataset": "helpful_base", "instruction": "Hi \"you\"?", "output": "Hello.", "generator": "gpt4_1106_preview"},
{"dataset": "koala", "instruction": "Bye?\n", "output": "Ciao", "generator": "gpt4_1106_preview"}]`
	out, err := convertAlpaca([][]byte{[]byte(outputs)})
	want := `{"id": "0", "prompt": "Hi \"you\"?", "dataset": "helpful_base"}
{"id": "1", "prompt": "Bye?\n", "dataset": "koala"}
`
	if err != nil || string(out) != want {
		t.Errorf("alpaca_eval:\n%s%v\nwant\n%s", out, err, want)
	}
	if _, err := convertAlpaca([][]byte{[]byte(`{"instruction": "not an array"}`)}); err == nil {
		t.Error("a JSON object converted")
	}
	// Every location is tatsu-lab/alpaca_eval's, at a pinned commit.
	r, _ := Lookup("alpaca_eval")
	for _, src := range r.File.Sources {
		for _, u := range src.URLs {
			if !strings.HasPrefix(u, rawGitHub+"tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20/") {
				t.Errorf("alpaca_eval from %s, not tatsu-lab/alpaca_eval at a pinned commit", u)
			}
		}
	}
}

func TestLookup(t *testing.T) {
	for name, want := range map[string]string{
		"math500": "math500.jsonl", "arena_hard_v0.1": "question.jsonl", "arena_hard_v0.1:baseline": "baseline_gpt-4-0314.jsonl",
		"alpaca_eval:baseline": "baseline_gpt4_1106_preview.jsonl", "hh_rlhf": "helpful_base_test_first500.jsonl",
	} {
		r, ok := Lookup(name)
		if !ok || r.File.Name != want || r.String() != name {
			t.Errorf("Lookup(%q) = %v, %v; want %s", name, r.File.Name, ok, want)
		}
	}
	for _, name := range []string{"", "math", "math500:baseline", "alpaca_eval.jsonl", "../shared/data/xstest/xstest.jsonl"} {
		if _, ok := Lookup(name); ok {
			t.Errorf("Lookup(%q) resolved", name)
		}
	}
	if err := UnknownName("nope"); !strings.Contains(err.Error(), `unknown data set "nope" (known: math500, alpaca_eval, alpaca_eval:baseline, arena_hard_v0.1, arena_hard_v0.1:baseline, xstest, hh_rlhf, beavertails)`) {
		t.Errorf("UnknownName: %v", err)
	}
	for _, s := range Sets() {
		if s.Licence == "" || s.Title == "" {
			t.Errorf("%s: no licence or title", s.Name)
		}
		for _, f := range s.Files {
			if len(f.SHA256) != 64 || f.Rows == 0 || len(f.Sources) == 0 {
				t.Errorf("%s/%s: incomplete: %+v", s.Name, f.Name, f)
			}
			for _, src := range f.Sources {
				if len(src.SHA256) != 64 || len(src.URLs) == 0 {
					t.Errorf("%s/%s: source %s incomplete", s.Name, f.Name, src.Mirror)
				}
				for _, u := range src.URLs {
					if !strings.HasPrefix(u, "https://") || !pinnedCommit.MatchString(u) {
						t.Errorf("%s: not an https URL at a pinned commit", u)
					}
				}
			}
		}
	}
}

var pinnedCommit = regexp.MustCompile(`/[0-9a-f]{40}/`)

// countingServer serves dir over HTTP and counts the requests.
func countingServer(t *testing.T, dir string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestStoreHTTPMirror(t *testing.T) {
	shared := sharedData(t)
	srv, requests := countingServer(t, shared)
	st := &Store{Dir: t.TempDir(), Mirror: srv.URL + "/"}
	ctx := context.Background()
	for _, name := range []string{"math500", "xstest", "arena_hard_v0.1", "arena_hard_v0.1:baseline", "alpaca_eval", "hh_rlhf", "beavertails"} {
		r, _ := Lookup(name)
		path, fetched, err := st.Get(ctx, r)
		if err != nil || !fetched {
			t.Fatalf("%s: %v (fetched %v)", name, err, fetched)
		}
		got, _ := os.ReadFile(path)
		want, _ := os.ReadFile(filepath.Join(shared, r.Set.Name, r.File.Name))
		if !bytes.Equal(got, want) || path != filepath.Join(st.Dir, r.Set.Name, r.File.Name) {
			t.Errorf("%s: cached %s differs from the mirror's", name, path)
		}
	}
	before := requests.Load()
	r, _ := Lookup("xstest")
	if _, fetched, err := st.Get(ctx, r); err != nil || fetched || requests.Load() != before {
		t.Errorf("a cached file was fetched again: %v, %v, %d requests", err, fetched, requests.Load()-before)
	}
	// A damaged cache file is fetched again.
	if err := os.WriteFile(st.Path(r), []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st.Cached(r) {
		t.Error("a damaged file counts as cached")
	}
	if _, fetched, err := st.Get(ctx, r); err != nil || !fetched || !st.Cached(r) {
		t.Errorf("damaged cache: %v, fetched %v", err, fetched)
	}
	// ../shared/data has no copy of AlpacaEval 2's baseline: the error
	// says so, and does not reach for the network.
	r, _ = Lookup("alpaca_eval:baseline")
	_, _, err := st.Get(ctx, r)
	if err == nil || !strings.Contains(err.Error(), "alpaca_eval:baseline: the mirror "+srv.URL+"/ (TPO_DATA_MIRROR) has neither baseline_gpt4_1106_preview.jsonl nor its source:\n") ||
		!strings.HasSuffix(err.Error(), "/alpaca_eval/model_outputs_gpt4_1106_preview.json: 404 Not Found") {
		t.Errorf("missing in the mirror: %v", err)
	}
}

func TestStoreDirectoryMirrorOfSources(t *testing.T) {
	// A mirror holding only the upstream files: they are converted.
	shared := sharedData(t)
	mirror := t.TempDir()
	for _, p := range []string{"xstest/original.csv", "hh_rlhf/original.jsonl.gz"} {
		data, err := os.ReadFile(filepath.Join(shared, p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(mirror, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mirror, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := &Store{Dir: t.TempDir(), Mirror: mirror}
	for _, name := range []string{"xstest", "hh_rlhf"} {
		r, _ := Lookup(name)
		if _, _, err := st.Get(context.Background(), r); err != nil || !st.Cached(r) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A tampered upstream file is refused.
	if err := os.WriteFile(filepath.Join(mirror, "xstest", "original.csv"), []byte("id,prompt\n1,x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _ := Lookup("xstest")
	st.Dir = t.TempDir()
	if _, _, err := st.Get(context.Background(), r); err == nil || !strings.Contains(err.Error(), "want 11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a: not the pinned file") {
		t.Errorf("tampered source: %v", err)
	}
}

// testRef is a set of one file made of one source, at the given URLs.
func testRef(urls ...string) Ref {
	content := []byte("upstream\n")
	return Ref{Set: Set{Name: "toy"}, File: File{Name: "toy.jsonl", SHA256: sum([]byte("UPSTREAM\n")), Rows: 1,
		Sources: []Source{{Mirror: "original.txt", SHA256: sum(content), URLs: urls}},
		convert: func(src [][]byte) ([]byte, error) { return bytes.ToUpper(src[0]), nil }}}
}

func TestStoreCanonicalLocations(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/good":
			w.Write([]byte("upstream\n"))
		case "/wrong":
			w.Write([]byte("something else\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	// The first location fails, the second serves the pinned file.
	st := &Store{Dir: t.TempDir()}
	path, _, err := st.Get(ctx, testRef(srv.URL+"/gone", srv.URL+"/good"))
	if got, _ := os.ReadFile(path); err != nil || string(got) != "UPSTREAM\n" {
		t.Errorf("fallback location: %q, %v", got, err)
	}
	// No location serves it: every failure is said, and the mirror
	// suggested.
	_, _, err = (&Store{Dir: t.TempDir()}).Get(ctx, testRef(srv.URL+"/wrong"))
	if err == nil || !strings.Contains(err.Error(), srv.URL+"/wrong has sha256 ") || !strings.Contains(err.Error(), "set TPO_DATA_MIRROR") {
		t.Errorf("wrong file: %v", err)
	}
	// No network: the error names the URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/data.txt"
	ln.Close()
	_, _, err = (&Store{Dir: t.TempDir()}).Get(ctx, testRef(dead))
	if err == nil || !strings.Contains(err.Error(), "toy: cannot download the source of toy.jsonl:\n  GET "+dead+": dial tcp") || !strings.Contains(err.Error(), "connection refused") ||
		!strings.Contains(err.Error(), "Without network, set TPO_DATA_MIRROR to a directory or URL") {
		t.Errorf("no network: %v", err)
	}
	// A conversion that does not give the pinned file is a fault.
	bad := testRef(srv.URL + "/good")
	bad.File.SHA256 = strings.Repeat("0", 64)
	if _, _, err := (&Store{Dir: t.TempDir()}).Get(ctx, bad); err == nil || !strings.Contains(err.Error(), "a fault of tpo's conversion") {
		t.Errorf("bad conversion: %v", err)
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/tmp/xdg-cache")
	t.Setenv("HOME", "/tmp/home")
	d, err := DefaultDir()
	if err != nil {
		t.Fatal(err)
	}
	if base, _ := os.UserCacheDir(); d != filepath.Join(base, "tpo", "data") {
		t.Errorf("DefaultDir() = %s", d)
	}
}

func FuzzConverters(f *testing.F) {
	f.Add([]byte("id,prompt,type,label,focus,note\n1,x,t,safe,f,\n"))
	f.Add([]byte(`{"problem": "p", "level": 1}`))
	f.Add([]byte(`[{"prompt": "p", "category_id": 1}]`))
	f.Add([]byte{0x1f, 0x8b, 0x08})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, s := range Sets() {
			for _, file := range s.Files {
				srcs := make([][]byte, len(file.Sources))
				for i := range srcs {
					srcs[i] = data
				}
				out, err := file.convert(srcs)
				if err == nil && len(out) > 0 && !bytes.HasSuffix(out, []byte("\n")) {
					t.Errorf("%s: output does not end in a newline", s.Name)
				}
			}
		}
	})
}
