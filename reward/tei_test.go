package reward

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/tpotest"
)

func newTestTEI(t *testing.T, url string, opts TEIOptions) *TEI {
	t.Helper()
	opts.URLs = []string{url}
	opts.BaseBackoff = time.Millisecond
	opts.MaxBackoff = 2 * time.Millisecond
	s, err := NewTEI(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// predictBatches returns the number of pairs in each /predict request.
func predictBatches(t *testing.T, reqs []tpotest.RewardRequest) []int {
	t.Helper()
	var sizes []int
	for _, r := range reqs {
		var body struct {
			Inputs [][]string `json:"inputs"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("request body %s: %v", r.Body, err)
		}
		sizes = append(sizes, len(body.Inputs))
	}
	return sizes
}

func responsesN(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strings.Repeat("good ", i%3) + fmt.Sprintf("reply %d", i)
	}
	return out
}

func TestTEIRequest(t *testing.T) {
	srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{})
	s := newTestTEI(t, srv.URL, TEIOptions{})
	got, err := values(s.Score(context.Background(), testConversation, testResponses))
	if err != nil {
		t.Fatal(err)
	}
	if want := wantRewards(testResponses); !slices.Equal(got, want) {
		t.Errorf("scores = %v, want %v", got, want)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].Path != "/predict" {
		t.Fatalf("requests = %v, want one to /predict", reqs)
	}
	want := `{"inputs":[["Is water wet?","Yes."],["Is water wet?","A good question: water makes other things wet."],` +
		`["Is water wet?","bad bad answer"]],"raw_scores":true,"truncate":false}`
	if got := compactJSON(t, reqs[0].Body); got != want {
		t.Errorf("body:\n%s\nwant:\n%s", got, want)
	}
}

func TestTEIBatching(t *testing.T) {
	srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{})
	s := newTestTEI(t, srv.URL, TEIOptions{BatchSize: 2})
	responses := responsesN(5)
	got, err := values(s.Score(context.Background(), testConversation, responses))
	if err != nil {
		t.Fatal(err)
	}
	if want := wantRewards(responses); !slices.Equal(got, want) {
		t.Errorf("scores = %v, want %v", got, want)
	}
	if sizes, want := predictBatches(t, srv.Requests()), []int{2, 2, 1}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes = %v, want %v", sizes, want)
	}
}

func TestTEIBatchLimit(t *testing.T) {
	// TEI names its limit; 413 before v1.9, 422 from it.
	for _, version := range []string{"1.8.3", "1.9.3"} {
		t.Run(version, func(t *testing.T) {
			srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{MaxBatch: 3, Version: version})
			var w warnings
			s := newTestTEI(t, srv.URL, TEIOptions{Options: httpx.Options{Logger: w.logger()}, BatchSize: 8})
			responses := responsesN(7)
			got, err := values(s.Score(context.Background(), testConversation, responses))
			if err != nil {
				t.Fatal(err)
			}
			if want := wantRewards(responses); !slices.Equal(got, want) {
				t.Errorf("scores = %v, want %v", got, want)
			}
			// 7 pairs are refused; the server's maximum, 3, is used.
			if sizes, want := predictBatches(t, srv.Requests()), []int{7, 3, 3, 1}; !slices.Equal(sizes, want) {
				t.Errorf("batch sizes = %v, want %v", sizes, want)
			}
			if l := w.list(); len(l) != 1 || !strings.Contains(l[0], "batch_size=3") || !strings.Contains(l[0], srv.URL) {
				t.Errorf("warnings = %q, want one about lowering the batch size to 3", l)
			}
			// The smaller size is kept for later calls.
			if _, err := s.Score(context.Background(), testConversation, responses[:4]); err != nil {
				t.Fatal(err)
			}
			if sizes, want := predictBatches(t, srv.Requests()[4:]), []int{3, 1}; !slices.Equal(sizes, want) {
				t.Errorf("later batch sizes = %v, want %v", sizes, want)
			}
		})
	}
}

func TestTEIBodyLimitHalves(t *testing.T) {
	// The body limit answers a plain-text 413 with no number: halve.
	responses := make([]string, 9)
	for i := range responses {
		responses[i] = fmt.Sprintf("reply %d", i)
	}
	body := func(n int) int {
		b, _ := json.Marshal(predictRequest{Inputs: make([][2]string, n), RawScores: true})
		pair, _ := json.Marshal([2]string{FlattenPrompt(testConversation), responses[0]})
		return len(b) + n*(len(pair)-len(`["",""]`))
	}
	for _, version := range []string{"1.8.3", "1.9.3"} {
		srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{Version: version, PayloadLimit: body(2)})
		s := newTestTEI(t, srv.URL, TEIOptions{BatchSize: 9})
		got, err := values(s.Score(context.Background(), testConversation, responses))
		if err != nil {
			t.Fatal(err)
		}
		if want := wantRewards(responses); !slices.Equal(got, want) {
			t.Errorf("%s: scores = %v, want %v", version, got, want)
		}
		// 9 refused -> 4 refused -> 2 fits.
		if sizes, want := predictBatches(t, srv.Requests()), []int{9, 4, 2, 2, 2, 2, 1}; !slices.Equal(sizes, want) {
			t.Errorf("%s: batch sizes = %v, want %v", version, sizes, want)
		}
	}
}

func TestTEI413OnSinglePair(t *testing.T) {
	srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{
		Intercept: func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			fmt.Fprint(w, `{"error":"payload too large","error_type":"validation"}`)
			return true
		},
	})
	s := newTestTEI(t, srv.URL, TEIOptions{BatchSize: 4})
	_, err := s.Score(context.Background(), testConversation, responsesN(2))
	if err == nil || !strings.Contains(err.Error(), "response 0") || !strings.Contains(err.Error(), "payload too large") {
		t.Fatalf("err = %v, want one naming response 0 and the server's message", err)
	}
	if sizes, want := predictBatches(t, srv.Requests()), []int{2, 1}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes = %v, want %v", sizes, want)
	}
}

func TestTEIOneTooLong(t *testing.T) {
	// The server refuses any batch holding a reply with "huge": the scorer
	// finds which one.
	srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{
		Intercept: func(w http.ResponseWriter, r *http.Request, body []byte) bool {
			if !strings.Contains(string(body), "huge") {
				return false
			}
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"error":"Input validation error: inputs must have less than 512 tokens. Given: 900","error_type":"tokenizer"}`)
			return true
		},
	})
	s := newTestTEI(t, srv.URL, TEIOptions{})
	_, err := s.Score(context.Background(), testConversation, []string{"fine", "fine too", "huge", "fine"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"response 2", "422", "less than 512 tokens", srv.URL} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestTEILabels(t *testing.T) {
	labels := []string{"LABEL_0", "LABEL_1"}
	srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{Labels: labels})
	responses := []string{"a b c", "good"}

	// LABEL_0 by default, though TEI lists LABEL_1 first when it scores higher.
	s := newTestTEI(t, srv.URL, TEIOptions{})
	got, err := values(s.Score(context.Background(), testConversation, responses))
	if err != nil {
		t.Fatal(err)
	}
	if want := wantRewards(responses); !slices.Equal(got, want) {
		t.Errorf("LABEL_0 scores = %v, want %v", got, want)
	}

	s = newTestTEI(t, srv.URL, TEIOptions{LabelName: "LABEL_1"})
	got, err = values(s.Score(context.Background(), testConversation, responses))
	if err != nil {
		t.Fatal(err)
	}
	want := wantRewards(responses)
	for i := range want {
		want[i]--
	}
	if !slices.Equal(got, want) {
		t.Errorf("LABEL_1 scores = %v, want %v", got, want)
	}

	named := tpotest.NewTEIServer(t, tpotest.TEIOptions{Labels: []string{"positive", "negative"}})
	s = newTestTEI(t, named.URL, TEIOptions{})
	if _, err := s.Score(context.Background(), testConversation, responses); err == nil ||
		!strings.Contains(err.Error(), `"positive"`) {
		t.Errorf("err = %v, want one listing the labels", err)
	}
}

func TestTEIEmpty(t *testing.T) {
	srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{})
	s := newTestTEI(t, srv.URL, TEIOptions{})
	got, err := values(s.Score(context.Background(), testConversation, nil))
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("Score(no responses) = %#v, %v; want an empty slice", got, err)
	}
	if n := srv.Count("/predict"); n != 0 {
		t.Errorf("%d requests, want 0", n)
	}
}

func TestTEICustomPrompt(t *testing.T) {
	srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{})
	s := newTestTEI(t, srv.URL, TEIOptions{Prompt: func(m []tpo.Message) string { return "P" + fmt.Sprint(len(m)) }})
	if _, err := s.Score(context.Background(), testConversation, []string{"x"}); err != nil {
		t.Fatal(err)
	}
	want := `{"inputs":[["P2","x"]],"raw_scores":true,"truncate":false}`
	if got := compactJSON(t, srv.Requests()[0].Body); got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
}

func TestNewTEIOptions(t *testing.T) {
	if _, err := NewTEI(TEIOptions{Options: httpx.Options{URLs: []string{"http://h"}}, BatchSize: -1}); err == nil {
		t.Error("no error for a negative batch size")
	}
	if _, err := NewTEI(TEIOptions{}); err == nil {
		t.Error("no error without a URL")
	}
}

func TestFlattenPrompt(t *testing.T) {
	sys := tpo.Message{Role: tpo.RoleSystem, Content: "Be kind."}
	u1 := tpo.Message{Role: tpo.RoleUser, Content: "What is 2+2?"}
	a1 := tpo.Message{Role: tpo.RoleAssistant, Content: "4."}
	u2 := tpo.Message{Role: tpo.RoleUser, Content: "And times 3?"}
	tests := []struct {
		name string
		in   []tpo.Message
		want string
	}{
		{"single turn", []tpo.Message{u1}, "What is 2+2?"},
		{"single turn with system", []tpo.Message{sys, u1}, "What is 2+2?"},
		{"multi turn", []tpo.Message{u1, a1, u2}, "User: What is 2+2?\n\nAssistant: 4.\n\nUser: And times 3?"},
		{"multi turn with system", []tpo.Message{sys, u1, a1, u2},
			"System: Be kind.\n\nUser: What is 2+2?\n\nAssistant: 4.\n\nUser: And times 3?"},
		{"trailing assistant turn ignored", []tpo.Message{u1, a1}, "What is 2+2?"},
		{"no user turn", []tpo.Message{sys}, ""},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		if got := FlattenPrompt(tt.in); got != tt.want {
			t.Errorf("%s: FlattenPrompt() = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// predictTruncates returns the truncate field of each /predict request.
func predictTruncates(t *testing.T, reqs []tpotest.RewardRequest) []bool {
	t.Helper()
	var out []bool
	for _, r := range reqs {
		var body struct {
			Truncate *bool `json:"truncate"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || body.Truncate == nil {
			t.Fatalf("request body %s has no truncate field (%v)", r.Body, err)
		}
		out = append(out, *body.Truncate)
	}
	return out
}

// longReply is 30 words: with the prompt "Is water wet?" (3 words), a pair
// of 36 tokens for the fake TEI.
var longReply = strings.TrimSpace(strings.Repeat("good ", 30))

func TestTEITooLong(t *testing.T) {
	for _, tt := range []struct{ version, status string }{{"1.8.3", "413"}, {"1.9.3", "422"}} {
		t.Run(tt.version, func(t *testing.T) {
			// From 1.9 the server would truncate silently if not told.
			srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{Version: tt.version, MaxInputLength: 20})
			s := newTestTEI(t, srv.URL, TEIOptions{})
			_, err := s.Score(context.Background(), testConversation, []string{"fine", longReply, "fine too"})
			if err == nil {
				t.Fatal("no error for a pair longer than the model's limit")
			}
			for _, want := range []string{"response 1 is too long", "36 tokens, the limit is 20", "--reward-truncate", tt.status, srv.URL} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			for i, tr := range predictTruncates(t, srv.Requests()) {
				if tr {
					t.Errorf("request %d said truncate: true without TEIOptions.Truncate", i)
				}
			}
		})
	}
}

func TestTEITruncateOnPurpose(t *testing.T) {
	for _, version := range []string{"1.8.3", "1.9.3"} {
		t.Run(version, func(t *testing.T) {
			srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{Version: version, MaxInputLength: 20})
			s := newTestTEI(t, srv.URL, TEIOptions{Truncate: true})
			responses := []string{"fine", longReply, "good too"}
			scores, err := s.Score(context.Background(), testConversation, responses)
			if err != nil {
				t.Fatal(err)
			}
			got := scores.Values
			// The long reply is cut to 20-3-3 = 14 words by the server.
			want := []float64{tpotest.TextReward("fine"), tpotest.TextReward(strings.Repeat("good ", 14)), tpotest.TextReward("good too")}
			if !slices.Equal(got, want) {
				t.Errorf("scores = %v, want %v", got, want)
			}
			// The batch, then each pair alone, then the long one truncated.
			if tr, want := predictTruncates(t, srv.Requests()), []bool{false, false, false, true, false}; !slices.Equal(tr, want) {
				t.Errorf("truncate fields = %v, want %v", tr, want)
			}
			if sizes, want := predictBatches(t, srv.Requests()), []int{3, 1, 1, 1, 1}; !slices.Equal(sizes, want) {
				t.Errorf("batch sizes = %v, want %v", sizes, want)
			}
			notes := scores.Notes
			if len(notes) != 1 || !strings.Contains(notes[0], "36 tokens, the limit is 20") || !strings.Contains(notes[0], "good good") {
				t.Errorf("notes = %q, want one about the truncated response", notes)
			}
		})
	}
}

func TestTEITruncateNoteInStep(t *testing.T) {
	// Through the optimizer: the step whose sample was truncated says so.
	srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{MaxInputLength: 20})
	scorer := newTestTEI(t, srv.URL, TEIOptions{Truncate: true})
	policy := &tpotest.Policy{Respond: func(call int, req tpo.GenerateRequest, i int) string {
		if req.Stage == tpo.StageSample && i == 1 {
			return longReply
		}
		if req.Stage == tpo.StageSample {
			return fmt.Sprintf("short answer %d", i)
		}
		return "<improved_response>better " + fmt.Sprint(call, i) + "</improved_response>"
	}}
	cfg := tpo.DefaultConfig()
	cfg.Width, cfg.Depth = 3, 1
	opt := &tpo.Optimizer{Policy: policy, Reward: scorer, Config: cfg}
	res, err := opt.Optimize(context.Background(), tpo.Item{ID: "q", Messages: testConversation}, tpo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var noted []int
	for _, st := range res.Steps {
		for _, n := range st.Notes {
			if strings.Contains(n, "truncated") && strings.Contains(n, "the limit is 20") {
				noted = append(noted, st.Step)
			}
		}
	}
	if !slices.Equal(noted, []int{0}) {
		t.Errorf("steps noting the truncation: %v, want [0] (notes: %q)", noted, res.Steps[0].Notes)
	}
	if got, want := res.Steps[0].Candidates[1].Score, tpotest.TextReward(strings.Repeat("good ", 14)); got != want {
		t.Errorf("the long sample scored %v, want %v (its truncated text)", got, want)
	}
}
