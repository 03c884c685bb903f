package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpoproject/tpo/tracing/tracingtest"
)

// tpo run sends its spans to the collector the OTEL_* variables name.
func TestRunTraces(t *testing.T) {
	col := tracingtest.NewCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.URL)
	t.Setenv("OTEL_SERVICE_NAME", "tpo-run-test")
	code, _, stderr := cli(t, "", "run", "--sim", "--sim-time-scale", "0.0005", "--store", filepath.Join(t.TempDir(), "t.db"),
		"--reward", "vllm", "--depth", "1", "Explain TCP slow start.")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	spans := col.Spans()
	for _, name := range []string{"tpo.item", "tpo.stage sample", "tpo.stage score", "tpo.stage loss", "tpo.stage gradient",
		"tpo.stage update", "chat sim-policy", "HTTP POST /chat/completions", "HTTP POST /classify"} {
		if len(spans[name]) == 0 {
			t.Errorf("no %q span; got %s", name, tracingtest.Names(spans))
		}
	}
	for _, s := range spans["chat sim-policy"] {
		if p := tracingtest.ParentName(spans, s); !strings.HasPrefix(p, "tpo.stage ") {
			t.Errorf("model call span's parent is %q, want a stage", p)
		}
	}

	// Without the variables, no spans go anywhere.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	before := len(col.Spans()["tpo.item"])
	if code, _, stderr := cli(t, "", "run", "--sim", "--sim-time-scale", "0.0005", "--store", filepath.Join(t.TempDir(), "u.db"), "x"); code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	if after := len(col.Spans()["tpo.item"]); after != before {
		t.Errorf("spans sent without OTEL_* configuration")
	}

	// A protocol tpo cannot speak is a usage error.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	if code, _, stderr := cli(t, "", "run", "--sim", "x"); code != 2 || !strings.Contains(stderr, "http/protobuf") {
		t.Errorf("grpc: exit %d, stderr %q; want 2 and a hint", code, stderr)
	}
}
