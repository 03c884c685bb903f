package openai

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/tpoproject/tpo/httpx"
)

// maxEvent caps the size of one server-sent event.
const maxEvent = 16 << 20

// StreamError is an error a server sent in the middle of a stream, as
// `data: {"error": {...}}`.
type StreamError struct {
	Server  string // who sent it, e.g. "policy server http://h:8000/v1"
	Message string
	Type    string
	Code    string
}

func (e *StreamError) Error() string {
	s := fmt.Sprintf("%s: error in stream: %s", e.Server, e.Message)
	if e.Type != "" && !strings.Contains(e.Message, e.Type) {
		s += " (" + e.Type + ")"
	}
	return s
}

// Stream reads the chunks of a streamed chat completion.
type Stream struct {
	body     io.ReadCloser
	r        *bufio.Reader
	server   string
	err      error
	finished bool // a choice reported a finish reason
}

// NewStream decodes the server-sent events of body; server names the sender
// in errors.
func NewStream(body io.ReadCloser, server string) *Stream {
	return &Stream{body: body, r: bufio.NewReaderSize(body, 64<<10), server: server}
}

// Close closes the underlying response body.
func (s *Stream) Close() error { return s.body.Close() }

// Next returns the next chunk. It returns io.EOF after `data: [DONE]` (or
// when the body ends after a choice finished), and io.ErrUnexpectedEOF
// (wrapped) when the body ends too early. A `data: {"error": ...}` event
// gives a *StreamError.
func (s *Stream) Next() (ChatChunk, error) {
	if s.err != nil {
		return ChatChunk{}, s.err
	}
	for {
		event, data, err := s.event()
		if err != nil {
			if err == io.EOF {
				if s.finished {
					err = io.EOF
				} else {
					err = fmt.Errorf("%s: stream ended without [DONE]: %w", s.server, io.ErrUnexpectedEOF)
				}
			} else {
				err = fmt.Errorf("%s: reading stream: %w", s.server, err)
			}
			s.err = err
			return ChatChunk{}, err
		}
		trimmed := bytes.TrimSpace(data)
		if len(trimmed) == 0 {
			continue // a keep-alive or an event without data
		}
		if string(trimmed) == "[DONE]" {
			s.err = io.EOF
			return ChatChunk{}, io.EOF
		}
		if se := s.streamError(event, trimmed); se != nil {
			s.err = se
			return ChatChunk{}, se
		}
		var chunk ChatChunk
		if err := json.Unmarshal(trimmed, &chunk); err != nil {
			s.err = fmt.Errorf("%s: malformed stream chunk %.200q: %w", s.server, trimmed, err)
			return ChatChunk{}, s.err
		}
		for _, c := range chunk.Choices {
			if c.FinishReason != "" {
				s.finished = true
			}
		}
		return chunk, nil
	}
}

// streamError recognizes an error event.
func (s *Stream) streamError(event string, data []byte) *StreamError {
	isErr := event == "error"
	if !isErr && bytes.HasPrefix(data, []byte("{")) {
		var probe map[string]json.RawMessage
		if json.Unmarshal(data, &probe) == nil {
			_, hasErr := probe["error"]
			obj := probe["object"]
			isErr = hasErr || string(bytes.TrimSpace(obj)) == `"error"`
		}
	}
	if !isErr {
		return nil
	}
	e, _ := httpx.ParseErrorBody(data)
	return &StreamError{Server: s.server, Message: e.Message, Type: e.Type, Code: e.Code}
}

// event reads one server-sent event: its type and its data lines joined by
// newlines. Comments and fields other than data and event are skipped.
func (s *Stream) event() (event string, data []byte, err error) {
	var buf []byte
	hasData := false
	for {
		line, err := s.line()
		if err != nil {
			if err == io.EOF && hasData {
				return event, buf, nil // the last event lacked its blank line
			}
			return "", nil, err
		}
		if len(line) == 0 {
			if hasData || event != "" {
				return event, buf, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // a comment
		}
		field, value, found := bytes.Cut(line, []byte(":"))
		if found && len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(field) {
		case "data":
			if hasData {
				buf = append(buf, '\n')
			}
			if len(buf)+len(value) > maxEvent {
				return "", nil, fmt.Errorf("event larger than %d bytes", maxEvent)
			}
			buf = append(buf, value...)
			hasData = true
		case "event":
			event = string(value)
		}
	}
}

// line reads one line without its end (\n, \r\n or \r).
func (s *Stream) line() ([]byte, error) {
	var out []byte
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(out) > 0 {
				return out, nil
			}
			return nil, err
		}
		switch b {
		case '\n':
			return out, nil
		case '\r':
			if next, err := s.r.Peek(1); err == nil && next[0] == '\n' {
				s.r.ReadByte()
			}
			return out, nil
		}
		if len(out) >= maxEvent {
			return nil, fmt.Errorf("line longer than %d bytes", maxEvent)
		}
		out = append(out, b)
	}
}
