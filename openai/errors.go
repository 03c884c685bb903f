package openai

import (
	"errors"
	"time"

	"github.com/tpoproject/tpo/httpx"
)

// APIError is a model server's answer with an error status, in the terms
// of the OpenAI API's error body.
type APIError struct {
	// Role is what the server is to tpo: "policy", "reward", "judge".
	Role   string
	Status int // the HTTP status
	Type   string
	Param  string
	Code   string
	// Message is the server's own message.
	Message string
	// RetryAfter is the delay the server asked for, or zero.
	RetryAfter time.Duration
	// UnknownModel is true when the answer says the model asked for is not
	// one the server serves (see IsUnknownModel).
	UnknownModel bool
	// ContextLength is true when the answer says the request does not fit
	// the model's context window (see IsContextLength).
	ContextLength bool
}

// ErrorOf returns the error answer of a model server that err wraps: the
// errors of this package's Client, and of every client built on package
// httpx (the reward backends), wrap one when a server answers with an
// error status. It reports false for other failures (a refused
// connection, a timeout).
func ErrorOf(err error) (APIError, bool) {
	var se *httpx.StatusError
	if !errors.As(err, &se) {
		return APIError{}, false
	}
	return APIError{Role: se.Name, Status: se.Status, Type: se.Type, Param: se.Param, Code: se.Code, Message: se.Message,
		RetryAfter: se.RetryAfter, UnknownModel: IsUnknownModel(se), ContextLength: IsContextLength(se)}, true
}
