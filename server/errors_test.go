package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/tpoproject/tpo"
)

// secrets are the upstream addresses the failures below carry; no client
// may see them.
var secrets = []string{"gpu7", "10.0.0.5", "http://", "rm.internal"}

// statusErr is a model server's error answer as an Upstream reports it,
// with the server's address in the whole error.
func statusErr(name string, status int, msg, typ, code, param string) *UpstreamError {
	return &UpstreamError{Role: name, Status: status, Message: msg, Type: typ, Code: code, Param: param,
		UnknownModel: status == 404 && (strings.Contains(strings.ToLower(msg), "model") || param == "model"),
		Err:          fmt.Errorf("%s server http://gpu7.internal:8000/v1: POST /chat/completions: %d %s: %s", name, status, http.StatusText(status), msg)}
}

// TestWhoseErrorItIs: an upstream failure the client's request caused
// reaches the client as a 4xx in the OpenAI shape (the SDKs retry 5xx);
// others are 502 or 504. No message shows an upstream address.
func TestWhoseErrorItIs(t *testing.T) {
	refused := &url.Error{Op: "Post", URL: "http://10.0.0.5:8000/v1/chat/completions",
		Err: &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 8000}, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	tests := []struct {
		name   string
		err    error
		status int
		code   string
		param  string
		says   string
	}{
		{"context length", fmt.Errorf("%w: %w", tpo.ErrContextLength,
			statusErr("policy", 400, "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.", "BadRequestError", "400", "")),
			400, "context_length_exceeded", "messages", "maximum context length is 4096"},
		{"unknown model", fmt.Errorf(`model "gpt-9" is not served by policy server http://gpu7.internal:8000/v1 (check the model name): %w`,
			statusErr("policy", 404, "The model `gpt-9` does not exist.", "NotFoundError", "404", "model")),
			404, "model_not_found", "model", "The model `gpt-9` does not exist."},
		{"invalid parameter", statusErr("policy", 400, "temperature must be non-negative", "BadRequestError", "", "temperature"),
			400, "invalid_request", "temperature", "temperature must be non-negative"},
		{"unprocessable", statusErr("policy", 422, "max_tokens: value is not a valid integer", "", "invalid_value", "max_tokens"),
			400, "invalid_value", "max_tokens", "not a valid integer"},
		{"policy 500", statusErr("policy", 500, "CUDA out of memory", "", "", ""), 502, "upstream_status_500", "", "CUDA out of memory"},
		{"policy key", statusErr("policy", 401, "invalid API key", "", "", ""), 502, "upstream_status_401", "", "401"},
		{"policy path", statusErr("policy", 404, "Not Found", "", "", ""), 502, "upstream_status_404", "", "404"},
		{"reward 400", statusErr("reward", 400, "bad input", "", "", ""), 502, "upstream_status_400", "", "bad input"},
		{"refused", fmt.Errorf("policy server http://10.0.0.5:8000/v1: POST /chat/completions: %w (gave up after 4 retries)", refused),
			502, "upstream_error", "", "policy server: POST /chat/completions: dial tcp: connect: connection refused (gave up after 4 retries)"},
		{"no such host", fmt.Errorf("reward server http://rm.internal:9000: POST /classify: %w", &url.Error{Op: "Post", URL: "http://rm.internal:9000/classify",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "rm.internal", Server: "127.0.0.53:53", IsNotFound: true}}}),
			502, "upstream_error", "", "reward server: POST /classify: dial tcp: lookup: no such host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, nil)
			e.up.policy.Err = func(call int, _ tpo.GenerateRequest) error { return tt.err }
			check := func(how string, status int, b errorObject) {
				t.Helper()
				code, param := "", ""
				if b.Code != nil {
					code = *b.Code
				}
				if b.Param != nil {
					param = *b.Param
				}
				if status != tt.status || code != tt.code || param != tt.param || !strings.Contains(b.Message, tt.says) {
					t.Errorf("%s: %d %s param %q: %q; want %d %s param %q saying %q", how, status, code, param, b.Message, tt.status, tt.code, tt.param, tt.says)
				}
				if tt.status < 500 && b.Type != typeInvalidRequest {
					t.Errorf("%s: type %q, want %q", how, b.Type, typeInvalidRequest)
				}
				for _, s := range secrets {
					if strings.Contains(b.Message, s) {
						t.Errorf("%s: message %q shows %q", how, b.Message, s)
					}
				}
			}
			resp := e.post(t, `{"model":"m",`+convo+`}`)
			var b errorBody
			decodeJSON(t, resp, tt.status, &b)
			check("answer", resp.StatusCode, b.Error)

			// Streamed, the error arrives in-band, the same.
			events := readSSE(t, e.post(t, `{"model":"m","stream":true,`+convo+`}`).Body)
			var last streamChunk
			if len(events) < 2 || json.Unmarshal([]byte(events[len(events)-2].Data), &last) != nil || last.Error == nil {
				t.Fatalf("stream: no error before [DONE]: %+v", events)
			}
			check("stream", tt.status, *last.Error)
		})
	}
}

// TestPassThroughErrorsHideUpstream: a pass-through request the upstream
// refuses gets the upstream's status and message, without its address.
func TestPassThroughErrorsHideUpstream(t *testing.T) {
	e := newTestEnv(t, nil)
	e.up.setChat("", statusErr("policy", 404, "The model `x` does not exist.", "NotFoundError", "model_not_found", "model"))
	var b errorBody
	decodeJSON(t, e.post(t, `{"model":"x","tpo":{"mode":"off"},`+convo+`}`), http.StatusNotFound, &b)
	if b.Error.Message != "The model `x` does not exist." || b.Error.Code == nil || *b.Error.Code != "model_not_found" {
		t.Errorf("error = %+v", b.Error)
	}
	// A conversation too long for the model, in llama.cpp's shape, is
	// answered in OpenAI's.
	e.up.setChat("", fmt.Errorf("%w: %w", tpo.ErrContextLength,
		statusErr("policy", 400, "the request exceeds the available context size, try increasing it", "exceed_context_size_error", "400", "")))
	decodeJSON(t, e.post(t, `{"model":"x","tpo":{"mode":"off"},`+convo+`}`), http.StatusBadRequest, &b)
	if b.Error.Code == nil || *b.Error.Code != "context_length_exceeded" || b.Error.Param == nil || *b.Error.Param != "messages" ||
		b.Error.Type != typeInvalidRequest || !strings.HasPrefix(b.Error.Message, "the request exceeds the available context size") {
		t.Errorf("context length: error = %+v, want 400 context_length_exceeded on messages with the server's message", b.Error)
	}
	e.up.setChat("", fmt.Errorf("policy server http://gpu7.internal:8000/v1: POST /chat/completions: %w", context.DeadlineExceeded))
	decodeJSON(t, e.post(t, `{"model":"x","tpo":{"mode":"off"},`+convo+`}`), http.StatusGatewayTimeout, &b)
	if strings.Contains(b.Error.Message, "gpu7") {
		t.Errorf("message %q shows the upstream", b.Error.Message)
	}
}

func TestScrub(t *testing.T) {
	tests := []struct{ in, want string }{
		{"policy server http://gpu7:8000/v1: POST /chat/completions: 500 Internal Server Error: boom",
			"policy server: POST /chat/completions: 500 Internal Server Error: boom"},
		{`policy server https://api.example.com/v1: POST /chat/completions: Post "https://api.example.com/v1/chat/completions": dial tcp 10.0.0.5:443: connect: connection refused`,
			"policy server: POST /chat/completions: dial tcp: connect: connection refused"},
		{"read tcp 127.0.0.1:5555->127.0.0.1:8000: read: connection reset by peer", "read tcp: read: connection reset by peer"},
		{"dial tcp [::1]:8000: connect: connection refused", "dial tcp: connect: connection refused"},
		{"dial tcp: lookup gpu-box on 127.0.0.53:53: no such host", "dial tcp: lookup: no such host"},
		{"servers http://a:1, http://b:2 failed", "servers, failed"},
		{"see (http://x/y).", "see ()."},
		{"no address here: 400 Bad Request", "no address here: 400 Bad Request"},
	}
	for _, tt := range tests {
		if got := scrub(tt.in); got != tt.want {
			t.Errorf("scrub(%q)\n = %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

// FuzzScrub: a URL in a message never survives scrub.
func FuzzScrub(f *testing.F) {
	f.Add("policy server", "gpu7:8000/v1", ": POST /x: boom")
	f.Add(`Post "`, "10.0.0.5/a?b=c", `": dial`)
	f.Fuzz(func(t *testing.T, before, host, after string) {
		keep := func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune(".:/?=&-_", r) {
				return r
			}
			return -1
		}
		u := "http://h" + strings.Map(keep, host)
		if strings.Contains(before+after, "://") {
			return
		}
		if out := scrub(before + " " + u + after); strings.Contains(out, "://") {
			t.Errorf("scrub(%q) = %q", before+" "+u+after, out)
		}
	})
}
