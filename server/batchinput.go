package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tpoproject/tpo/openai"
)

// Bounds of a batch's input file.
const (
	maxBatchLines  = 50000 // requests, as OpenAI's
	maxBatchErrors = 100   // validation errors reported
	maxCustomID    = 512   // bytes of a custom_id
)

// batchRequest is one request of a batch's input file, with its line
// number (from 1).
type batchRequest struct {
	Line int
	openai.BatchInput
}

// readBatchInput reads a batch's input file (JSONL: one request a line,
// blank lines skipped) whose requests must call endpoint. It returns the
// requests, or the problems of the file, each naming its line (at most
// maxBatchErrors); err is set when the file cannot be read.
func readBatchInput(r io.Reader, endpoint string, maxLine int) ([]batchRequest, []openai.BatchError, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		reqs  []batchRequest
		probs []openai.BatchError
		seen  = map[string]int{}
	)
	for n := 1; ; n++ {
		line, err := readLine(br, maxLine)
		if errors.Is(err, io.EOF) && line == nil {
			break
		}
		if errors.Is(err, errLineTooLong) {
			probs = addProblem(probs, "invalid_request", fmt.Sprintf("line %d is longer than %d bytes", n, maxLine), "", n)
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, nil, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		req, prob := parseBatchLine(line, n, endpoint, seen)
		if prob != nil {
			probs = addProblem(probs, prob.Code, prob.Message, deref(prob.Param), n)
			continue
		}
		reqs = append(reqs, req)
	}
	switch {
	case len(probs) > 0:
		return nil, probs, nil
	case len(reqs) == 0:
		return nil, []openai.BatchError{{Code: "empty_file", Message: "the input file has no requests"}}, nil
	case len(reqs) > maxBatchLines:
		return nil, []openai.BatchError{{Code: "too_many_requests",
			Message: fmt.Sprintf("the input file has %d requests; a batch has at most %d", len(reqs), maxBatchLines)}}, nil
	}
	return reqs, nil, nil
}

// parseBatchLine reads one line: a JSON object with a custom_id unique in
// the file, method POST, url endpoint and a body object.
func parseBatchLine(line []byte, n int, endpoint string, seen map[string]int) (batchRequest, *openai.BatchError) {
	prob := func(code, param, format string, args ...any) (batchRequest, *openai.BatchError) {
		return batchRequest{}, &openai.BatchError{Code: code, Message: fmt.Sprintf("line %d: ", n) + fmt.Sprintf(format, args...), Param: &param}
	}
	var in openai.BatchInput
	if err := json.Unmarshal(line, &in); err != nil {
		return prob("invalid_json_line", "", "not a JSON object: %s", jsonErrText(err))
	}
	switch {
	case in.CustomID == "":
		return prob("missing_custom_id", "custom_id", "no custom_id")
	case !printable(in.CustomID) || len(in.CustomID) > maxCustomID:
		return prob("invalid_custom_id", "custom_id", "custom_id must be printable text of at most %d bytes", maxCustomID)
	case seen[in.CustomID] > 0:
		return prob("duplicate_custom_id", "custom_id", "custom_id %q is also on line %d", in.CustomID, seen[in.CustomID])
	case in.Method != "POST":
		return prob("invalid_method", "method", "method %q: want POST", in.Method)
	case in.URL != endpoint:
		return prob("mismatched_url", "url", "url %q: this batch's endpoint is %s", in.URL, endpoint)
	case !isObject(in.Body):
		return prob("invalid_body", "body", "body must be a JSON object (the request)")
	}
	seen[in.CustomID] = n
	return batchRequest{Line: n, BatchInput: in}, nil
}

func addProblem(probs []openai.BatchError, code, msg, param string, line int) []openai.BatchError {
	if len(probs) >= maxBatchErrors {
		return probs
	}
	e := openai.BatchError{Code: code, Message: msg, Line: &line}
	if param != "" {
		e.Param = &param
	}
	return append(probs, e)
}

var errLineTooLong = errors.New("line too long")

// readLine reads a line without its end; a line longer than max is
// skipped whole and reported with errLineTooLong.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	long := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !long {
			line = append(line, chunk...)
			if len(line) > max+1 {
				long, line = true, nil
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if long {
			return nil, errLineTooLong
		}
		if err != nil && len(line) == 0 {
			return nil, err
		}
		return bytes.TrimRight(line, "\r\n"), err
	}
}

func printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) < 0
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
