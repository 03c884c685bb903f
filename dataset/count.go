package dataset

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
)

// Count returns the number of records in the dataset at path without decoding
// them: the non-blank lines of a JSON Lines file, or the elements of a JSON
// array. It is the number of times Next returns a Record or an *Error, and is
// meant for progress totals. Standard input ("-") cannot be counted.
func Count(path string) (int, error) {
	if path == "-" {
		return 0, errors.New("cannot count standard input")
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	br, gz, err := decompress(f, path)
	if err != nil {
		return 0, err
	}
	if gz != nil {
		defer gz.Close()
	}
	format, err := detect(br, path)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	var n int
	if format == formatArray {
		n, err = countElements(br)
	} else {
		n, err = countLines(br)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// countLines counts the lines of r that hold something other than white
// space.
func countLines(r io.Reader) (int, error) {
	buf := make([]byte, 64<<10)
	n, content := 0, false
	for {
		m, err := r.Read(buf)
		for _, c := range buf[:m] {
			switch {
			case c == '\n':
				if content {
					n++
				}
				content = false
			case !isSpace(c):
				content = true
			}
		}
		if err == io.EOF {
			if content {
				n++
			}
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// countElements counts the elements of the JSON array r holds, by tracking
// nesting and strings only. It does not check the syntax.
func countElements(r *bufio.Reader) (int, error) {
	var (
		depth    int
		inString bool
		escaped  bool
		commas   int
		seen     bool // something at depth 1
	)
	buf := make([]byte, 64<<10)
	for {
		m, err := r.Read(buf)
		for _, c := range buf[:m] {
			if inString {
				switch {
				case escaped:
					escaped = false
				case c == '\\':
					escaped = true
				case c == '"':
					inString = false
				}
				continue
			}
			switch c {
			case '"':
				inString = true
			case '[', '{':
				depth++
			case ']', '}':
				depth--
				if depth == 0 {
					// The end of the top-level array.
					if seen {
						return commas + 1, nil
					}
					return 0, nil
				}
				continue
			case ',':
				if depth == 1 {
					commas++
				}
				continue
			}
			if depth == 1 && !isSpace(c) && c != '[' {
				seen = true
			}
			if depth == 2 && (c == '[' || c == '{') {
				seen = true
			}
		}
		if err == io.EOF {
			return 0, errors.New("unexpected end of JSON array")
		}
		if err != nil {
			return 0, err
		}
	}
}
