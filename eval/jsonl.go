package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// ReadJSONL decodes one JSON object per line of r into a T each. Blank lines
// are skipped. Errors name the 1-based line number.
func ReadJSONL[T any](r io.Reader) ([]T, error) {
	return readJSONL[T](r, "")
}

// ReadJSONLFile is ReadJSONL for the file at path; errors name the file
// and line as path:line.
func ReadJSONLFile[T any](path string) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readJSONL[T](f, path)
}

// readJSONL reads r; name, when not empty, prefixes the line numbers of
// errors.
func readJSONL[T any](r io.Reader, name string) ([]T, error) {
	where := func(line int) string {
		if name == "" {
			return fmt.Sprintf("line %d", line)
		}
		return fmt.Sprintf("%s:%d", name, line)
	}
	var out []T
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", where(line), err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", where(line+1), err)
	}
	return out, nil
}
