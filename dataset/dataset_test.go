package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/internal/shareddata"
)

// transcript reads every record of data and describes each call of Next on
// one line: "3 id=x user:hello" for a record, "error: ..." for an *Error and
// "fatal: ..." for an error that ends the stream.
func transcript(t *testing.T, name, data string, opts Options) []string {
	t.Helper()
	r, err := NewReader(strings.NewReader(data), name, opts)
	if err != nil {
		return []string{"open: " + err.Error()}
	}
	defer r.Close()
	var out []string
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("Next never returned io.EOF")
		}
		rec, err := r.Next()
		if err == io.EOF {
			return out
		}
		var de *Error
		switch {
		case errors.As(err, &de):
			out = append(out, "error: "+err.Error())
			if rec.Line != de.Line {
				t.Errorf("record line %d, error line %d", rec.Line, de.Line)
			}
			continue
		case err != nil:
			out = append(out, "fatal: "+err.Error())
			// A fatal error is sticky.
			if _, err2 := r.Next(); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("after fatal %v, Next returned %v", err, err2)
			}
			return out
		}
		if err := rec.Item.Validate(); err != nil {
			t.Errorf("record %s does not validate: %v", rec.Item.ID, err)
		}
		if !json.Valid(rec.Raw) {
			t.Errorf("record %s: Raw is not JSON: %q", rec.Item.ID, rec.Raw)
		}
		s := fmt.Sprintf("%d id=%s", rec.Line, rec.Item.ID)
		for _, m := range rec.Item.Messages {
			s += " " + m.Role + ":" + m.Content
		}
		out = append(out, s)
	}
}

func TestReader(t *testing.T) {
	tests := []struct {
		name string
		file string
		data string
		opts Options
		want []string
	}{
		{
			name: "jsonl prompt and id",
			file: "d.jsonl",
			data: `{"id": "a", "prompt": "hi"}` + "\n" + `{"id": 7, "prompt": "yo"}` + "\n",
			want: []string{"1 id=a user:hi", "2 id=7 user:yo"},
		},
		{
			name: "jsonl blank lines, CRLF, no final newline",
			file: "d.ndjson",
			data: "\n  \r\n{\"prompt\": \"one\"}\r\n\n{\"prompt\": \"two\"}",
			want: []string{"3 id=3 user:one", "5 id=5 user:two"},
		},
		{
			name: "byte order mark",
			file: "d.jsonl",
			data: "\xef\xbb\xbf{\"prompt\": \"one\"}\n",
			want: []string{"1 id=1 user:one"},
		},
		{
			name: "bare strings",
			file: "d.jsonl",
			data: `"first"` + "\n" + `"second"`,
			want: []string{"1 id=1 user:first", "2 id=2 user:second"},
		},
		{
			name: "field order of precedence",
			file: "d.jsonl",
			data: `{"instruction": "i", "question": "q"}` + "\n" +
				`{"question": "q", "turns": ["t"]}` + "\n" +
				`{"prompt": "p", "instruction": "i"}` + "\n",
			want: []string{"1 id=1 user:i", "2 id=2 user:q", "3 id=3 user:p"},
		},
		{
			name: "turns as strings and as objects",
			file: "d.jsonl",
			data: `{"question_id": 81, "turns": ["first turn", "second turn"]}` + "\n" +
				`{"question_id": "q2", "turns": [{"content": "arena"}]}` + "\n",
			want: []string{"1 id=81 user:first turn", "2 id=q2 user:arena"},
		},
		{
			name: "id fields in order",
			file: "d.jsonl",
			data: `{"uid": "u", "question_id": "q", "prompt": "a"}` + "\n" +
				`{"uid": "u2", "prompt": "b"}` + "\n" +
				`{"id": null, "uid": "u3", "prompt": "c"}` + "\n" +
				`{"id": 1.5, "prompt": "d"}` + "\n",
			want: []string{"1 id=q user:a", "2 id=u2 user:b", "3 id=u3 user:c", "4 id=1.5 user:d"},
		},
		{
			name: "messages and system",
			file: "d.jsonl",
			data: `{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}` + "\n" +
				`{"system": "be brief", "prompt": "d"}` + "\n" +
				`{"system": "s", "messages": [{"role": "user", "content": "e"}]}` + "\n" +
				`{"messages": [{"role": "user", "content": [{"type": "text", "text": "f"}, {"type": "text", "text": "g"}]}]}` + "\n" +
				`{"system": "", "prompt": "h"}` + "\n",
			want: []string{
				"1 id=1 user:a assistant:b user:c",
				"2 id=2 system:be brief user:d",
				"3 id=3 system:s user:e",
				"4 id=4 user:f\ng",
				"5 id=5 user:h",
			},
		},
		{
			name: "options choose fields",
			file: "d.jsonl",
			data: `{"id": "x", "key": "k1", "text": "hello", "prompt": "ignored"}` + "\n" +
				`{"key": "k2", "prompt": "no text"}` + "\n",
			opts: Options{PromptField: "text", IDField: "key"},
			want: []string{
				"1 id=k1 user:hello",
				`error: d.jsonl:2: no "text" field (fields: key, prompt; set --prompt-field)`,
			},
		},
		{
			name: "per-line errors and recovery",
			file: "data.jsonl",
			data: `{"id": "1", "prompt": "ok"}` + "\n" +
				`{"id": "2", "prompt": 5}` + "\n" +
				`{"id": "3", "prompt": "trunc` + "\n" +
				`{"id": "4", "text": "x"}` + "\n" +
				`{"id": "1", "prompt": "again"}` + "\n" +
				`[1, 2]` + "\n" +
				`42` + "\n" +
				`nope` + "\n" +
				`{"id": true, "prompt": "p"}` + "\n" +
				`{"id": "", "prompt": "p"}` + "\n" +
				`{"id": "5", "prompt": "   "}` + "\n" +
				`{"id": "6", "prompt": "fine"} trailing` + "\n" +
				`{"id": "7", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}` + "\n" +
				`{"id": "8", "messages": [{"role": "robot", "content": "a"}]}` + "\n" +
				`{"id": "9", "messages": "hi"}` + "\n" +
				`{"id": "10", "messages": []}` + "\n" +
				`{"id": "11", "messages": [{"role": 1, "content": "a"}]}` + "\n" +
				`{"id": "12", "messages": [{"role": "user", "content": null}]}` + "\n" +
				`{"id": "13", "messages": [5]}` + "\n" +
				`{"id": "14", "system": 3, "prompt": "p"}` + "\n" +
				`{"id": "15", "system": "s", "messages": [{"role": "system", "content": "t"}, {"role": "user", "content": "u"}]}` + "\n" +
				`{"id": "16", "turns": [7]}` + "\n" +
				`{"id": "17", "turns": [{"text": "x"}]}` + "\n" +
				`{"id": "18", "prompt": "last"}` + "\n",
			want: []string{
				"1 id=1 user:ok",
				`error: data.jsonl:2: field "prompt": want a string, got number`,
				`error: data.jsonl:3: invalid JSON: unexpected end of JSON input`,
				`error: data.jsonl:4: no "prompt" field (fields: id, text; set --prompt-field)`,
				`error: data.jsonl:5: duplicate id "1" (first on line 1)`,
				`error: data.jsonl:6: want an object or a string, got array`,
				`error: data.jsonl:7: want an object or a string, got number`,
				`error: data.jsonl:8: invalid JSON: invalid character 'o' in literal null (expecting 'u')`,
				`error: data.jsonl:9: field "id": want a string or a number, got boolean`,
				`error: data.jsonl:10: field "id": empty id`,
				`error: data.jsonl:11: field "prompt": empty prompt`,
				`error: data.jsonl:12: invalid JSON: invalid character 't' after top-level value`,
				`error: data.jsonl:13: field "messages": last message has role "assistant"; the conversation must end with a user turn`,
				`error: data.jsonl:14: field "messages": message 0: unknown role "robot"`,
				`error: data.jsonl:15: field "messages": want a list of messages, got string`,
				`error: data.jsonl:16: field "messages": empty list`,
				`error: data.jsonl:17: field "messages": message 0: role: want a string, got number`,
				`error: data.jsonl:18: field "messages": message 0: content: want a string, got null`,
				`error: data.jsonl:19: field "messages": message 0: want an object, got number`,
				`error: data.jsonl:20: field "system": want a string, got number`,
				`error: data.jsonl:21: field "system": the conversation in "messages" already has a system message`,
				`error: data.jsonl:22: field "turns": turn 0: want a string or an object, got number`,
				`error: data.jsonl:23: field "turns": turn 0: no "content"`,
				"24 id=18 user:last",
			},
		},
		{
			name: "line too long is skipped",
			file: "d.jsonl",
			data: `{"prompt": "short"}` + "\n" + `{"prompt": "` + strings.Repeat("x", 100) + `"}` + "\n" + `"after"` + "\n",
			opts: Options{MaxLineBytes: 64},
			want: []string{"1 id=1 user:short", "error: d.jsonl:2: line longer than 64 bytes", "3 id=3 user:after"},
		},
		{
			name: "line too long at the end",
			file: "d.jsonl",
			data: `{"prompt": "` + strings.Repeat("x", 100) + `"}`,
			opts: Options{MaxLineBytes: 64},
			want: []string{"error: d.jsonl:1: line longer than 64 bytes"},
		},
		{
			name: "json array of strings",
			file: "d.json",
			data: `["a", "b"]`,
			want: []string{"1 id=1 user:a", "1 id=2 user:b"},
		},
		{
			name: "json array of objects across lines",
			file: "d.json",
			data: "[\n  {\"id\": \"x\", \"prompt\": \"a\"},\n  {\n    \"prompt\": \"b\"\n  },\n  {\"instruction\": 3},\n  \"c\"\n]\n",
			want: []string{
				"2 id=x user:a",
				"3 id=2 user:b",
				`error: d.json:6: field "instruction": want a string, got number`,
				"7 id=4 user:c",
			},
		},
		{
			name: "json empty array",
			file: "d.json",
			data: " [ ] ",
		},
		{
			name: "json array syntax error is fatal",
			file: "d.json",
			data: "[\"a\",\n\"b\"\n\"c\"]",
			want: []string{"1 id=1 user:a", "2 id=2 user:b", "fatal: d.json:3: invalid JSON: expected comma after array element"},
		},
		{
			name: "json array truncated",
			file: "d.json",
			data: "[\"a\",\n",
			want: []string{"1 id=1 user:a", "fatal: d.json:2: unexpected EOF"},
		},
		{
			name: "json array trailing data",
			file: "d.json",
			data: "[\"a\"]\n{}",
			want: []string{"1 id=1 user:a", "fatal: d.json:2: data after the end of the array"},
		},
		{
			name: "json file holding lines",
			file: "d.json",
			data: `{"prompt": "a"}` + "\n" + `{"prompt": "b"}`,
			want: []string{"1 id=1 user:a", "2 id=2 user:b"},
		},
		{
			name: "unknown extension sniffs an array",
			file: "stdin",
			data: "\n\t [\"a\"]",
			want: []string{"2 id=1 user:a"},
		},
		{
			name: "unknown extension sniffs lines",
			file: "prompts.txt",
			data: `"a"` + "\n" + `{"prompt": "b"}`,
			want: []string{"1 id=1 user:a", "2 id=2 user:b"},
		},
		{
			name: "jsonl extension wins over a bracket",
			file: "d.jsonl",
			data: `["a"]`,
			want: []string{"error: d.jsonl:1: want an object or a string, got array"},
		},
		{
			name: "empty input",
			file: "d.jsonl",
			data: "",
		},
		{
			name: "duplicate of a default id",
			file: "d.jsonl",
			data: `"a"` + "\n" + `{"id": "1", "prompt": "b"}`,
			want: []string{"1 id=1 user:a", `error: d.jsonl:2: duplicate id "1" (first on line 1)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := transcript(t, tt.file, tt.data, tt.opts)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

func TestErrorFields(t *testing.T) {
	r, err := NewReader(strings.NewReader(`{"id": "a", "prompt": 1}`), "x.jsonl", Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.Next()
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("Next: got %v, want an *Error", err)
	}
	if de.File != "x.jsonl" || de.Line != 1 || de.Field != "prompt" {
		t.Errorf("got File %q Line %d Field %q, want x.jsonl 1 prompt", de.File, de.Line, de.Field)
	}
	if rec.Item.ID != "a" || string(rec.Raw) != `{"id": "a", "prompt": 1}` {
		t.Errorf("record of a failed line: got id %q raw %q", rec.Item.ID, rec.Raw)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after the last line: got %v, want io.EOF", err)
	}
	if got := (&Error{Line: 3, Err: errors.New("bad")}).Error(); got != "line 3: bad" {
		t.Errorf("Error without a file: got %q", got)
	}
}

func TestRawIsCopied(t *testing.T) {
	r, err := NewReader(strings.NewReader(`{"prompt": "a", "extra": 1}`+"\n"+`{"prompt": "b"}`), "d.jsonl", Options{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if got, want := string(first.Raw), `{"prompt": "a", "extra": 1}`; got != want {
		t.Errorf("first Raw after reading on: got %q, want %q", got, want)
	}
}

// TestLongLines reads lines longer than the bufio buffer.
func TestLongLines(t *testing.T) {
	long := strings.Repeat("é", 300_000) // 600 kB
	data := `{"prompt": "` + long + `"}` + "\n" + `"` + long + `"`
	r, err := NewReader(strings.NewReader(data), "d.jsonl", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		rec, err := r.Next()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if rec.Item.Prompt() != long || rec.Line != i {
			t.Errorf("record %d: got line %d and a prompt of %d bytes, want %d", i, rec.Line, len(rec.Item.Prompt()), len(long))
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("got %v, want io.EOF", err)
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestOpenAndCount(t *testing.T) {
	lines := "{\"prompt\": \"a\"}\n\n  \n{\"prompt\": \"b\"}\nbroken\n\"c\""
	array := "[\n {\"prompt\": \"a, [b]\"},\n \"c\\\"]\",\n [1, {\"x\": 2}],\n 4\n]"
	tests := []struct {
		name    string
		data    []byte
		records int // successful Next calls
		count   int
	}{
		{"p.jsonl", []byte(lines), 3, 4},
		{"p.jsonl.gz", gzipped(t, lines), 3, 4},
		{"p.json", []byte(array), 2, 4},
		{"p.json.gz", gzipped(t, array), 2, 4},
		{"p.gz", gzipped(t, array), 2, 4},
		{"p.data", []byte("\xef\xbb\xbf" + array), 2, 4},
		{"empty.json", []byte("[]"), 0, 0},
		{"empty.jsonl", nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.name, tt.data)
			n, err := Count(path)
			if err != nil {
				t.Fatalf("Count: %v", err)
			}
			if n != tt.count {
				t.Errorf("Count: got %d, want %d", n, tt.count)
			}
			r, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ok, calls := 0, 0
			for {
				_, err := r.Next()
				if err == io.EOF {
					break
				}
				calls++
				var de *Error
				if err != nil && !errors.As(err, &de) {
					t.Fatalf("Next: %v", err)
				}
				if err == nil {
					ok++
				}
			}
			if ok != tt.records || calls != tt.count {
				t.Errorf("got %d records in %d calls, want %d in %d", ok, calls, tt.records, tt.count)
			}
			if err := r.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing.jsonl"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file: got %v, want os.ErrNotExist", err)
	}
	if _, err := Count("-"); err == nil {
		t.Error("Count(\"-\"): got no error")
	}
	if _, err := Count(writeFile(t, "bad.json", []byte(`[{"a": 1}`))); err == nil {
		t.Error("Count of a truncated array: got no error")
	}
	// A gzip stream cut short is an I/O error that ends the stream.
	gz := gzipped(t, strings.Repeat(`{"prompt": "a long enough line to compress"}`+"\n", 2000))
	path := writeFile(t, "cut.jsonl.gz", gz[:len(gz)/2])
	r, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var last error
	for range 5000 {
		if _, last = r.Next(); last != nil {
			var de *Error
			if !errors.As(last, &de) {
				break
			}
		}
	}
	if last == nil || last == io.EOF || !strings.Contains(last.Error(), "cut.jsonl.gz:") {
		t.Errorf("truncated gzip: got %v, want a fatal error naming the file", last)
	}
}

// TestSharedData reads the evaluation sets in shared/data.
func TestSharedData(t *testing.T) {
	dir := shareddata.Path(t, 1, "")
	tests := []struct {
		file    string
		n       int
		firstID string
		check   func(t *testing.T, rec Record)
	}{
		{"alpaca_eval/alpaca_eval.jsonl", 805, "0", nil},
		{"arena_hard_v0.1/question.jsonl", 500, "328c149ed45a41c0b9d6f14659e63599", nil},
		{"math500/math500.jsonl", 500, "test/precalculus/807.json", func(t *testing.T, rec Record) {
			var extra struct {
				Answer string `json:"answer"`
				Level  int    `json:"level"`
			}
			if err := json.Unmarshal(rec.Raw, &extra); err != nil || extra.Answer == "" || extra.Level < 1 {
				t.Errorf("math500 %s: Raw lacks answer/level: %v %+v", rec.Item.ID, err, extra)
			}
		}},
		{"xstest/xstest.jsonl", 450, "1", nil},
		{"hh_rlhf/helpful_base_test_first500.jsonl", 500, "hh-helpful-base-test-0", nil},
		// The upstream files: other field names, no ids.
		{"alpaca_eval/original.jsonl", 805, "1", nil},
		{"math500/original.jsonl", 500, "1", nil},
		{"arena_hard_v0.1/original.jsonl", 500, "328c149ed45a41c0b9d6f14659e63599", nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			if _, err := os.Stat(path); err != nil {
				t.Skipf("missing: %v", err)
			}
			opts := Options{}
			if strings.HasPrefix(tt.file, "math500/original") {
				opts.PromptField = "problem"
			}
			r, err := Open(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			n := 0
			for {
				rec, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("record %d: %v", n+1, err)
				}
				n++
				if n == 1 && rec.Item.ID != tt.firstID {
					t.Errorf("first id: got %q, want %q", rec.Item.ID, tt.firstID)
				}
				if len(rec.Item.Messages) != 1 || rec.Item.Messages[0].Role != tpo.RoleUser {
					t.Errorf("%s: got messages %+v, want one user turn", rec.Item.ID, rec.Item.Messages)
				}
				if tt.check != nil {
					tt.check(t, rec)
				}
			}
			if n != tt.n {
				t.Errorf("got %d records, want %d", n, tt.n)
			}
			c, err := Count(path)
			if err != nil || c != tt.n {
				t.Errorf("Count: got %d, %v; want %d", c, err, tt.n)
			}
		})
	}
}

var locatedError = regexp.MustCompile(`^fuzz\.(jsonl|json|txt):[0-9]+: `)

func FuzzReader(f *testing.F) {
	seeds := []string{
		`{"id": "a", "prompt": "hi"}` + "\n" + `"x"`,
		`["a", {"prompt": "b"}]`,
		`[{"messages": [{"role": "user", "content": "a"}]}, 3, "`,
		"\xef\xbb\xbf{\"turns\": [{\"content\": \"t\"}]}\n\n{}",
		`{"id": 1, "id": 1, "prompt": ""}`,
		"\x1f\x8b\x08\x00",
		`[{"system": "s", "instruction": "i"},]`,
		"{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\"}]}]}\r\n",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i))
	}
	names := []string{"fuzz.jsonl", "fuzz.json", "fuzz.txt"}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		name := names[int(which)%len(names)]
		r, err := NewReader(bytes.NewReader(data), name, Options{MaxLineBytes: 1 << 10})
		if err != nil {
			if !strings.HasPrefix(err.Error(), name) {
				t.Fatalf("NewReader error does not name the file: %v", err)
			}
			return
		}
		defer r.Close()
		for i := 0; ; i++ {
			if i > len(data)+1 {
				t.Fatalf("Next returned more than %d values", i)
			}
			rec, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var de *Error
				if errors.As(err, &de) && (de.Line < 1 || de.File != name) {
					t.Fatalf("error without a location: %#v", de)
				}
				if !locatedError.MatchString(err.Error()) {
					t.Fatalf("error without file and line: %v", err)
				}
				if de == nil {
					return // fatal
				}
				continue
			}
			if err := rec.Item.Validate(); err != nil {
				t.Fatalf("record does not validate: %v", err)
			}
			if rec.Line < 1 || rec.Item.ID == "" {
				t.Fatalf("record without line or id: %+v", rec)
			}
		}
	})
}

// BenchmarkReader streams a generated file of 50,000 lines.
func BenchmarkReader(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.jsonl")
	var buf bytes.Buffer
	for i := range 50_000 {
		fmt.Fprintf(&buf, `{"id": "item-%d", "prompt": "Question number %d: what is the capital of a country, and why?", "category": "geo"}`+"\n", i, i)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	for b.Loop() {
		r, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		r.Close()
		if n != 50_000 {
			b.Fatalf("got %d records", n)
		}
	}
}

// endless yields an endless stream: head, then item over and over. It counts
// the bytes read.
type endless struct {
	head, item string
	pos        int
	read       int
}

func (e *endless) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		var s string
		if e.pos < len(e.head) {
			s = e.head[e.pos:]
		} else {
			k := (e.pos - len(e.head)) % len(e.item)
			s = e.item[k:]
		}
		c := copy(p[n:], s)
		n += c
		e.pos += c
	}
	e.read += n
	return n, nil
}

// TestStreams checks that records are returned before the input ends, and
// that the Reader reads little ahead.
func TestStreams(t *testing.T) {
	tests := []struct {
		name string
		src  *endless
	}{
		{"d.jsonl", &endless{item: `{"prompt": "again and again"}` + "\n"}},
		{"d.json", &endless{head: "[", item: `{"prompt": "again and again"},` + "\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(tt.src, tt.name, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 10_000; i++ {
				rec, err := r.Next()
				if err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
				if rec.Line != i {
					t.Fatalf("record %d: got line %d", i, rec.Line)
				}
			}
			if consumed := 10_000 * len(tt.src.item); tt.src.read > consumed+1<<20 {
				t.Errorf("read %d bytes for 10,000 records of %d bytes", tt.src.read, consumed)
			}
			if r.lines != nil && len(r.lines.newlines) > 1<<16 {
				t.Errorf("line counter holds %d offsets", len(r.lines.newlines))
			}
		})
	}
}

func TestSource(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d.jsonl")
	os.WriteFile(path, []byte(`{"id":"a","prompt":"one"}
{"id":"a","prompt":"again"}
not json
{"id":"b","messages":[{"role":"system","content":"own"},{"role":"user","content":"two"}]}
{"id":"c","prompt":"three"}
`), 0o644)
	r, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src := NewSource(r, SourceOptions{System: "be brief", Limit: 4})
	var got []string
	for {
		in, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		s := in.Item.ID
		if in.Err != nil {
			s += " failed"
		} else {
			s += " " + in.Item.Messages[0].Content
		}
		got = append(got, s)
	}
	// The duplicate is named by its line, the bad line by its number (its
	// default id); the system
	// prompt goes before conversations without one; the limit stops at 4.
	if want := []string{"a be brief", "line-2 failed", "3 failed", "b own"}; !slices.Equal(got, want) {
		t.Errorf("items %q, want %q", got, want)
	}
}
