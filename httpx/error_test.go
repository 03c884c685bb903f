package httpx

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseErrorBody(t *testing.T) {
	tests := []struct {
		name string
		body string
		want StatusError
		ok   bool
	}{
		{
			name: "openai",
			body: `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`,
			want: StatusError{Message: "You exceeded your current quota", Type: "insufficient_quota", Code: "insufficient_quota"},
			ok:   true,
		},
		{
			name: "openai context",
			body: `{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`,
			want: StatusError{Message: "This model's maximum context length is 8192 tokens.", Type: "invalid_request_error", Param: "messages", Code: "context_length_exceeded"},
			ok:   true,
		},
		{
			name: "vllm nested numeric code",
			body: `{"error":{"message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens","type":"BadRequestError","param":null,"code":400}}`,
			want: StatusError{Message: "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens", Type: "BadRequestError", Code: "400"},
			ok:   true,
		},
		{
			name: "vllm flat",
			body: `{"object":"error","message":"The model foo does not exist.","type":"NotFoundError","param":null,"code":404}`,
			want: StatusError{Message: "The model foo does not exist.", Type: "NotFoundError", Code: "404"},
			ok:   true,
		},
		{
			name: "sglang flat",
			body: `{"object":"error","message":"Input is too long","type":"BadRequest","code":400}`,
			want: StatusError{Message: "Input is too long", Type: "BadRequest", Code: "400"},
			ok:   true,
		},
		{
			name: "tgi",
			body: `{"error":"Input validation error: inputs tokens + max_new_tokens must be <= 4096","error_type":"validation"}`,
			want: StatusError{Message: "Input validation error: inputs tokens + max_new_tokens must be <= 4096", Type: "validation"},
			ok:   true,
		},
		{
			name: "tei",
			body: `{"error":"Model is overloaded","error_type":"Overloaded"}`,
			want: StatusError{Message: "Model is overloaded", Type: "Overloaded"},
			ok:   true,
		},
		{
			name: "ollama native",
			body: `{"error":"model \"llama9\" not found, try pulling it first"}`,
			want: StatusError{Message: `model "llama9" not found, try pulling it first`},
			ok:   true,
		},
		{
			name: "llama.cpp",
			body: `{"error":{"code":500,"message":"Only one completion choice is allowed","type":"server_error"}}`,
			want: StatusError{Message: "Only one completion choice is allowed", Type: "server_error", Code: "500"},
			ok:   true,
		},
		{
			name: "llama.cpp context",
			body: `{"error":{"code":400,"message":"the request exceeds the available context size","type":"exceed_context_size_error","n_prompt_tokens":5000,"n_ctx":4096}}`,
			want: StatusError{Message: "the request exceeds the available context size", Type: "exceed_context_size_error", Code: "400"},
			ok:   true,
		},
		{
			name: "fastapi detail string",
			body: `{"detail":"Not Found"}`,
			want: StatusError{Message: "Not Found"},
			ok:   true,
		},
		{
			name: "fastapi detail list",
			body: `{"detail":[{"loc":["body","messages"],"msg":"field required","type":"value_error.missing"}]}`,
			want: StatusError{Message: "body.messages: field required"},
			ok:   true,
		},
		{
			name: "plain text",
			body: "  upstream connect error\n",
			want: StatusError{Message: "upstream connect error"},
		},
		{
			name: "html",
			body: "<html><body>502 Bad Gateway</body></html>",
			want: StatusError{Message: "<html><body>502 Bad Gateway</body></html>"},
		},
		{
			name: "empty",
			body: "",
			want: StatusError{},
		},
		{
			name: "json without error fields",
			body: `{"foo":1}`,
			want: StatusError{Message: `{"foo":1}`},
		},
		{
			name: "json array",
			body: `[1,2]`,
			want: StatusError{Message: `[1,2]`},
		},
		{
			name: "error object without message",
			body: `{"error":{"type":"rate_limit_exceeded"}}`,
			want: StatusError{Type: "rate_limit_exceeded"},
			ok:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseErrorBody([]byte(tt.body))
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseErrorBody(%s) = %+v, %v; want %+v, %v", tt.body, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseErrorBodyCapsText(t *testing.T) {
	body := strings.Repeat("é", 3000) // 6000 bytes
	got, _ := ParseErrorBody([]byte(body))
	if len(got.Message) > maxMessage+len("…") {
		t.Errorf("message length = %d, want at most %d", len(got.Message), maxMessage+len("…"))
	}
	if !utf8.ValidString(got.Message) {
		t.Errorf("capped message is not valid UTF-8")
	}
	if !strings.HasSuffix(got.Message, "…") {
		t.Errorf("capped message does not end with an ellipsis")
	}
}

func TestStatusErrorError(t *testing.T) {
	tests := []struct {
		err  StatusError
		want string
	}{
		{
			StatusError{Name: "policy", Server: "http://h:8000/v1", Method: "POST", Path: "/chat/completions", Status: 400, Message: "bad things", Type: "BadRequestError", Code: "400"},
			"policy server http://h:8000/v1: POST /chat/completions: 400 Bad Request: bad things (BadRequestError)",
		},
		{
			StatusError{Name: "policy", Server: "https://api.openai.com/v1", Method: "POST", Path: "/chat/completions", Status: 429, Message: "You exceeded your current quota", Type: "insufficient_quota", Code: "insufficient_quota"},
			"policy server https://api.openai.com/v1: POST /chat/completions: 429 Too Many Requests: You exceeded your current quota (insufficient_quota)",
		},
		{
			StatusError{Name: "reward", Server: "http://r", Method: "GET", Path: "/models", Status: 502},
			"reward server http://r: GET /models: 502 Bad Gateway",
		},
		{
			StatusError{Name: "judge", Server: "http://j", Path: "/x", Status: 500, Message: "boom server_error", Type: "server_error"},
			"judge server http://j: POST /x: 500 Internal Server Error: boom server_error",
		},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestStatusErrorTemporary(t *testing.T) {
	tests := []struct {
		status     int
		typ, code  string
		wantRetry  bool
		wantReason string
	}{
		{400, "", "", false, "bad request"},
		{401, "", "", false, "unauthorized"},
		{404, "", "", false, "not found"},
		{408, "", "", true, "request timeout"},
		{422, "", "", false, "validation"},
		{429, "rate_limit_exceeded", "", true, "rate limit"},
		{429, "insufficient_quota", "", false, "quota type"},
		{429, "", "insufficient_quota", false, "quota code"},
		{500, "", "", true, "internal"},
		{501, "", "", false, "not implemented"},
		{502, "", "", true, "bad gateway"},
		{503, "", "", true, "unavailable"},
		{504, "", "", true, "gateway timeout"},
	}
	for _, tt := range tests {
		e := &StatusError{Status: tt.status, Type: tt.typ, Code: tt.code}
		if got := e.Temporary(); got != tt.wantRetry {
			t.Errorf("%s: Temporary() = %v, want %v", tt.wantReason, got, tt.wantRetry)
		}
	}
}

func FuzzParseErrorBody(f *testing.F) {
	for _, s := range []string{
		`{"error":{"message":"m","type":"t","param":"p","code":"c"}}`,
		`{"error":{"message":"m","code":400}}`,
		`{"object":"error","message":"m","type":"t","code":400}`,
		`{"error":"m","error_type":"t"}`,
		`{"detail":[{"loc":["body",1],"msg":"x"}]}`,
		`{"detail":"x"}`,
		`{"error":{"detail":{"a":[1]}}}`,
		`{"error":null}`,
		`{"message":null}`,
		"not json",
		"",
		"\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e, _ := ParseErrorBody(body)
		if len(e.Message) > maxMessage+len("…") {
			t.Errorf("message length %d exceeds the cap", len(e.Message))
		}
		if e.Message != strings.TrimSpace(e.Message) && !strings.HasSuffix(e.Message, "…") {
			t.Errorf("message %q is not trimmed", e.Message)
		}
		se := &StatusError{Name: "x", Server: "http://s", Path: "/p", Status: 500, Message: e.Message, Type: e.Type, Code: e.Code}
		if se.Error() == "" {
			t.Error("empty Error()")
		}
	})
}
