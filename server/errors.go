package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/tpoproject/tpo/httpx"
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
// model server: 504 when a deadline passed, 502 otherwise. The message
// names the server and carries its own message (httpx errors do both).
// deadline says whether the request's own deadline passed.
func upstreamError(err error, deadline bool) *apiError {
	if deadline {
		return &apiError{Status: http.StatusGatewayTimeout, Type: typeTimeout, Code: "request_timeout",
			Message: fmt.Sprintf("the request did not finish in time: %v", err)}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &apiError{Status: http.StatusGatewayTimeout, Type: typeTimeout, Code: "upstream_timeout",
			Message: fmt.Sprintf("upstream timeout: %v", err)}
	}
	e := &apiError{Status: http.StatusBadGateway, Type: typeUpstream, Code: "upstream_error",
		Message: fmt.Sprintf("upstream failure: %v", err)}
	var se *httpx.StatusError
	if errors.As(err, &se) {
		e.Code = "upstream_status_" + strconv.Itoa(se.Status)
	}
	return e
}

// passThroughError is upstreamError for a request relayed unchanged: the
// upstream's verdict on the client's own request (400, 404, 413, 422, 429)
// is relayed with its status, since it is about what the client sent.
func passThroughError(err error, deadline bool) *apiError {
	var se *httpx.StatusError
	if !deadline && errors.As(err, &se) {
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
			e := &apiError{Status: se.Status, Type: typ, Param: se.Param, Code: se.Code,
				Message: fmt.Sprintf("upstream %s", se.Error())}
			if se.RetryAfter > 0 {
				e.RetryAfter = max(1, int(se.RetryAfter.Seconds()+0.5))
			}
			return e
		}
	}
	return upstreamError(err, deadline)
}

// plural returns n and the noun that agrees with it: "1 optimization".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
