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
	got, err := s.Score(context.Background(), testConversation, testResponses)
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
		`["Is water wet?","bad bad answer"]],"raw_scores":true}`
	if got := compactJSON(t, reqs[0].Body); got != want {
		t.Errorf("body:\n%s\nwant:\n%s", got, want)
	}
}

func TestTEIBatching(t *testing.T) {
	srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{})
	s := newTestTEI(t, srv.URL, TEIOptions{BatchSize: 2})
	responses := responsesN(5)
	got, err := s.Score(context.Background(), testConversation, responses)
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

func TestTEIHalvesOn413(t *testing.T) {
	srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{MaxBatch: 3, Version: "1.8.3"})
	var w warnings
	s := newTestTEI(t, srv.URL, TEIOptions{BatchSize: 8, Logger: w.logger()})
	responses := responsesN(7)
	got, err := s.Score(context.Background(), testConversation, responses)
	if err != nil {
		t.Fatal(err)
	}
	if want := wantRewards(responses); !slices.Equal(got, want) {
		t.Errorf("scores = %v, want %v", got, want)
	}
	// 7 pairs are refused; half of 7 is 3, which fits.
	if sizes, want := predictBatches(t, srv.Requests()), []int{7, 3, 3, 1}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes = %v, want %v", sizes, want)
	}
	if len(w.list()) != 1 {
		t.Errorf("warnings = %q, want one about halving", w.list())
	}
	// The smaller size is kept for later calls.
	if _, err := s.Score(context.Background(), testConversation, responses[:4]); err != nil {
		t.Fatal(err)
	}
	if sizes, want := predictBatches(t, srv.Requests()[4:]), []int{3, 1}; !slices.Equal(sizes, want) {
		t.Errorf("later batch sizes = %v, want %v", sizes, want)
	}
}

func TestTEIHalvesRepeatedly(t *testing.T) {
	srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{MaxBatch: 2, Version: "1.8.3"})
	s := newTestTEI(t, srv.URL, TEIOptions{BatchSize: 9})
	responses := responsesN(9)
	if _, err := s.Score(context.Background(), testConversation, responses); err != nil {
		t.Fatal(err)
	}
	// 9 refused -> 4 refused -> 2 fits.
	if sizes, want := predictBatches(t, srv.Requests()), []int{9, 4, 2, 2, 2, 2, 1}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes = %v, want %v", sizes, want)
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
	got, err := s.Score(context.Background(), testConversation, responses)
	if err != nil {
		t.Fatal(err)
	}
	if want := wantRewards(responses); !slices.Equal(got, want) {
		t.Errorf("LABEL_0 scores = %v, want %v", got, want)
	}

	s = newTestTEI(t, srv.URL, TEIOptions{LabelName: "LABEL_1"})
	got, err = s.Score(context.Background(), testConversation, responses)
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
	got, err := s.Score(context.Background(), testConversation, nil)
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
	want := `{"inputs":[["P2","x"]],"raw_scores":true}`
	if got := compactJSON(t, srv.Requests()[0].Body); got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
}

func TestNewTEIOptions(t *testing.T) {
	if _, err := NewTEI(TEIOptions{URLs: []string{"http://h"}, BatchSize: -1}); err == nil {
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
