package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/tpoproject/tpo"
)

// apiError is an error answered in the OpenAI error format.
type apiError struct {
	Status  int
	Message string
	Type    string
	Param   string
	Code    string
	// RetryAfter, when positive, is sent as a Retry-After header (seconds).
	RetryAfter int
}

func (e *apiError) Error() string { return e.Message }

// errorBody is the OpenAI error body.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) body() errorBody {
	b := errorBody{Error: errorObject{Message: e.Message, Type: e.Type}}
	if e.Param != "" {
		p := e.Param
		b.Error.Param = &p
	}
	if e.Code != "" {
		c := e.Code
		b.Error.Code = &c
	}
	return b
}

// Error types, as OpenAI names them.
const (
	typeInvalidRequest = "invalid_request_error"
	typeAuthentication = "authentication_error"
	typeNotFound       = "not_found_error"
	typeRateLimit      = "rate_limit_error"
	typeUpstream       = "upstream_error"
	typeTimeout        = "timeout_error"
	typeServer         = "server_error"
)

func badRequest(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param, Message: fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e.body())
}

// upstreamError describes a failure of the optimization or of a call to a
// model server. What the client's request caused is the client's error: a
// conversation too long for the model (400 context_length_exceeded), a
// model the policy server does not serve (404 model_not_found), a
// parameter it refused (400). Otherwise: 504 when a deadline passed, 502.
// The message keeps the servers' own words but never their addresses
// (see scrub); the caller logs the whole error. deadline says whether the
// request's own deadline passed.
func upstreamError(err error, deadline bool) *apiError {
	msg := scrub(err.Error())
	if deadline {
		return &apiError{Status: http.StatusGatewayTimeout, Type: typeTimeout, Code: "request_timeout",
			Message: "the request did not finish in time: " + msg}
	}
	if e := clientCaused(err, msg); e != nil {
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &apiError{Status: http.StatusGatewayTimeout, Type: typeTimeout, Code: "upstream_timeout",
			Message: "upstream timeout: " + msg}
	}
	e := &apiError{Status: http.StatusBadGateway, Type: typeUpstream, Code: "upstream_error",
		Message: "upstream failure: " + msg}
	var ue *UpstreamError
	if errors.As(err, &ue) {
		e.Code = "upstream_status_" + strconv.Itoa(ue.Status)
	}
	return e
}

// clientCaused returns the client's error that err is, or nil: retrying
// the same request cannot help, so it must not be a 5xx (which the OpenAI
// SDKs retry).
func clientCaused(err error, msg string) *apiError {
	if errors.Is(err, tpo.ErrContextLength) {
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Code: "context_length_exceeded", Param: "messages",
			Message: "the conversation does not fit the model's context window (TPO's prompts hold it and the responses compared): " + msg}
	}
	var se *UpstreamError
	if !errors.As(err, &se) || se.Role != "policy" {
		return nil
	}
	// The upstream's own words are what the client needs; the whole
	// chain is in the log and the run.
	if m := scrub(se.Message); m != "" {
		msg = m
	}
	switch {
	case se.UnknownModel:
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "model_not_found", Param: "model",
			Message: "the policy server does not serve the model of the request: " + msg}
	case se.Status == http.StatusBadRequest, se.Status == http.StatusUnprocessableEntity, se.Status == http.StatusRequestEntityTooLarge:
		status := http.StatusBadRequest
		if se.Status == http.StatusRequestEntityTooLarge {
			status = se.Status
		}
		code := se.Code
		if code == "" || isDigits(code) {
			code = "invalid_request"
		}
		return &apiError{Status: status, Type: typeInvalidRequest, Code: code, Param: se.Param,
			Message: "the policy model server refused the request: " + msg}
	}
	return nil
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// passThroughError is upstreamError for a request relayed unchanged: the
// upstream's verdict on the client's own request (400, 404, 413, 422, 429)
// is relayed with its status and its own message, since it is about what
// the client sent. A conversation too long for the model is answered as
// OpenAI answers it (400, code context_length_exceeded, param messages),
// whatever shape the model server gave its error: clients look for that
// code to shorten the conversation.
func passThroughError(err error, deadline bool) *apiError {
	var se *UpstreamError
	if deadline || !errors.As(err, &se) {
		return upstreamError(err, deadline)
	}
	msg := scrub(se.Message)
	if msg == "" {
		msg = fmt.Sprintf("the policy server answered %d %s", se.Status, http.StatusText(se.Status))
	}
	if errors.Is(err, tpo.ErrContextLength) {
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Code: "context_length_exceeded", Param: "messages", Message: msg}
	}
	switch se.Status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge,
		http.StatusUnprocessableEntity, http.StatusTooManyRequests:
		typ := se.Type
		if typ == "" {
			typ = typeInvalidRequest
			if se.Status == http.StatusTooManyRequests {
				typ = typeRateLimit
			}
		}
		e := &apiError{Status: se.Status, Type: typ, Param: se.Param, Code: se.Code, Message: msg}
		if se.RetryAfter > 0 {
			e.RetryAfter = max(1, int(se.RetryAfter.Seconds()+0.5))
		}
		return e
	}
	return upstreamError(err, deadline)
}

var (
	// urlRE matches URLs, with the space before them, without the
	// punctuation that may follow them.
	urlRE = regexp.MustCompile(` ?\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]*[^\s"'<>:;,.)\]]`)
	// emptyURLRE matches what is left of a *url.Error: `Post "": `.
	emptyURLRE = regexp.MustCompile(`\b(Get|Head|Post|Put|Patch|Delete|Options) "":? ?`)
	// netOpRE matches the addresses of a *net.OpError: "dial tcp
	// 10.0.0.5:8000:", "read tcp 127.0.0.1:5555->127.0.0.1:8000:".
	netOpRE = regexp.MustCompile(`\b(dial|read|write) (tcp[46]?|udp[46]?|unix) \S+:`)
	// lookupRE matches the names of a *net.DNSError: "lookup gpu-box on
	// 127.0.0.53:53:".
	lookupRE = regexp.MustCompile(`\blookup \S+( on \S+)?:`)
)

// scrub removes from an error message what tells where the model servers
// are: URLs, network addresses and the names looked up. The client gets
// the rest; the log gets everything.
func scrub(msg string) string {
	msg = urlRE.ReplaceAllString(msg, "")
	msg = emptyURLRE.ReplaceAllString(msg, "")
	msg = netOpRE.ReplaceAllString(msg, "$1 $2:")
	msg = lookupRE.ReplaceAllString(msg, "lookup:")
	return msg
}

// plural returns n and the noun that agrees with it: "1 optimization".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
