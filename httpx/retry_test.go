package httpx

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type observerFunc func(Retry)

func (f observerFunc) ObserveRetry(r Retry) { f(r) }

// retryLog records the retries told to an observer.
type retryLog struct {
	mu sync.Mutex
	rs []Retry
}

func (l *retryLog) ObserveRetry(r Retry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rs = append(l.rs, r)
}

func (l *retryLog) reasons() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.rs {
		out = append(out, r.Reason)
	}
	return out
}

// TestRetryObserver checks that every retry is told to the context's
// observer with its reason, and logged at debug level only.
func TestRetryObserver(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 3:
			io.WriteString(w, "not json")
		case 4:
			hijackClose(t, w)
		default:
			io.WriteString(w, `{"ok":true}`)
		}
	}))
	defer srv.Close()

	tests := []struct {
		level   slog.Level
		wantLog bool
	}{
		{slog.LevelInfo, false},
		{slog.LevelDebug, true},
	}
	for _, tt := range tests {
		n.Store(0)
		var logs bytes.Buffer
		opts := fast(srv.URL)
		opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: tt.level}))
		c := newClient(t, opts)
		var rl retryLog
		var out reply
		if _, err := c.PostJSON(WithRetryObserver(context.Background(), &rl), "/x", nil, &out); err != nil {
			t.Fatalf("PostJSON: %v", err)
		}
		want := []string{"429", "503", ReasonMalformed, ReasonConnection}
		if got := rl.reasons(); !slices.Equal(got, want) {
			t.Errorf("reasons = %q, want %q", got, want)
		}
		for _, r := range rl.rs {
			if r.Name != "policy" || r.URL != srv.URL || r.Err == nil {
				t.Errorf("retry %+v: want name policy, URL %s and the error", r, srv.URL)
			}
		}
		if got := strings.Count(logs.String(), "retrying model server request"); (got > 0) != tt.wantLog {
			t.Errorf("log level %v: %d retry log lines, want them: %v\n%s", tt.level, got, tt.wantLog, logs.String())
		}
		if strings.Contains(logs.String(), "level=WARN") {
			t.Errorf("a retry was logged as a warning:\n%s", logs.String())
		}
	}
}

func TestRetryObserverTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			select {
			case <-block:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	opts := fast(srv.URL)
	opts.Timeout = 50 * time.Millisecond
	c := newClient(t, opts)
	var rl retryLog
	if _, err := c.GetJSON(WithRetryObserver(context.Background(), &rl), "/x", nil); err != nil {
		t.Fatalf("GetJSON: %v", err)
	}
	if got := rl.reasons(); !slices.Equal(got, []string{ReasonTimeout}) {
		t.Errorf("reasons = %q, want [timeout]", got)
	}
}
