package reward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo"
	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/tpotest"
)

func TestVLLMCheckVersions(t *testing.T) {
	tests := []struct {
		version string
		ok      bool
	}{
		{"0.11.1", true},
		{"0.11.2", true},
		{"0.12.0", true},
		{"0.12.0+cu128", true},
		{"0.11.1.post1", true},
		{"0.10.1", false},
		{"0.10.1.1", false},
		{"0.6.3.post1", false},
		{"0.11.1rc2", false},             // a pre-release sorts before 0.11.1
		{"0.11.1.dev123+gabcdef", false}, // so does a development build
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{Version: tt.version})
			err := newTestVLLM(t, srv.URL+"/v1", VLLMOptions{}).Check(context.Background())
			if tt.ok {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Check passed a server older than 0.11.1")
			}
			for _, want := range []string{srv.URL, "version " + tt.version, "older than 0.11.1", "--reward-allow-old-vllm"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			// The override lets it through with a warning naming the server.
			var w warnings
			s := newTestVLLM(t, srv.URL, VLLMOptions{Options: httpx.Options{Logger: w.logger()}, AllowOldServer: true})
			if err := s.Check(context.Background()); err != nil {
				t.Fatalf("Check with AllowOldServer: %v", err)
			}
			if l := w.list(); len(l) != 1 || !strings.Contains(l[0], "older than 0.11.1") || !strings.Contains(l[0], srv.URL) {
				t.Errorf("warnings = %q, want one about the old server", l)
			}
		})
	}
}

func TestVLLMCheckUnknownVersion(t *testing.T) {
	answer := func(status int, body string) tpotest.VLLMRewardOptions {
		return tpotest.VLLMRewardOptions{Intercept: func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
			if r.URL.Path != "/version" {
				return false
			}
			w.WriteHeader(status)
			fmt.Fprint(w, body)
			return true
		}}
	}
	tests := []struct {
		name   string
		server tpotest.VLLMRewardOptions
		why    string
	}{
		{"no /version", tpotest.VLLMRewardOptions{HideVersion: true}, "answered 404"},
		{"not a version", answer(200, `{"version":"main"}`), `"main" is not a PEP 440 version`},
		{"no version field", answer(200, `{"name":"vllm"}`), "with no version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tpotest.NewVLLMRewardServer(t, tt.server)
			err := newTestVLLM(t, srv.URL, VLLMOptions{}).Check(context.Background())
			if err == nil {
				t.Fatal("Check passed a server of unknown version")
			}
			for _, want := range []string{srv.URL, "cannot tell its version", tt.why, "--reward-allow-old-vllm"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			var w warnings
			s := newTestVLLM(t, srv.URL, VLLMOptions{Options: httpx.Options{Logger: w.logger()}, AllowOldServer: true})
			if err := s.Check(context.Background()); err != nil {
				t.Fatalf("Check with AllowOldServer: %v", err)
			}
			if l := w.list(); len(l) != 1 || !strings.Contains(l[0], "unknown version") {
				t.Errorf("warnings = %q, want one about the unknown version", l)
			}
		})
	}
}

func TestVLLMCheckFailsAtOnce(t *testing.T) {
	// A closed port: connection refused, not retried, even when old
	// servers are allowed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	s, err := NewVLLM(VLLMOptions{Options: httpx.Options{URLs: []string{dead}, BaseBackoff: time.Second}, AllowOldServer: true})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), "/version") {
		t.Fatalf("Check of an unreachable server = %v, want an error naming %s", err, dead)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("Check took %v: it retried", d)
	}

	// A server that refuses the API key fails too.
	srv := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{Intercept: func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"Unauthorized"}`)
		return true
	}})
	err = newTestVLLM(t, srv.URL, VLLMOptions{AllowOldServer: true}).Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), srv.URL) || !strings.Contains(err.Error(), "401") {
		t.Errorf("Check of a server answering 401 = %v, want an error naming it and the status", err)
	}
}

func TestVLLMCheckEveryReplica(t *testing.T) {
	good := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{Version: "0.11.1"})
	old := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{Version: "0.10.1"})
	good2 := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{Version: "0.12.0"})
	s, err := NewVLLM(VLLMOptions{Options: httpx.Options{URLs: []string{good.URL, old.URL, good2.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), old.URL) || strings.Contains(err.Error(), good.URL) ||
		strings.Contains(err.Error(), good2.URL) {
		t.Fatalf("Check = %v, want an error naming %s alone", err, old.URL)
	}
	for _, srv := range []*tpotest.VLLMRewardServer{good, old, good2} {
		if n := srv.Count("/version"); n != 1 {
			t.Errorf("%s: %d GET /version, want 1", srv.URL, n)
		}
	}
	// Two refusals are both reported.
	old2 := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{Version: "0.9.2"})
	s, err = NewVLLM(VLLMOptions{Options: httpx.Options{URLs: []string{old.URL, old2.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Check(context.Background())
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 || !strings.Contains(err.Error(), old2.URL) {
		t.Errorf("Check = %v, want two errors", err)
	}
}

// TestVLLMCheckModel: a server that lists its models without the reward
// model is refused at once, naming it, the model and what it serves; one
// that serves it, or lists no models, or no model named, passes.
func TestVLLMCheckModel(t *testing.T) {
	serves := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{Models: []string{"rm-a", "rm-b"}})
	unlisted := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{})
	tests := []struct {
		name, url, model string
		wantErr          []string
	}{
		{"served", serves.URL, "rm-b", nil},
		{"not served", serves.URL, "no-such-rm", []string{serves.URL, `"no-such-rm"`, `"rm-a", "rm-b"`, "--reward-model"}},
		{"none named", serves.URL, "", nil},
		{"no list", unlisted.URL, "no-such-rm", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newTestVLLM(t, tt.url, VLLMOptions{Model: tt.model}).Check(context.Background())
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Check = nil, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check = %v, want it to name %s", err, w)
				}
			}
		})
	}
	// The fake refuses the unknown model as vLLM does, so that the check
	// is what stands between it and failing every item later.
	s := newTestVLLM(t, serves.URL, VLLMOptions{Model: "no-such-rm"})
	if _, err := s.Score(context.Background(), []tpo.Message{{Role: tpo.RoleUser, Content: "q"}}, []string{"a"}); err == nil ||
		!strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Score with a model not served = %v, want vLLM's 404", err)
	}
}
