// Package dataset reads the prompts of an evaluation set as a stream of
// conversations.
//
// Two formats are read: JSON Lines (one value per line, with the extension
// .jsonl or .ndjson) and a JSON array (.json). Either may be gzipped. Each
// record is an object holding a chat list in "messages", or a prompt in one of
// the fields "prompt", "instruction", "question" or "turns", or a bare JSON
// string that is the prompt itself. Records are decoded one at a time, so a
// file of any length is read in bounded memory.
//
// A record that cannot be used (invalid JSON, a missing or mistyped field, a
// duplicate id) is reported as an *Error naming the file, line and field, and
// the Reader goes on with the next record. Any other error ends the stream.
package dataset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tpoproject/tpo"
)

// DefaultMaxLineBytes is the longest JSON Lines line read when
// Options.MaxLineBytes is zero.
const DefaultMaxLineBytes = 64 << 20

// DefaultPromptFields are the fields tried, in order, for the prompt of an
// object without "messages" when Options.PromptField is empty.
var DefaultPromptFields = []string{"prompt", "instruction", "question", "turns"}

// DefaultIDFields are the fields tried, in order, for a record's id when
// Options.IDField is empty.
var DefaultIDFields = []string{"id", "question_id", "uid"}

// Options control how records are read.
type Options struct {
	// PromptField names the field holding the prompt. Its value may be a
	// string, a list of strings or of objects with a "content" string (the
	// first one is the prompt), or a chat list of {role, content} objects
	// when the field is "messages". When empty, "messages" is tried, then
	// DefaultPromptFields.
	PromptField string
	// IDField names the field holding the record's id (a string or a
	// number). When empty, DefaultIDFields are tried. A record without an id
	// gets its 1-based line number (JSON Lines) or array index (JSON array).
	IDField string
	// MaxLineBytes bounds the length of one JSON Lines line; longer lines
	// are reported as errors and skipped. Zero means DefaultMaxLineBytes.
	MaxLineBytes int
}

// Record is one conversation read from a dataset.
type Record struct {
	// Item is the conversation, with its system message first if the record
	// had one. It passes Item.Validate.
	Item tpo.Item
	// Line is the 1-based line of the file where the record starts.
	Line int
	// Raw is the record exactly as it appears in the file, so that callers
	// can read fields this package does not know.
	Raw json.RawMessage
}

// Error describes a record that could not be used. The Reader that returned it
// can go on with the next record.
type Error struct {
	File  string // the name the Reader was given
	Line  int    // 1-based line where the record starts
	Field string // the offending field, when one is to blame
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	} else {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// format is how a stream is laid out.
type format int

const (
	formatLines format = iota // JSON Lines
	formatArray               // one JSON array
)

// Reader reads records from a dataset. It is not safe for concurrent use.
type Reader struct {
	name string
	opts Options

	closers []io.Closer // closed by Close, in order
	br      *bufio.Reader
	format  format

	// JSON Lines state.
	line int    // lines consumed so far
	buf  []byte // holds a line longer than br's buffer

	// JSON array state.
	dec     *json.Decoder
	lines   *lineCounter
	started bool
	index   int // elements read so far

	seen map[string]int // id -> line of its first record
	err  error          // sticky: the stream cannot go on
}

// Open opens the dataset at path; "-" reads standard input. The format is
// chosen by the extension (.jsonl, .ndjson, .json, each optionally followed by
// .gz) and, for other names, by the first non-space byte ('[' means a JSON
// array). Gzipped input is recognized by its magic number.
func Open(path string, opts Options) (*Reader, error) {
	if path == "-" {
		return NewReader(os.Stdin, "stdin", opts)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(f, path, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closers = append(r.closers, f)
	return r, nil
}

// NewReader reads a dataset from rd. The name is used in errors and, by its
// extension, to choose the format as in Open. Close does not close rd.
func NewReader(rd io.Reader, name string, opts Options) (*Reader, error) {
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = DefaultMaxLineBytes
	}
	r := &Reader{name: name, opts: opts, seen: make(map[string]int)}
	br, gz, err := decompress(rd, name)
	if err != nil {
		return nil, err
	}
	if gz != nil {
		r.closers = append(r.closers, gz)
	}
	r.br = br
	r.format, err = detect(br, name)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if r.format == formatArray {
		r.lines = &lineCounter{r: br}
		r.dec = json.NewDecoder(r.lines)
	}
	return r, nil
}

// decompress returns a buffered reader of rd's content, gunzipped when rd
// starts with the gzip magic number, and past any byte order mark.
func decompress(rd io.Reader, name string) (*bufio.Reader, *gzip.Reader, error) {
	br := bufio.NewReaderSize(rd, 64<<10)
	magic, err := br.Peek(2)
	if err != nil && err != io.EOF {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	var gz *gzip.Reader
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err = gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: gzip: %w", name, err)
		}
		br = bufio.NewReaderSize(gz, 64<<10)
	}
	if p, _ := br.Peek(len(bom)); string(p) == bom {
		br.Discard(len(bom))
	}
	return br, gz, nil
}

// detect chooses the format from the name's extension or, failing that, from
// the first non-space byte of br (which it does not consume).
func detect(br *bufio.Reader, name string) (format, error) {
	ext := strings.ToLower(filepath.Ext(strings.TrimSuffix(strings.ToLower(name), ".gz")))
	switch ext {
	case ".jsonl", ".ndjson":
		return formatLines, nil
	}
	// .json and unknown names: a JSON array if it starts with '['. A .json
	// file holding objects one per line is read as JSON Lines.
	for n := 1; ; n++ {
		p, err := br.Peek(n)
		if len(p) < n {
			if err == io.EOF || err == bufio.ErrBufferFull {
				return formatLines, nil
			}
			return formatLines, err
		}
		c := p[n-1]
		if isSpace(c) {
			continue
		}
		if c == '[' {
			return formatArray, nil
		}
		return formatLines, nil
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// bom is the UTF-8 byte order mark, skipped at the start of a stream.
const bom = "\xef\xbb\xbf"

// Close releases the file (and decompressor) the Reader holds.
func (r *Reader) Close() error {
	var first error
	for _, c := range r.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	r.closers = nil
	if r.err == nil {
		r.err = errors.New("dataset: reader closed")
	}
	return first
}

// Next returns the next record, or io.EOF after the last one. An *Error
// describes a record that could not be used: the returned Record then holds
// its Line and, as far as they could be read, its Raw bytes and Item.ID, and
// the next call goes on with the following record. Any other error means the
// stream cannot go on (an I/O error, or a JSON array whose syntax is broken);
// Next then keeps returning it.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	if r.format == formatArray {
		return r.nextElement()
	}
	return r.nextLine()
}

// nextLine reads the next non-blank JSON Lines line.
func (r *Reader) nextLine() (Record, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			if err == io.EOF {
				r.err = io.EOF
				return Record{}, io.EOF
			}
			var le *Error
			if errors.As(err, &le) {
				return Record{Line: le.Line, Item: tpo.Item{ID: strconv.Itoa(le.Line)}}, err
			}
			r.err = fmt.Errorf("%s:%d: %w", r.name, r.line, err)
			return Record{}, r.err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		return r.record(line, r.line, strconv.Itoa(r.line))
	}
}

// readLine returns the next line without its newline. The slice is valid
// until the next call. A line longer than MaxLineBytes is skipped and
// reported as an *Error.
func (r *Reader) readLine() ([]byte, error) {
	r.buf = r.buf[:0]
	tooLong := false
	for {
		chunk, err := r.br.ReadSlice('\n')
		if !tooLong {
			if len(r.buf)+len(chunk) > r.opts.MaxLineBytes+2 { // +2: "\r\n"
				tooLong = true
				r.buf = r.buf[:0]
			} else if err == bufio.ErrBufferFull || len(r.buf) > 0 {
				r.buf = append(r.buf, chunk...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(chunk) == 0 && len(r.buf) == 0 && !tooLong:
			return nil, io.EOF
		case err != nil && err != io.EOF:
			return nil, err
		}
		r.line++
		if tooLong {
			return nil, &Error{File: r.name, Line: r.line,
				Err: fmt.Errorf("line longer than %d bytes", r.opts.MaxLineBytes)}
		}
		if len(r.buf) > 0 {
			return r.buf, nil
		}
		return chunk, nil
	}
}

// nextElement reads the next element of a JSON array.
func (r *Reader) nextElement() (Record, error) {
	if !r.started {
		r.started = true
		tok, err := r.dec.Token()
		if err != nil {
			return Record{}, r.fatal(err)
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return Record{}, r.fatal(errors.New("want a JSON array"))
		}
	}
	if !r.dec.More() {
		tok, err := r.dec.Token()
		if err != nil {
			return Record{}, r.fatal(err)
		}
		if d, ok := tok.(json.Delim); !ok || d != ']' {
			return Record{}, r.fatal(fmt.Errorf("unexpected %v in array", tok))
		}
		if _, err := r.dec.Token(); err != io.EOF {
			if err == nil {
				err = errors.New("data after the end of the array")
			}
			return Record{}, r.fatal(err)
		}
		r.err = io.EOF
		return Record{}, io.EOF
	}
	var raw json.RawMessage
	if err := r.dec.Decode(&raw); err != nil {
		return Record{}, r.fatal(err)
	}
	r.index++
	line := r.lines.lineAt(r.dec.InputOffset() - int64(len(raw)))
	return r.record(raw, line, strconv.Itoa(r.index))
}

// fatal records err, which ends the stream, and returns it with the file and
// line where it happened.
func (r *Reader) fatal(err error) error {
	off := r.dec.InputOffset()
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err, off = io.ErrUnexpectedEOF, r.lines.off
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
		err = fmt.Errorf("invalid JSON: %w", err)
	}
	r.err = fmt.Errorf("%s:%d: %w", r.name, r.lines.lineAt(off), err)
	return r.err
}

// record builds a Record from one JSON value found at line; defID is its id
// when it has none.
func (r *Reader) record(raw []byte, line int, defID string) (Record, error) {
	rec := Record{Line: line, Raw: bytes.Clone(raw), Item: tpo.Item{ID: defID}}
	fail := func(field string, err error) (Record, error) {
		return rec, &Error{File: r.name, Line: line, Field: field, Err: err}
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fail("", fmt.Errorf("invalid JSON: %w", err))
		}
		if strings.TrimSpace(s) == "" {
			return fail("", errors.New("empty prompt"))
		}
		rec.Item.Messages = []tpo.Message{{Role: tpo.RoleUser, Content: s}}
		return r.checkID(rec, line)
	case '{':
	default:
		if !json.Valid(raw) {
			return fail("", fmt.Errorf("invalid JSON: %w", jsonError(raw)))
		}
		return fail("", fmt.Errorf("want an object or a string, got %s", kind(raw)))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return fail("", fmt.Errorf("invalid JSON: %w", err))
	}

	// The id first, so that a record failing later still names its id.
	idFields := DefaultIDFields
	if r.opts.IDField != "" {
		idFields = []string{r.opts.IDField}
	}
	for _, f := range idFields {
		v, ok := obj[f]
		if !ok || kind(v) == "null" {
			continue
		}
		id, err := parseID(v)
		if err != nil {
			return fail(f, err)
		}
		rec.Item.ID = id
		break
	}

	field, value, err := r.promptField(obj)
	if err != nil {
		return fail("", err)
	}
	msgs, err := conversation(field, value)
	if err != nil {
		return fail(field, err)
	}
	if v, ok := obj["system"]; ok && kind(v) != "null" {
		var sys string
		if err := json.Unmarshal(v, &sys); err != nil {
			return fail("system", fmt.Errorf("want a string, got %s", kind(v)))
		}
		if msgs[0].Role == tpo.RoleSystem {
			return fail("system", fmt.Errorf("the conversation in %q already has a system message", field))
		}
		if sys != "" {
			msgs = slices.Insert(msgs, 0, tpo.Message{Role: tpo.RoleSystem, Content: sys})
		}
	}
	rec.Item.Messages = msgs
	if err := rec.Item.Validate(); err != nil {
		return fail(field, err)
	}
	return r.checkID(rec, line)
}

// checkID fails a record whose id was seen before.
func (r *Reader) checkID(rec Record, line int) (Record, error) {
	if first, ok := r.seen[rec.Item.ID]; ok {
		return rec, &Error{File: r.name, Line: line,
			Err: fmt.Errorf("duplicate id %q (first on line %d)", rec.Item.ID, first)}
	}
	r.seen[rec.Item.ID] = line
	return rec, nil
}

// promptField finds the field holding the conversation.
func (r *Reader) promptField(obj map[string]json.RawMessage) (string, json.RawMessage, error) {
	if f := r.opts.PromptField; f != "" {
		if v, ok := obj[f]; ok {
			return f, v, nil
		}
		return "", nil, fmt.Errorf("no %q field (fields: %s; set --prompt-field)", f, fieldList(obj))
	}
	for _, f := range append([]string{"messages"}, DefaultPromptFields...) {
		if v, ok := obj[f]; ok {
			return f, v, nil
		}
	}
	return "", nil, fmt.Errorf("no %q field (fields: %s; set --prompt-field)", "prompt", fieldList(obj))
}

// fieldList names an object's fields, sorted, for error messages.
func fieldList(obj map[string]json.RawMessage) string {
	if len(obj) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	const max = 20
	if len(keys) > max {
		return strings.Join(keys[:max], ", ") + fmt.Sprintf(" and %d more", len(keys)-max)
	}
	return strings.Join(keys, ", ")
}

// conversation decodes the value of a prompt field into messages.
func conversation(field string, v json.RawMessage) ([]tpo.Message, error) {
	switch kind(v) {
	case "string":
		if field == "messages" {
			return nil, errors.New("want a list of messages, got string")
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, err
		}
		if strings.TrimSpace(s) == "" {
			return nil, errors.New("empty prompt")
		}
		return []tpo.Message{{Role: tpo.RoleUser, Content: s}}, nil
	case "array":
	default:
		if field == "messages" {
			return nil, fmt.Errorf("want a list of messages, got %s", kind(v))
		}
		return nil, fmt.Errorf("want a string, got %s", kind(v))
	}
	var list []json.RawMessage
	if err := json.Unmarshal(v, &list); err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, errors.New("empty list")
	}
	if field == "messages" {
		return chat(list)
	}
	// A list of turns: the first one is the prompt. Old Arena-Hard files
	// hold [{"content": "..."}], MT-Bench style files ["...", "..."].
	first := list[0]
	switch kind(first) {
	case "string":
		return conversation(field, first)
	case "object":
		var turn struct {
			Role    *string         `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(first, &turn); err != nil {
			return nil, fmt.Errorf("turn 0: %w", err)
		}
		if turn.Role != nil {
			return chat(list)
		}
		if turn.Content == nil {
			return nil, errors.New(`turn 0: no "content"`)
		}
		msgs, err := conversation(field, turn.Content)
		if err != nil {
			return nil, fmt.Errorf("turn 0: content: %w", err)
		}
		return msgs, nil
	}
	return nil, fmt.Errorf("turn 0: want a string or an object, got %s", kind(first))
}

// chat decodes a list of {role, content} messages. Content may be a string or
// a list of parts of which the "text" ones are joined.
func chat(list []json.RawMessage) ([]tpo.Message, error) {
	msgs := make([]tpo.Message, 0, len(list))
	for i, v := range list {
		if kind(v) != "object" {
			return nil, fmt.Errorf("message %d: want an object, got %s", i, kind(v))
		}
		var m struct {
			Role    json.RawMessage `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		if m.Role == nil {
			return nil, fmt.Errorf("message %d: no \"role\"", i)
		}
		if m.Content == nil {
			return nil, fmt.Errorf("message %d: no \"content\"", i)
		}
		var role string
		if json.Unmarshal(m.Role, &role) != nil {
			return nil, fmt.Errorf("message %d: role: want a string, got %s", i, kind(m.Role))
		}
		content, err := messageContent(m.Content)
		if err != nil {
			return nil, fmt.Errorf("message %d: content: %w", i, err)
		}
		msgs = append(msgs, tpo.Message{Role: role, Content: content})
	}
	return msgs, nil
}

// messageContent decodes a message's content: a string, or a list of parts
// such as [{"type": "text", "text": "..."}] whose texts are joined.
func messageContent(v json.RawMessage) (string, error) {
	switch kind(v) {
	case "string":
		var s string
		err := json.Unmarshal(v, &s)
		return s, err
	case "array":
		var parts []struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(v, &parts); err != nil {
			return "", fmt.Errorf("want a string or a list of text parts: %w", err)
		}
		var texts []string
		for i, p := range parts {
			if p.Type != "" && p.Type != "text" {
				return "", fmt.Errorf("part %d: unsupported type %q", i, p.Type)
			}
			if p.Text == nil {
				return "", fmt.Errorf("part %d: no text", i)
			}
			texts = append(texts, *p.Text)
		}
		return strings.Join(texts, "\n"), nil
	}
	return "", fmt.Errorf("want a string, got %s", kind(v))
}

// parseID reads an id that is a string or a number.
func parseID(v json.RawMessage) (string, error) {
	switch kind(v) {
	case "string":
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", err
		}
		if s == "" {
			return "", errors.New("empty id")
		}
		return s, nil
	case "number":
		return string(v), nil
	}
	return "", fmt.Errorf("want a string or a number, got %s", kind(v))
}

// kind names the JSON type of a value by its first byte.
func kind(v json.RawMessage) string {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return "number"
	}
	if r, _ := utf8.DecodeRune(v); r != utf8.RuneError {
		return fmt.Sprintf("%q", r)
	}
	return fmt.Sprintf("byte %#x", v[0])
}

// jsonError returns the error json.Unmarshal gives for invalid data.
func jsonError(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	return errors.New("invalid")
}

// lineCounter passes reads through and remembers where lines start, so that
// offsets reported by a json.Decoder can be turned into line numbers. Offsets
// must be asked for in increasing order; newlines before the last asked
// offset are forgotten, so memory stays bounded by the decoder's read-ahead.
type lineCounter struct {
	r        io.Reader
	off      int64   // bytes read so far
	newlines []int64 // offsets of newlines not yet counted in before
	before   int     // newlines before the last asked offset
}

func (lc *lineCounter) Read(p []byte) (int, error) {
	n, err := lc.r.Read(p)
	for i, c := range p[:n] {
		if c == '\n' {
			lc.newlines = append(lc.newlines, lc.off+int64(i))
		}
	}
	lc.off += int64(n)
	return n, err
}

// lineAt returns the 1-based line of the byte at offset off.
func (lc *lineCounter) lineAt(off int64) int {
	i, _ := slices.BinarySearch(lc.newlines, off)
	lc.before += i
	lc.newlines = append(lc.newlines[:0], lc.newlines[i:]...)
	return lc.before + 1
}
