package reward

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/tpotest"
)

var testConversation = []tpo.Message{
	{Role: tpo.RoleSystem, Content: "Be brief."},
	{Role: tpo.RoleUser, Content: "Is water wet?"},
}

var testResponses = []string{
	"Yes.",
	"A good question: water makes other things wet.",
	"bad bad answer",
}

// wantRewards are tpotest.LastReplyReward of testResponses.
func wantRewards(responses []string) []float64 {
	out := make([]float64, len(responses))
	for i, r := range responses {
		out[i] = tpotest.TextReward(r)
	}
	return out
}

func newTestVLLM(t *testing.T, url string, opts VLLMOptions) *VLLM {
	t.Helper()
	opts.URLs = []string{url}
	opts.BaseBackoff = time.Millisecond
	opts.MaxBackoff = 2 * time.Millisecond
	s, err := NewVLLM(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// compactJSON returns v encoded as JSON, or body compacted.
func compactJSON(t *testing.T, body []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, body); err != nil {
		t.Fatalf("request body is not JSON: %v: %s", err, body)
	}
	return b.String()
}

func TestVLLMClassifyRequests(t *testing.T) {
	srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{})
	s := newTestVLLM(t, srv.URL+"/v1/", VLLMOptions{Model: "rm"})
	got, err := values(s.Score(context.Background(), testConversation, testResponses))
	if err != nil {
		t.Fatal(err)
	}
	if want := wantRewards(testResponses); !slices.Equal(got, want) {
		t.Errorf("scores = %v, want %v", got, want)
	}

	reqs := srv.Requests()
	if len(reqs) != len(testResponses)+1 {
		t.Fatalf("got %d requests, want %d tokenize + 1 classify", len(reqs), len(testResponses))
	}
	// The tokenize requests run concurrently: compare them as a set.
	var tokenize []string
	for _, r := range reqs[:len(testResponses)] {
		if r.Path != "/tokenize" {
			t.Fatalf("request to %s before /classify, want /tokenize", r.Path)
		}
		tokenize = append(tokenize, compactJSON(t, r.Body))
	}
	var want []string
	for _, r := range testResponses {
		rb, _ := json.Marshal(r)
		want = append(want, `{"model":"rm","messages":[{"role":"system","content":"Be brief."},`+
			`{"role":"user","content":"Is water wet?"},{"role":"assistant","content":`+string(rb)+`}],`+
			`"add_generation_prompt":false}`)
	}
	slices.Sort(tokenize)
	slices.Sort(want)
	if !slices.Equal(tokenize, want) {
		t.Errorf("tokenize bodies:\n%s\nwant:\n%s", strings.Join(tokenize, "\n"), strings.Join(want, "\n"))
	}

	last := reqs[len(reqs)-1]
	if last.Path != "/classify" {
		t.Fatalf("last request to %s, want /classify", last.Path)
	}
	var ids []string
	for _, r := range testResponses {
		b, _ := json.Marshal(tpotest.TokenIDs(tpotest.RenderChat(withResponse(testConversation, r), false)))
		ids = append(ids, string(b))
	}
	wantClassify := `{"model":"rm","input":[` + strings.Join(ids, ",") + `],"use_activation":false}`
	if got := compactJSON(t, last.Body); got != wantClassify {
		t.Errorf("classify body:\n%s\nwant:\n%s", got, wantClassify)
	}
}

func TestVLLMModelOmitted(t *testing.T) {
	srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{})
	s := newTestVLLM(t, srv.URL, VLLMOptions{})
	if _, err := s.Score(context.Background(), testConversation, testResponses[:1]); err != nil {
		t.Fatal(err)
	}
	for _, r := range srv.Requests() {
		if bytes.Contains(r.Body, []byte(`"model"`)) {
			t.Errorf("%s body has a model field without a model set: %s", r.Path, r.Body)
		}
	}
}

func TestVLLMClassifyOutOfOrder(t *testing.T) {
	srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{ReverseClassify: true})
	s := newTestVLLM(t, srv.URL, VLLMOptions{})
	got, err := values(s.Score(context.Background(), testConversation, testResponses))
	if err != nil {
		t.Fatal(err)
	}
	if want := wantRewards(testResponses); !slices.Equal(got, want) {
		t.Errorf("scores = %v, want %v (matched by index)", got, want)
	}
}

func TestVLLMPoolingRequests(t *testing.T) {
	for _, tokenLevel := range []bool{false, true} {
		t.Run(fmt.Sprintf("token level %v", tokenLevel), func(t *testing.T) {
			srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{})
			s := newTestVLLM(t, srv.URL, VLLMOptions{Model: "rm", Method: MethodPooling, TokenLevel: tokenLevel})
			got, err := values(s.Score(context.Background(), testConversation, testResponses))
			if err != nil {
				t.Fatal(err)
			}
			if want := wantRewards(testResponses); !slices.Equal(got, want) {
				t.Errorf("scores = %v, want %v", got, want)
			}
			task := "classify"
			if tokenLevel {
				task = "token_classify"
			}
			var bodies, want []string
			for _, r := range srv.Requests() {
				if r.Path != "/pooling" {
					t.Errorf("request to %s, want only /pooling", r.Path)
				}
				bodies = append(bodies, compactJSON(t, r.Body))
			}
			for _, r := range testResponses {
				rb, _ := json.Marshal(r)
				want = append(want, `{"model":"rm","task":"`+task+`","use_activation":false,"messages":[`+
					`{"role":"system","content":"Be brief."},{"role":"user","content":"Is water wet?"},`+
					`{"role":"assistant","content":`+string(rb)+`}],"add_generation_prompt":false}`)
			}
			slices.Sort(bodies)
			slices.Sort(want)
			if !slices.Equal(bodies, want) {
				t.Errorf("pooling bodies:\n%s\nwant:\n%s", strings.Join(bodies, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestVLLMEmpty(t *testing.T) {
	srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{})
	for _, method := range []string{MethodClassify, MethodPooling} {
		s := newTestVLLM(t, srv.URL, VLLMOptions{Method: method})
		got, err := values(s.Score(context.Background(), testConversation, nil))
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("%s: Score(no responses) = %#v, %v; want an empty slice", method, got, err)
		}
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests for no responses, want 0", n)
	}
}

// warnings collects the messages of warnings logged.
type warnings struct {
	msgs atomic.Pointer[[]string]
}

func (w *warnings) logger() *slog.Logger {
	w.msgs.Store(&[]string{})
	return slog.New(&captureHandler{w: w})
}

func (w *warnings) list() []string { return *w.msgs.Load() }

type captureHandler struct{ w *warnings }

func (h *captureHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

// Handle records the message followed by the attributes, " key=value" each.
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	for {
		old := h.w.msgs.Load()
		next := append(slices.Clone(*old), line)
		if h.w.msgs.CompareAndSwap(old, &next) {
			return nil
		}
	}
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

func countSigmoidWarnings(msgs []string) int {
	n := 0
	for _, m := range msgs {
		if strings.Contains(m, "sigmoid") {
			n++
		}
	}
	return n
}

func TestVLLMSigmoidWarning(t *testing.T) {
	tests := []struct {
		name   string
		server tpotest.VLLMRewardOptions
		method string
		want   int
	}{
		{"old vLLM ignores use_activation", tpotest.VLLMRewardOptions{IgnoreUseActivation: true}, MethodClassify, 1},
		{"old vLLM, pooling", tpotest.VLLMRewardOptions{IgnoreUseActivation: true}, MethodPooling, 1},
		{"current vLLM", tpotest.VLLMRewardOptions{}, MethodClassify, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tpotest.NewVLLMRewardServer(t, tt.server)
			var w warnings
			s := newTestVLLM(t, srv.URL, VLLMOptions{Options: httpx.Options{Logger: w.logger()}, Method: tt.method})
			for range 3 {
				if _, err := s.Score(context.Background(), testConversation, testResponses); err != nil {
					t.Fatal(err)
				}
			}
			if got := countSigmoidWarnings(w.list()); got != tt.want {
				t.Errorf("%d sigmoid warnings after 3 calls, want %d (warnings: %q)", got, tt.want, w.list())
			}
		})
	}
}

func TestVLLMSigmoidWarningStopsOnceOutside(t *testing.T) {
	// The first call's scores lie in (0,1), the second's do not: one
	// warning, and none after scores proved raw.
	var calls atomic.Int32
	srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{
		Reward: func([]tpo.Message) float64 {
			if calls.Add(1) <= 2 {
				return 0.5
			}
			return 4
		},
	})
	var w warnings
	s := newTestVLLM(t, srv.URL, VLLMOptions{Options: httpx.Options{Logger: w.logger()}, Method: MethodPooling})
	for range 3 {
		if _, err := s.Score(context.Background(), testConversation, testResponses[:2]); err != nil {
			t.Fatal(err)
		}
	}
	if got := countSigmoidWarnings(w.list()); got != 1 {
		t.Errorf("%d sigmoid warnings, want 1", got)
	}
}

func TestVLLMTooLong(t *testing.T) {
	long := strings.Repeat("word ", 200)
	responses := []string{"short", long, "also short"}
	tests := []struct {
		name   string
		server tpotest.VLLMRewardOptions
		method string
		want   []string
	}{
		{
			"checked from /tokenize", tpotest.VLLMRewardOptions{MaxModelLen: 500}, MethodClassify,
			[]string{"response 1", "maximum of 500"},
		},
		{
			"refused by /classify", tpotest.VLLMRewardOptions{MaxModelLen: 500, HideMaxModelLen: true}, MethodClassify,
			[]string{"response 1", "reward server", "400", "maximum context length is 500 tokens"},
		},
		{
			"refused by /pooling", tpotest.VLLMRewardOptions{MaxModelLen: 500}, MethodPooling,
			[]string{"response 1", "reward server", "400", "maximum context length is 500 tokens"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tpotest.NewVLLMRewardServer(t, tt.server)
			s := newTestVLLM(t, srv.URL, VLLMOptions{Method: tt.method})
			_, err := s.Score(context.Background(), testConversation, responses)
			if err == nil {
				t.Fatal("no error for an over-long response")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestVLLMRetriesAndErrors(t *testing.T) {
	// The first /classify fails with a 503, the retry succeeds.
	var failed atomic.Bool
	srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{
		Intercept: func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
			if r.URL.Path == "/classify" && !failed.Swap(true) {
				http.Error(w, `{"error":{"message":"busy","type":"ServiceUnavailable","code":503}}`, http.StatusServiceUnavailable)
				return true
			}
			return false
		},
	})
	s := newTestVLLM(t, srv.URL, VLLMOptions{})
	got, err := values(s.Score(context.Background(), testConversation, testResponses))
	if err != nil {
		t.Fatal(err)
	}
	if want := wantRewards(testResponses); !slices.Equal(got, want) {
		t.Errorf("scores = %v, want %v", got, want)
	}
	if n := srv.Count("/classify"); n != 2 {
		t.Errorf("%d /classify requests, want 2 (one retry)", n)
	}

	// A permanent error names the server, the status and its message.
	bad := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{
		Intercept: func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"message":"invalid API key","type":"Unauthorized","code":401}}`)
			return true
		},
	})
	s = newTestVLLM(t, bad.URL, VLLMOptions{Method: MethodPooling})
	_, err = s.Score(context.Background(), testConversation, testResponses[:1])
	if err == nil {
		t.Fatal("no error from a server answering 401")
	}
	for _, w := range []string{bad.URL, "401", "invalid API key", "/pooling"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestNewVLLMOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    VLLMOptions
		wantErr string
	}{
		{"no URL", VLLMOptions{}, "no URL"},
		{"bad method", VLLMOptions{Options: httpx.Options{URLs: []string{"http://h"}}, Method: "score"}, `unknown vLLM method "score"`},
		{"token level with classify", VLLMOptions{Options: httpx.Options{URLs: []string{"http://h"}}, TokenLevel: true}, "pooling method"},
	}
	for _, tt := range tests {
		_, err := NewVLLM(tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: NewVLLM error = %v, want one containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestVLLMRoot(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://h:8000", "http://h:8000"},
		{"http://h:8000/", "http://h:8000"},
		{"http://h:8000/v1", "http://h:8000"},
		{"http://h:8000/v1/", "http://h:8000"},
		{" http://h/rm/v1 ", "http://h/rm"},
		{"http://h/v10", "http://h/v10"},
	}
	for _, tt := range tests {
		if got := VLLMRoot(tt.in); got != tt.want {
			t.Errorf("VLLMRoot(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// poolingBody is the exact /pooling request body for a response to
// testConversation.
func poolingBody(model, task, response string) string {
	rb, _ := json.Marshal(response)
	return `{"model":"` + model + `","task":"` + task + `","use_activation":false,"messages":[` +
		`{"role":"system","content":"Be brief."},{"role":"user","content":"Is water wet?"},` +
		`{"role":"assistant","content":` + string(rb) + `}],"add_generation_prompt":false}`
}

func TestVLLMClassifyRefusesTokenIDs(t *testing.T) {
	srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{Version: "0.11.2", RefuseTokenIDs: true})
	var w warnings
	s := newTestVLLM(t, srv.URL, VLLMOptions{Options: httpx.Options{Logger: w.logger()}, Model: "rm"})
	want := wantRewards(testResponses)

	// The first call switches to /pooling and scores there; raw scores.
	scores, err := s.Score(context.Background(), testConversation, testResponses)
	if err != nil {
		t.Fatal(err)
	}
	if got := scores.Values; !slices.Equal(got, want) {
		t.Errorf("scores = %v, want the raw rewards %v", got, want)
	}
	if n := srv.Count("/classify"); n != 1 {
		t.Errorf("%d /classify requests, want 1: the refusal is not worked around one response at a time", n)
	}
	if notes := scores.Notes; len(notes) != 1 || !strings.Contains(notes[0], "/pooling") || !strings.Contains(notes[0], srv.URL) {
		t.Errorf("notes = %q, want one about the switch to /pooling", notes)
	}
	first := len(srv.Requests())

	// Later calls, concurrent ones too, go to /pooling alone.
	var g errgroup.Group
	for range 4 {
		g.Go(func() error {
			scores, err := s.Score(context.Background(), testConversation, testResponses)
			if err == nil && !slices.Equal(scores.Values, want) {
				err = fmt.Errorf("scores = %v, want %v", scores.Values, want)
			}
			if err == nil && len(scores.Notes) != 0 {
				err = fmt.Errorf("notes %q on a call after the switch", scores.Notes)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	later := srv.Requests()[first:]
	var bodies, wantBodies []string
	for _, r := range later {
		if r.Path != "/pooling" {
			t.Fatalf("request to %s after the switch, want only /pooling", r.Path)
		}
		bodies = append(bodies, compactJSON(t, r.Body))
	}
	for range 4 {
		for _, r := range testResponses {
			wantBodies = append(wantBodies, poolingBody("rm", "classify", r))
		}
	}
	slices.Sort(bodies)
	slices.Sort(wantBodies)
	if !slices.Equal(bodies, wantBodies) {
		t.Errorf("pooling bodies:\n%s\nwant:\n%s", strings.Join(bodies, "\n"), strings.Join(wantBodies, "\n"))
	}
	var switches []string
	for _, l := range w.list() {
		if strings.Contains(l, "/pooling") {
			switches = append(switches, l)
		}
	}
	if len(switches) != 1 || !strings.Contains(switches[0], srv.URL) {
		t.Errorf("switch warnings = %q, want one naming %s", switches, srv.URL)
	}
}

func TestVLLMClassifyRefusalOfOneResponse(t *testing.T) {
	// A single response: the refusal is still a switch, not an error.
	srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{RefuseTokenIDs: true})
	s := newTestVLLM(t, srv.URL, VLLMOptions{})
	got, err := values(s.Score(context.Background(), testConversation, testResponses[:1]))
	if err != nil {
		t.Fatal(err)
	}
	if want := wantRewards(testResponses[:1]); !slices.Equal(got, want) {
		t.Errorf("scores = %v, want %v", got, want)
	}
	if n := srv.Count("/pooling"); n != 1 {
		t.Errorf("%d /pooling requests, want 1", n)
	}
}

func TestVLLMOtherRefusalsNotSwitched(t *testing.T) {
	// A 400 about something else is not a token-id refusal: the batch is
	// retried one response at a time and the error names the response.
	srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{
		Intercept: func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
			if r.URL.Path != "/classify" {
				return false
			}
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"message":"Input should be a list of integers","type":"BadRequestError","code":400}}`)
			return true
		},
	})
	s := newTestVLLM(t, srv.URL, VLLMOptions{})
	_, err := s.Score(context.Background(), testConversation, testResponses)
	if err == nil || !strings.Contains(err.Error(), "response 0") {
		t.Fatalf("err = %v, want one naming response 0", err)
	}
	if srv.Count("/pooling") != 0 || srv.Count("/classify") != 2 {
		t.Errorf("%d /pooling, %d /classify requests; want 0 and 2", srv.Count("/pooling"), srv.Count("/classify"))
	}
}

func TestVLLMNeverSendsLegacyActivation(t *testing.T) {
	// Whatever the method and server version, the bodies hold exactly these
	// fields: never "activation", which from 0.11.1 turns the activation on.
	wantKeys := map[string]string{
		"/tokenize": "add_generation_prompt,messages,model",
		"/classify": "input,model,use_activation",
		"/pooling":  "add_generation_prompt,messages,model,task,use_activation",
	}
	for _, version := range []string{"0.10.1", "0.11.1", "0.12.0"} {
		for _, server := range []tpotest.VLLMRewardOptions{{Version: version}, {Version: version, RefuseTokenIDs: true}} {
			srv := tpotest.NewVLLMRewardServer(t, server)
			for _, method := range []string{MethodClassify, MethodPooling} {
				s := newTestVLLM(t, srv.URL, VLLMOptions{Model: "rm", Method: method, AllowOldServer: true})
				if _, err := s.Score(context.Background(), testConversation, testResponses); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range srv.Requests() {
				var body map[string]json.RawMessage
				if err := json.Unmarshal(r.Body, &body); err != nil {
					t.Fatalf("%s body %s: %v", r.Path, r.Body, err)
				}
				keys := slices.Sorted(maps.Keys(body))
				if got := strings.Join(keys, ","); got != wantKeys[r.Path] {
					t.Errorf("vLLM %s: %s body fields %s, want %s", version, r.Path, got, wantKeys[r.Path])
				}
				for _, k := range []string{"use_activation", "add_generation_prompt"} {
					if v, ok := body[k]; ok && string(v) != "false" {
						t.Errorf("%s: %s is %s, want false", r.Path, k, v)
					}
				}
			}
		}
	}
}

func TestVLLMPoolingOldGenerationPromptDefault(t *testing.T) {
	// A server defaulting add_generation_prompt to true would score every
	// response after an empty assistant turn; the scorer says false.
	srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{PoolingGenerationPrompt: true})
	s := newTestVLLM(t, srv.URL, VLLMOptions{Method: MethodPooling})
	got, err := values(s.Score(context.Background(), testConversation, testResponses))
	if err != nil {
		t.Fatal(err)
	}
	if want := wantRewards(testResponses); !slices.Equal(got, want) {
		t.Errorf("scores = %v, want %v", got, want)
	}
}

func TestVLLMSigmoidExactOne(t *testing.T) {
	// An old server in bf16: rewards above about +6 come back as exactly 1.
	tests := []struct {
		name   string
		server tpotest.VLLMRewardOptions
		want   int
	}{
		{"old bf16 server, high rewards", tpotest.VLLMRewardOptions{Version: "0.10.1", BF16: true,
			Reward: func([]tpo.Message) float64 { return 8 }}, 1},
		{"current server, high rewards", tpotest.VLLMRewardOptions{Version: "0.11.1", BF16: true,
			Reward: func([]tpo.Message) float64 { return 8 }}, 0},
		{"raw rewards of exactly 0 and 1", tpotest.VLLMRewardOptions{
			Reward: func(m []tpo.Message) float64 { return float64(len(m[len(m)-1].Content) % 2) }}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tpotest.NewVLLMRewardServer(t, tt.server)
			var w warnings
			s := newTestVLLM(t, srv.URL, VLLMOptions{Options: httpx.Options{Logger: w.logger()}, AllowOldServer: true})
			got, err := values(s.Score(context.Background(), testConversation, testResponses))
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == 1 && tt.server.BF16 && !slices.Equal(got, []float64{1, 1, 1}) {
				t.Errorf("scores = %v, want exactly 1 each", got)
			}
			if n := countSigmoidWarnings(w.list()); n != tt.want {
				t.Errorf("%d sigmoid warnings, want %d (%q)", n, tt.want, w.list())
			}
		})
	}
}
