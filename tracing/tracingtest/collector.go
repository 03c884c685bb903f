// Package tracingtest provides a fake OpenTelemetry collector for tests: an
// OTLP/HTTP trace receiver on loopback that keeps the spans it receives.
package tracingtest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Collector receives OTLP/HTTP traces at URL + "/v1/traces". Point
// OTEL_EXPORTER_OTLP_ENDPOINT at URL.
type Collector struct {
	URL string

	mu    sync.Mutex
	spans []*tracepb.Span
}

// NewCollector starts a collector, closed when the test ends.
func NewCollector(t testing.TB) *Collector {
	c := &Collector{}
	srv := httptest.NewServer(http.HandlerFunc(c.receive))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

func (c *Collector) receive(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/traces in protobuf", http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			c.spans = append(c.spans, ss.Spans...)
		}
	}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Write(b)
}

// Spans returns the spans received so far, by name.
func (c *Collector) Spans() map[string][]*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]*tracepb.Span{}
	for _, s := range c.spans {
		out[s.Name] = append(out[s.Name], s)
	}
	return out
}

// Attr returns the value of a span's attribute as text ("" when absent).
func Attr(s *tracepb.Span, key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			if v := a.Value.GetStringValue(); v != "" {
				return v
			}
			return strconv.FormatInt(a.Value.GetIntValue(), 10)
		}
	}
	return ""
}

// ParentName returns the name of s's parent among spans, or "".
func ParentName(spans map[string][]*tracepb.Span, s *tracepb.Span) string {
	for name, ss := range spans {
		for _, p := range ss {
			if bytes.Equal(p.SpanId, s.ParentSpanId) {
				return name
			}
		}
	}
	return ""
}

// Names lists the span names, for messages.
func Names(spans map[string][]*tracepb.Span) string {
	var out []string
	for k := range spans {
		out = append(out, k)
	}
	return strings.Join(out, ", ")
}
