package reward

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tpoproject/tpo/httpx"
	"github.com/tpoproject/tpo/tpotest"
)

// infoLogs collects info-level messages and attributes.
func infoLogs(w *warnings) *slog.Logger {
	w.msgs.Store(&[]string{})
	return slog.New(&infoHandler{captureHandler{w: w}})
}

type infoHandler struct{ captureHandler }

func (h *infoHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func TestTEICheckCapsBatch(t *testing.T) {
	srv := tpotest.NewTEIServer(t, tpotest.TEIOptions{MaxBatch: 4})
	var w warnings
	s := newTestTEI(t, srv.URL, TEIOptions{Options: httpx.Options{Logger: infoLogs(&w)}})
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	var lowered []string
	for _, l := range w.list() {
		if strings.Contains(l, "lowering the TEI batch size") {
			lowered = append(lowered, l)
		}
	}
	if len(lowered) != 1 || !strings.Contains(lowered[0], "configured=32") || !strings.Contains(lowered[0], "max_client_batch_size=4") {
		t.Errorf("logs = %q, want one about lowering 32 to 4", w.list())
	}
	if _, err := s.Score(context.Background(), testConversation, responsesN(6)); err != nil {
		t.Fatal(err)
	}
	// No refused batch: the first request already fits.
	if sizes, want := predictBatches(t, srv.Requests()[1:]), []int{4, 2}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes = %v, want %v", sizes, want)
	}

	// A smaller configured size is kept; replicas: the smallest limit.
	a := tpotest.NewTEIServer(t, tpotest.TEIOptions{MaxBatch: 16})
	b := tpotest.NewTEIServer(t, tpotest.TEIOptions{MaxBatch: 8})
	for _, tt := range []struct{ configured, want int }{{4, 4}, {32, 8}} {
		s, err := NewTEI(TEIOptions{Options: httpx.Options{URLs: []string{a.URL, b.URL}}, BatchSize: tt.configured})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := s.batchSize(); got != tt.want {
			t.Errorf("batch size %d after Check of replicas with limits 16 and 8, want %d", got, tt.want)
		}
	}
}

func TestTEICheckRefuses(t *testing.T) {
	info := func(body string) tpotest.TEIOptions {
		return tpotest.TEIOptions{Intercept: func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
			if r.URL.Path != "/info" {
				return false
			}
			fmt.Fprint(w, body)
			return true
		}}
	}
	vllm := tpotest.NewVLLMRewardServer(t, tpotest.VLLMRewardOptions{})
	tests := []struct {
		name string
		url  func(t *testing.T) string
		want []string
	}{
		{"a vLLM server", func(*testing.T) string { return vllm.URL }, []string{"is not a text-embeddings-inference server", "404"}},
		{"another JSON", func(t *testing.T) string { return tpotest.NewTEIServer(t, info(`{"status":"ok"}`)).URL },
			[]string{"not a text-embeddings-inference server", `{"status":"ok"}`}},
		{"an embedding model", func(t *testing.T) string {
			return tpotest.NewTEIServer(t, info(`{"model_id":"BAAI/bge-base-en-v1.5","model_type":{"embedding":{"pooling":"cls"}},`+
				`"max_input_length":512,"max_client_batch_size":32,"auto_truncate":true,"version":"1.9.3"}`)).URL
		}, []string{"BAAI/bge-base-en-v1.5", `type "embedding"`, "sequence-classification"}},
		{"HTML", func(t *testing.T) string { return tpotest.NewTEIServer(t, info(`<html>hi</html>`)).URL }, []string{"GET /info", "malformed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := tt.url(t)
			err := newTestTEI(t, url, TEIOptions{}).Check(context.Background())
			if err == nil {
				t.Fatal("Check passed")
			}
			for _, want := range append(tt.want, url) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestTEICheckUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	good := tpotest.NewTEIServer(t, tpotest.TEIOptions{})
	s, err := NewTEI(TEIOptions{Options: httpx.Options{URLs: []string{good.URL, dead}, BaseBackoff: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), dead) || strings.Contains(err.Error(), good.URL) {
		t.Fatalf("Check = %v, want an error naming %s alone", err, dead)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("Check took %v: it retried", d)
	}
}
