package results

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
)

func readAll(t *testing.T, text string) ([]Line, error) {
	t.Helper()
	var got []Line
	err := ReadFrom(strings.NewReader(text), "in.jsonl", func(l Line) error {
		got = append(got, l)
		return nil
	})
	return got, err
}

func TestReadRoundTrip(t *testing.T) {
	ok := tpo.Result{ID: "a", Prompt: "p", Response: "r", Score: 2, InitialBest: 1, Best: tpo.Ref{Step: 1},
		Usage: tpo.Usage{Requests: 3, PromptTokens: 10, CompletionTokens: 5}, ScoreCalls: 2,
		Steps: []tpo.Step{
			{Step: 0, Candidates: []tpo.Candidate{{Text: "x", Score: 1}}},
			{Step: 1, Candidates: []tpo.Candidate{{Text: "r", Score: 2}}, Unparsed: []string{"junk"},
				Millis: map[tpo.Stage]int64{tpo.StageUpdate: 12}},
		}}
	failed := tpo.Result{ID: "b", Prompt: "q", Error: "policy: 500", Steps: []tpo.Step{}}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, r := range []tpo.Result{ok, failed} {
		if err := w.Write(FromResult(r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, buf.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d lines, want 2", len(got))
	}
	for i, want := range []tpo.Result{ok, failed} {
		if r := got[i].Result(); !reflect.DeepEqual(r, want) {
			t.Errorf("line %d: got %+v, want %+v", i+1, r, want)
		}
	}
}

func TestReadPlain(t *testing.T) {
	in := "{\"id\": \"x1\", \"response\": \"hello\"}\n\n  \n{\"id\": 42, \"response\": \"\", \"prompt\": \"why?\"}\r\n{\"id\":\"e\",\"response\":\"\",\"error\":\"boom\"}"
	got, err := readAll(t, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ id, resp, prompt, err string }{
		{"x1", "hello", "", ""},
		{"42", "", "why?", ""},
		{"e", "", "", "boom"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
	for i, w := range want {
		r := got[i].Result()
		if r.ID != w.id || r.Response != w.resp || r.Prompt != w.prompt || r.Error != w.err {
			t.Errorf("line %d: got id %q response %q prompt %q error %q, want %+v", i, r.ID, r.Response, r.Prompt, r.Error, w)
		}
		if got[i].Score != nil || len(r.Steps) != 0 {
			t.Errorf("line %d: plain line has a score or steps: %+v", i, got[i])
		}
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"bad json", "{\"id\":\"a\",\"response\":\"x\"}\n{\"id\":", "in.jsonl:2: "},
		{"no id", "{\"response\":\"x\"}", "in.jsonl:1: no id field"},
		{"empty id", "{\"id\":\"\",\"response\":\"x\"}", "in.jsonl:1: empty id"},
		{"float id", "{\"id\":1.5,\"response\":\"x\"}", "in.jsonl:1: id: want a string or an integer"},
		{"object id", "{\"id\":{},\"response\":\"x\"}", "in.jsonl:1: id: want a string or a number"},
		{"no response", "\n\n{\"id\":\"a\"}", "in.jsonl:3: item \"a\": no response field"},
		{"array", "[1,2]", "in.jsonl:1: want a JSON object"},
		{"wrong type", "{\"id\":\"a\",\"response\":3}", "in.jsonl:1: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readAll(t, tt.in)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("got error %v, want prefix %q", err, tt.want)
			}
		})
	}
}

func TestReadStopsAtCallbackError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := ReadFrom(strings.NewReader("{\"id\":\"a\",\"response\":\"\"}\n{\"id\":\"b\",\"response\":\"\"}\n"), "x",
		func(Line) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("got err %v after %d lines, want stop after 1", err, n)
	}
}

func TestReadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	if err := os.WriteFile(path, []byte("{\"id\":\"a\",\"response\":\"yes\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var ids []string
	if err := Read(path, func(l Line) error { ids = append(ids, l.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != "a" {
		t.Errorf("got ids %v, want [a]", ids)
	}
	err := Read(filepath.Join(t.TempDir(), "missing.jsonl"), func(Line) error { return nil })
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v, want ErrNotExist", err)
	}
}

// A very long line must not hit a scanner limit.
func TestReadLongLine(t *testing.T) {
	long := strings.Repeat("z", 1<<20)
	got, err := readAll(t, "{\"id\":\"a\",\"response\":\""+long+"\"}\n")
	if err != nil || len(got) != 1 || got[0].Response != long {
		t.Fatalf("got %d lines, err %v", len(got), err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add("{\"id\":\"a\",\"response\":\"x\"}\n")
	f.Add("{\"id\":7,\"response\":\"\",\"score\":1.5,\"initial_best\":1,\"steps\":[{\"step\":0,\"candidates\":[{\"text\":\"x\",\"score\":1}]}]}")
	f.Add("{\"id\":\"e\",\"response\":\"\",\"error\":\"boom\"}\n\n")
	f.Add("[]\n{")
	f.Fuzz(func(t *testing.T, in string) {
		_ = ReadFrom(strings.NewReader(in), "fuzz", func(l Line) error {
			if l.ID == "" {
				t.Fatalf("accepted a line without an id: %+v", l)
			}
			_ = l.Result()
			return nil
		})
	})
}
