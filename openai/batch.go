package openai

import "encoding/json"

// The wire types of the Files and Batch APIs, as tpo serve answers them.

// FileObject describes an uploaded or written file.
type FileObject struct {
	ID        string `json:"id"`
	Object    string `json:"object"` // "file"
	Bytes     int64  `json:"bytes"`
	CreatedAt int64  `json:"created_at"`
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"` // "batch", "batch_output"
	Status    string `json:"status"`  // "processed"
}

// FileDeleted is the answer to deleting a file.
type FileDeleted struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "file"
	Deleted bool   `json:"deleted"`
}

// List is a page of a list of objects.
type List[T any] struct {
	Object  string  `json:"object"` // "list"
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// Batch is a batch object. Times are Unix seconds, null until they
// happen.
type Batch struct {
	ID               string       `json:"id"`
	Object           string       `json:"object"` // "batch"
	Endpoint         string       `json:"endpoint"`
	Model            string       `json:"model,omitempty"`
	Errors           *BatchErrors `json:"errors"`
	InputFileID      string       `json:"input_file_id"`
	CompletionWindow string       `json:"completion_window"`
	// Status is validating, failed, in_progress, finalizing, completed,
	// expired, cancelling or cancelled.
	Status        string             `json:"status"`
	OutputFileID  *string            `json:"output_file_id"`
	ErrorFileID   *string            `json:"error_file_id"`
	CreatedAt     int64              `json:"created_at"`
	InProgressAt  *int64             `json:"in_progress_at"`
	ExpiresAt     *int64             `json:"expires_at"`
	FinalizingAt  *int64             `json:"finalizing_at"`
	CompletedAt   *int64             `json:"completed_at"`
	FailedAt      *int64             `json:"failed_at"`
	ExpiredAt     *int64             `json:"expired_at"`
	CancellingAt  *int64             `json:"cancelling_at"`
	CancelledAt   *int64             `json:"cancelled_at"`
	RequestCounts BatchRequestCounts `json:"request_counts"`
	Metadata      map[string]string  `json:"metadata"`
}

// BatchErrors lists why a batch failed validation.
type BatchErrors struct {
	Object string       `json:"object"` // "list"
	Data   []BatchError `json:"data"`
}

// BatchError is one reason a batch failed, with the line of the input
// file at fault.
type BatchError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
	Line    *int    `json:"line"`
}

// BatchRequestCounts counts the requests of a batch.
type BatchRequestCounts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

// BatchInput is one line of a batch's input file.
type BatchInput struct {
	CustomID string          `json:"custom_id"`
	Method   string          `json:"method"`
	URL      string          `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// BatchOutput is one line of a batch's output or error file: the
// endpoint's answer to the line's request (Response), or why there is
// none (Error).
type BatchOutput struct {
	ID       string               `json:"id"`
	CustomID string               `json:"custom_id"`
	Response *BatchOutputResponse `json:"response"`
	Error    *BatchOutputError    `json:"error"`
}

// BatchOutputResponse is the answer to one request of a batch.
type BatchOutputResponse struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

// BatchOutputError is why a request of a batch has no answer.
type BatchOutputError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
