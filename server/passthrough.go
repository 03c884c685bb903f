package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// passThrough relays a request with "tpo": {"mode": "off"} to the policy
// server unchanged (without its "tpo" object). A streamed answer is relayed
// as it arrives, event by event; nothing is recorded in the store. A
// request that named a preset (off/MODEL) gets answers that name the model
// as it did: the top-level "model" of the answer, and of each chunk, is
// rewritten, the rest relayed byte for byte.
func (s *Server) passThrough(ctx context.Context, w http.ResponseWriter, p *plan) {
	deadline := func() bool { return errors.Is(ctx.Err(), context.DeadlineExceeded) }
	var model []byte // the name answers carry, as JSON; nil: the upstream's
	if p.Model != p.Upstream {
		model, _ = json.Marshal(p.Model)
	}
	if !p.Stream {
		body, err := s.up.Chat(ctx, p.Body)
		if err != nil {
			s.log.Warn("pass-through request failed", "err", err)
			writeError(w, passThroughError(err, deadline()))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(appendRenamed(nil, body, model))
		return
	}
	rc, err := s.up.ChatStream(ctx, p.Body)
	if err != nil {
		s.log.Warn("pass-through stream failed", "err", err)
		writeError(w, passThroughError(err, deadline()))
		return
	}
	defer rc.Close()
	sw := startSSE(w)
	if err := relay(sw, rc, model); err != nil {
		if sw.err != nil {
			s.log.Info("client left during a pass-through stream", "err", sw.err)
			return
		}
		// The upstream stream broke: tell the client in-band.
		s.log.Warn("pass-through stream broke", "err", err)
		_ = sw.data(upstreamError(err, deadline()).body())
		_ = sw.done()
	}
}

// relay copies an SSE stream line by line, the JSON object of each data
// line naming model (when not nil), and flushes whenever it has written
// all that had arrived, so that each event reaches the client as soon as
// it arrives.
func relay(sw *sseWriter, r io.Reader, model []byte) error {
	br := bufio.NewReaderSize(r, 32<<10)
	var out, long []byte
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			long = append(long, line...) // a line longer than the buffer
			continue
		case len(long) > 0:
			line = append(long, line...)
			long = long[:0]
		}
		out = appendLine(out, line, model)
		if len(out) > 0 && (br.Buffered() == 0 || err != nil) {
			if werr := sw.raw(out); werr != nil {
				return werr
			}
			out = out[:0]
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// appendLine appends an SSE line to out, the JSON object of a data line
// naming model (when not nil).
func appendLine(out, line, model []byte) []byte {
	rest, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok || model == nil {
		return append(out, line...)
	}
	start := len(line) - len(rest)
	for start < len(line) && line[start] == ' ' {
		start++
	}
	out = append(out, line[:start]...)
	return appendRenamed(out, line[start:], model)
}

// appendRenamed appends obj, a JSON object, to out, with the value of its
// top-level "model" member, a string, replaced by model (a JSON string,
// when not nil). The rest is appended byte for byte; anything else (no
// such member, not an object) is appended as it is.
func appendRenamed(out, obj, model []byte) []byte {
	if model != nil {
		if start, end, ok := modelValue(obj); ok {
			out = append(out, obj[:start]...)
			out = append(out, model...)
			return append(out, obj[end:]...)
		}
	}
	return append(out, obj...)
}

// modelValue finds the value of the top-level "model" member of obj, a
// JSON object, when it is a string: obj[start:end], quotes included.
// Strings, nested objects and arrays are skipped, not decoded.
func modelValue(obj []byte) (start, end int, ok bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return 0, 0, false
	}
	depth, key := 0, true // key: at depth 1, the next string is a key
	for ; i < len(obj); i++ {
		switch c := obj[i]; c {
		case '{', '[':
			depth++
			key = depth == 1
		case '}', ']':
			depth--
		case ',':
			key = depth == 1
		case '"':
			e := stringEnd(obj, i)
			if e < 0 {
				return 0, 0, false
			}
			if depth == 1 && key && string(obj[i+1:e]) == "model" {
				return valueAfter(obj, e+1)
			}
			key, i = false, e
		}
	}
	return 0, 0, false
}

// valueAfter finds the string value that follows the colon at or after i.
func valueAfter(obj []byte, i int) (start, end int, ok bool) {
	i = skipSpace(obj, i)
	if i >= len(obj) || obj[i] != ':' {
		return 0, 0, false
	}
	start = skipSpace(obj, i+1)
	if start >= len(obj) || obj[start] != '"' {
		return 0, 0, false
	}
	e := stringEnd(obj, start)
	if e < 0 {
		return 0, 0, false
	}
	return start, e + 1, true
}

// stringEnd returns the index of the quote that closes the JSON string
// opening at i, or -1.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return -1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
