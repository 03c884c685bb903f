package httpx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// maxMessage caps the length of a server's error message kept in a
// StatusError, so a server that answers with a whole HTML page does not flood
// logs.
const maxMessage = 2048

// StatusError is returned when a server answers with a non-2xx status.
type StatusError struct {
	Server  string // the replica base URL
	Method  string // "GET" or "POST"
	Path    string
	Status  int
	Message string // the server's own message, from whichever error body shape it used; raw text if not JSON
	Type    string // error type where the body has one (e.g. "exceed_context_size_error")
	Code    string // error code where the body has one (e.g. "insufficient_quota", "400")
	Param   string
	// Name is the role of the server ("policy", "reward", "judge").
	Name string
	// RetryAfter is the delay the server asked for in a Retry-After header,
	// or zero.
	RetryAfter time.Duration
}

// Error returns, for example,
// `policy server http://h:8000/v1: POST /chat/completions: 400 Bad Request: <message>`.
func (e *StatusError) Error() string {
	var b strings.Builder
	if e.Name != "" {
		b.WriteString(e.Name)
		b.WriteString(" ")
	}
	b.WriteString("server ")
	b.WriteString(e.Server)
	b.WriteString(": ")
	method := e.Method
	if method == "" {
		method = http.MethodPost
	}
	fmt.Fprintf(&b, "%s %s: %d", method, e.Path, e.Status)
	if t := http.StatusText(e.Status); t != "" {
		b.WriteString(" ")
		b.WriteString(t)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if tag := e.tag(); tag != "" && !strings.Contains(e.Message, tag) {
		fmt.Fprintf(&b, " (%s)", tag)
	}
	return b.String()
}

// tag is the most telling of Code and Type, for the error message.
func (e *StatusError) tag() string {
	if e.Code != "" && !isDigits(e.Code) {
		return e.Code
	}
	return e.Type
}

// Temporary reports whether retrying the request may succeed: 408, 429
// (except for an exhausted quota) and 5xx other than 501 and 505.
func (e *StatusError) Temporary() bool {
	switch {
	case e.Status == http.StatusRequestTimeout:
		return true
	case e.Status == http.StatusTooManyRequests:
		return !e.QuotaExhausted()
	case e.Status == http.StatusNotImplemented, e.Status == http.StatusHTTPVersionNotSupported:
		return false
	case e.Status >= 500 && e.Status <= 599:
		return true
	}
	return false
}

// QuotaExhausted reports whether the server said the account is out of
// quota (OpenAI's "insufficient_quota"), which waiting does not fix.
func (e *StatusError) QuotaExhausted() bool {
	return e.Type == "insufficient_quota" || e.Code == "insufficient_quota"
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// ParseErrorBody extracts the message, type, code and param from an error
// body in any of the shapes model servers use:
//
//	{"error": {"message", "type", "param", "code"}}  OpenAI, vLLM, llama.cpp, Ollama /v1
//	{"object": "error", "message", "type", "code"}   older vLLM, SGLang
//	{"error": "...", "error_type": "..."}            TGI, TEI, Ollama
//	{"detail": "..."} or {"detail": [{"msg"}]}       FastAPI validation errors
//
// ok reports whether the body was one of them. Otherwise Message holds the
// body's text, trimmed and capped at about 2 KB. Only the Message, Type, Code
// and Param fields of the result are set.
func ParseErrorBody(body []byte) (e StatusError, ok bool) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err == nil && top != nil {
		if raw, found := top["error"]; found {
			if inner, isObj := parseObject(raw); isObj {
				e = fromFields(inner)
				if e.Message == "" {
					// Some servers nest one more level or use "detail".
					if m := scalar(inner["detail"]); m != "" {
						e.Message = m
					}
				}
				if e.Message != "" || e.Type != "" || e.Code != "" {
					e.Message = capText(e.Message)
					return e, true
				}
			} else if s := scalar(raw); s != "" {
				e.Message = capText(s)
				e.Type = scalar(top["error_type"])
				if e.Type == "" {
					e.Type = scalar(top["type"])
				}
				e.Code = scalar(top["code"])
				return e, true
			}
		}
		if _, found := top["message"]; found {
			e = fromFields(top)
			if e.Message != "" {
				e.Message = capText(e.Message)
				return e, true
			}
		}
		if raw, found := top["detail"]; found {
			if m := detailMessage(raw); m != "" {
				return StatusError{Message: capText(m)}, true
			}
		}
	}
	return StatusError{Message: capText(string(bytes.TrimSpace(body)))}, false
}

func parseObject(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

func fromFields(m map[string]json.RawMessage) StatusError {
	return StatusError{
		Message: scalar(m["message"]),
		Type:    scalar(m["type"]),
		Code:    scalar(m["code"]),
		Param:   scalar(m["param"]),
	}
}

// detailMessage reads FastAPI's "detail": a string, or a list of
// {"loc": [...], "msg": "..."} objects.
func detailMessage(raw json.RawMessage) string {
	var items []struct {
		Loc []any  `json:"loc"`
		Msg string `json:"msg"`
	}
	if err := json.Unmarshal(raw, &items); err != nil {
		return scalar(raw)
	}
	var parts []string
	for _, it := range items {
		if it.Msg == "" {
			continue
		}
		if len(it.Loc) > 0 {
			loc := make([]string, len(it.Loc))
			for i, l := range it.Loc {
				loc[i] = fmt.Sprint(l)
			}
			parts = append(parts, strings.Join(loc, ".")+": "+it.Msg)
		} else {
			parts = append(parts, it.Msg)
		}
	}
	if len(parts) == 0 {
		return scalar(raw)
	}
	return strings.Join(parts, "; ")
}

// scalar renders a JSON string, number or boolean as text. Null, absent
// values and empty strings give "". Objects and arrays give their compact
// JSON text.
func scalar(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return ""
		}
		return strings.TrimSpace(s)
	case '{', '[':
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return ""
		}
		return buf.String()
	}
	return string(raw)
}

// capText trims s and cuts it to about maxMessage bytes on a rune boundary.
func capText(s string) string {
	s = strings.TrimSpace(s)
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
