package results

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/tpoproject/tpo"
)

// Read calls fn with each line of the results file at path, in file order,
// reading one line at a time. It accepts the full format written by
// `tpo run --out` and plain lines holding only an id and a response (and
// optionally a prompt), such as {"id": "7", "response": "..."}; a numeric id
// is read as its decimal text. Blank lines are skipped. Errors name the file
// and the 1-based line number. Read stops at, and returns, fn's first error.
func Read(path string, fn func(Line) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	defer f.Close()
	return ReadFrom(f, path, fn)
}

// ReadFrom is Read for an open reader; name is used in errors.
func ReadFrom(r io.Reader, name string, fn func(Line) error) error {
	br := bufio.NewReaderSize(r, 64*1024)
	for n := 1; ; n++ {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			l, ok, derr := decodeLine(b)
			if derr != nil {
				return fmt.Errorf("%s:%d: %w", name, n, derr)
			}
			if ok {
				if err := fn(l); err != nil {
					return err
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
}

// rawLine decodes a line whose id may be a number and tells whether the
// response field was present; its fields shadow Line's.
type rawLine struct {
	ID       json.RawMessage `json:"id"`
	Response *string         `json:"response"`
	Line
}

// decodeLine decodes one line; ok is false for a blank line.
func decodeLine(b []byte) (l Line, ok bool, err error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return Line{}, false, nil
	}
	if b[0] != '{' {
		return Line{}, false, errors.New("want a JSON object")
	}
	var raw rawLine
	if err := json.Unmarshal(b, &raw); err != nil {
		return Line{}, false, err
	}
	l = raw.Line
	id, err := decodeID(raw.ID)
	if err != nil {
		return Line{}, false, err
	}
	l.ID = id
	if raw.Response != nil {
		l.Response = *raw.Response
	} else if l.Error == nil {
		return Line{}, false, fmt.Errorf("item %q: no response field", id)
	}
	return l, true, nil
}

func decodeID(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", errors.New("no id field")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if s == "" {
			return "", errors.New("empty id")
		}
		return s, nil
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&n); err != nil {
		return "", fmt.Errorf("id: want a string or a number, got %s", raw)
	}
	if _, err := strconv.ParseInt(n.String(), 10, 64); err != nil {
		return "", fmt.Errorf("id: want a string or an integer, got %s", raw)
	}
	return n.String(), nil
}

// Result converts a results line back to an optimizer result. A line
// without a score (a failed item, or a plain id/response line) gives a
// result with no steps' scores: Score and InitialBest are 0.
func (l Line) Result() tpo.Result {
	r := tpo.Result{
		ID: l.ID, Prompt: l.Prompt, Messages: l.Messages, Response: l.Response,
		Steps: l.Steps, Usage: l.Usage, ScoreCalls: l.ScoreCalls, ScoreUsage: l.ScoreUsage, StopReason: l.StopReason,
	}
	if l.Score != nil {
		r.Score = *l.Score
	}
	if l.InitialBest != nil {
		r.InitialBest = *l.InitialBest
	}
	if l.Best != nil {
		r.Best = *l.Best
	}
	if l.Error != nil {
		r.Error = *l.Error
	}
	return r
}
