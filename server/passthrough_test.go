package server

import (
	"bytes"
	"cmp"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tpoproject/tpo/tpotest"
)

func TestAppendRenamed(t *testing.T) {
	tests := []struct {
		name, in, want string // want "": unchanged
	}{
		{"first", `{"model":"up","x":1}`, `{"model":"off/up","x":1}`},
		{"spaced", `{ "id" : "c", "model" : "up" , "x":1}`, `{ "id" : "c", "model" : "off/up" , "x":1}`},
		{"after nested", `{"choices":[{"delta":{"model":"in","content":"\"model\":\"no\""}}],"model":"up"}`,
			`{"choices":[{"delta":{"model":"in","content":"\"model\":\"no\""}}],"model":"off/up"}`},
		{"a value named model", `{"id":"model","model":"up"}`, `{"id":"model","model":"off/up"}`},
		{"escaped key text", `{"a\"model":"x","model":"up"}`, `{"a\"model":"x","model":"off/up"}`},
		{"only nested", `{"choices":[{"model":"in"}],"usage":{"model":"u"}}`, ""},
		{"none", `{"id":"c","choices":[]}`, ""},
		{"not a string", `{"model":null}`, ""},
		{"not an object", `[{"model":"up"}]`, ""},
		{"broken", `{"id":"c`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := cmp.Or(tt.want, tt.in)
			if got := appendRenamed([]byte("data: "), []byte(tt.in), []byte(`"off/up"`)); string(got) != "data: "+want {
				t.Errorf("appendRenamed(%s) = %s, want %s", tt.in, got, want)
			}
		})
	}
}

// TestPassThroughNamesTheRequestedModel: a pass-through request that named
// the preset off/MODEL gets answers naming off/MODEL, streamed (every
// chunk) or not, the rest as the policy server sent it; one that named
// the model itself gets the policy server's answers unchanged.
func TestPassThroughNamesTheRequestedModel(t *testing.T) {
	chat := tpotest.NewChatServer(t, tpotest.ChatOptions{})
	ts := newHTTPEnv(t, chat)
	const convo = `"messages":[{"role":"user","content":"hello there"}],"seed":3`
	tests := []struct {
		name, body, want string
	}{
		{"preset", `{"model":"off/test-model",` + convo + `}`, "off/test-model"},
		{"preset streamed", `{"model":"off/test-model","stream":true,"stream_options":{"include_usage":true},` + convo + `}`, "off/test-model"},
		{"mode off", `{"model":"test-model","tpo":{"mode":"off"},` + convo + `}`, "test-model"},
		{"mode off streamed", `{"model":"test-model","tpo":{"mode":"off"},"stream":true,` + convo + `}`, "test-model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if !strings.Contains(tt.body, `"stream":true`) {
				var c completion
				decodeJSON(t, resp, http.StatusOK, &c)
				if c.Model != tt.want || len(c.Choices) != 1 || c.Choices[0].Message.Content != "reply seed 3 to: hello there" || c.Usage == nil {
					t.Errorf("answer %+v: want model %s and the upstream's reply", c, tt.want)
				}
				return
			}
			events := readSSE(t, resp.Body)
			var text string
			for _, ev := range events[:len(events)-1] {
				var ch streamChunk
				if err := json.Unmarshal([]byte(ev.Data), &ch); err != nil {
					t.Fatalf("event %q: %v", ev.Data, err)
				}
				if ch.Model != tt.want {
					t.Errorf("chunk %s names model %q, want %s", ev.Data, ch.Model, tt.want)
				}
				if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != nil {
					text += *ch.Choices[0].Delta.Content
				}
			}
			if text != "reply seed 3 to: hello there" || events[len(events)-1].Data != "[DONE]" {
				t.Errorf("streamed text %q, last event %+v", text, events[len(events)-1])
			}
		})
	}
}

// TestRelayLongLines: data lines longer than the relay's buffer, and
// lines cut across reads, arrive whole and renamed.
func TestRelayLongLines(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	in := "data: {\"model\":\"up\",\"content\":\"" + long + "\"}\n\n: comment\r\ndata: {\"model\":\"up\"}\n\ndata: [DONE]\n\n"
	want := strings.ReplaceAll(in, `"model":"up"`, `"model":"off/up"`)
	rec := &flushRecorder{}
	sw := &sseWriter{w: rec, rc: http.NewResponseController(rec)}
	if err := relay(sw, &trickle{b: []byte(in), n: 7}, []byte(`"off/up"`)); err != nil {
		t.Fatal(err)
	}
	if got := rec.buf.String(); got != want {
		t.Errorf("relayed %d bytes, want %d: %.200q", len(got), len(want), got)
	}
}

// trickle reads at most n bytes at a time.
type trickle struct {
	b []byte
	n int
}

func (r *trickle) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[k:]
	return k, nil
}

// flushRecorder is a ResponseWriter that keeps what is written.
type flushRecorder struct {
	buf bytes.Buffer
	h   http.Header
}

func (f *flushRecorder) Header() http.Header {
	if f.h == nil {
		f.h = http.Header{}
	}
	return f.h
}
func (f *flushRecorder) Write(b []byte) (int, error) { return f.buf.Write(b) }
func (f *flushRecorder) WriteHeader(int)             {}
func (f *flushRecorder) Flush()                      {}
