package sim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// FaultKind names a kind of injected fault.
type FaultKind string

// The kinds of faults, in the order their rates are applied. Stats.Faults
// counts them by these names.
const (
	FaultRateLimited FaultKind = "429"
	FaultServerError FaultKind = "500"
	FaultUnavailable FaultKind = "503"
	// FaultTimeout: the server does not answer until the client gives up,
	// the server closes, or Faults.Hang passes (then it answers normally).
	FaultTimeout FaultKind = "timeout"
	// FaultDrop: the server sends the status line, the headers (with the
	// full Content-Length) and half the body, then closes the connection.
	FaultDrop FaultKind = "drop"
	// FaultMalformed: a 200 response whose body is not JSON.
	FaultMalformed FaultKind = "malformed"
	// FaultSlowFirstByte: the response is right but its first byte comes
	// only after Faults.FirstByteDelay.
	FaultSlowFirstByte FaultKind = "slow_first_byte"
)

// faultKinds lists every kind in the order the rates are applied.
var faultKinds = []FaultKind{FaultRateLimited, FaultServerError, FaultUnavailable,
	FaultTimeout, FaultDrop, FaultMalformed, FaultSlowFirstByte}

// ErrorStyle selects whose error bodies injected error statuses carry.
type ErrorStyle string

// The error styles.
const (
	// StyleVLLM: current vLLM, {"error":{"message","type","param","code":<status>}}.
	StyleVLLM ErrorStyle = "vllm"
	// StyleOpenAI: {"error":{"message","type","param","code":"rate_limit_exceeded"|null}}.
	StyleOpenAI ErrorStyle = "openai"
	// StyleFlat: older vLLM and SGLang, {"object":"error","message","type","param","code"}.
	StyleFlat ErrorStyle = "flat"
	// StyleLlamaCpp: llama.cpp server, {"error":{"code","message","type"}}.
	StyleLlamaCpp ErrorStyle = "llamacpp"
	// StyleOllama: Ollama's /v1 routes, {"error":{"message","type":"api_error","param":null,"code":null}}.
	StyleOllama ErrorStyle = "ollama"
	// StyleTGI: TGI and TEI, {"error","error_type"}.
	StyleTGI ErrorStyle = "tgi"
	// StyleMixed draws one of the styles above for each fault.
	StyleMixed ErrorStyle = "mixed"
)

var styles = []ErrorStyle{StyleVLLM, StyleOpenAI, StyleFlat, StyleLlamaCpp, StyleOllama, StyleTGI}

// Faults are the probabilities of injecting each kind of fault into a
// request. One draw per request picks at most one fault: the rates are
// applied in the order of the fields below (the order of the FaultKind
// constants), so their sum should not exceed 1; negative rates count as 0.
type Faults struct {
	RateLimited   float64 // 429
	ServerError   float64 // 500
	Unavailable   float64 // 503
	Timeout       float64
	Drop          float64
	Malformed     float64
	SlowFirstByte float64

	// Style is the error body of the error statuses (default StyleVLLM).
	Style ErrorStyle
	// RetryAfter, when positive, is sent as a Retry-After header (in whole
	// seconds, at least 1) with 429 and 503.
	RetryAfter time.Duration
	// Hang is how long a timeout lasts when the client waits (default 5m).
	// FirstByteDelay is the delay of a slow first byte (default 2s). Both
	// are wall time, not scaled.
	Hang           time.Duration
	FirstByteDelay time.Duration
}

func (f Faults) withDefaults() Faults {
	if f.Style == "" {
		f.Style = StyleVLLM
	}
	if f.Hang <= 0 {
		f.Hang = 5 * time.Minute
	}
	if f.FirstByteDelay <= 0 {
		f.FirstByteDelay = 2 * time.Second
	}
	return f
}

func (f Faults) rate(k FaultKind) float64 {
	var r float64
	switch k {
	case FaultRateLimited:
		r = f.RateLimited
	case FaultServerError:
		r = f.ServerError
	case FaultUnavailable:
		r = f.Unavailable
	case FaultTimeout:
		r = f.Timeout
	case FaultDrop:
		r = f.Drop
	case FaultMalformed:
		r = f.Malformed
	case FaultSlowFirstByte:
		r = f.SlowFirstByte
	}
	return max(r, 0)
}

// pick maps a uniform draw u in [0,1) to a fault kind, or "" for none.
func (f Faults) pick(u float64) FaultKind {
	var acc float64
	for _, k := range faultKinds {
		acc += f.rate(k)
		if u < acc {
			return k
		}
	}
	return ""
}

// errorBody returns the body a server of the given style sends with status.
func errorBody(style ErrorStyle, status int) []byte {
	msg := map[int]string{
		http.StatusTooManyRequests:     "too many requests: the simulated server is rate limiting",
		http.StatusInternalServerError: "internal error in the simulated server",
		http.StatusServiceUnavailable:  "the simulated server is overloaded; try again later",
	}[status]
	var v any
	switch style {
	case StyleOpenAI:
		typ, code := "server_error", any(nil)
		if status == http.StatusTooManyRequests {
			typ, code = "requests", "rate_limit_exceeded"
		}
		v = map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": code}}
	case StyleFlat:
		v = map[string]any{"object": "error", "message": msg, "type": vllmErrorType(status), "param": nil, "code": status}
	case StyleLlamaCpp:
		typ := "server_error"
		if status == http.StatusServiceUnavailable {
			typ, msg = "unavailable_error", "Loading model"
		}
		v = map[string]any{"error": map[string]any{"code": status, "message": msg, "type": typ}}
	case StyleOllama:
		if status == http.StatusServiceUnavailable {
			msg = "server busy, please try again.  maximum pending requests exceeded"
		}
		v = map[string]any{"error": map[string]any{"message": msg, "type": "api_error", "param": nil, "code": nil}}
	case StyleTGI:
		typ := "generation"
		if status != http.StatusInternalServerError {
			typ = "overloaded"
		}
		v = map[string]any{"error": msg, "error_type": typ}
	default:
		v = map[string]any{"error": map[string]any{"message": msg, "type": vllmErrorType(status), "param": nil, "code": status}}
	}
	b, _ := json.Marshal(v)
	return b
}

// vllmErrorType is the "type" vLLM gives an error of this status.
func vllmErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "BadRequestError"
	case http.StatusNotFound:
		return "NotFoundError"
	case http.StatusTooManyRequests:
		return "TooManyRequestsError"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailableError"
	}
	return "InternalServerError"
}

// statusOf is the HTTP status of an error fault, or 0.
func statusOf(k FaultKind) int {
	switch k {
	case FaultRateLimited:
		return http.StatusTooManyRequests
	case FaultServerError:
		return http.StatusInternalServerError
	case FaultUnavailable:
		return http.StatusServiceUnavailable
	}
	return 0
}

// dropConnection sends the headers and half of body, then closes the
// connection. Where the connection cannot be hijacked (HTTP/2), it aborts
// the response instead.
func dropConnection(w http.ResponseWriter, body []byte) {
	half := body[:len(body)/2]
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(half)
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
	defer conn.Close()
	writeRaw(rw.Writer, len(body), half)
}

func writeRaw(w *bufio.Writer, length int, part []byte) {
	fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", length)
	w.Write(part)
	w.Flush()
}

// malformed turns a JSON body into one that is not JSON: cut in the middle
// and followed by text, as when a proxy mangles a response.
func malformed(body []byte) []byte {
	out := append([]byte(nil), body[:len(body)/2]...)
	return append(out, "\n<!-- upstream connection reset -->\n"...)
}
