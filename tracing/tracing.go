// Package tracing implements tpo.Tracer with OpenTelemetry: spans per item,
// stage, model call and HTTP attempt, exported as OTLP over HTTP (or to
// standard error), and the W3C traceparent header sent to model servers so
// that their own traces (vLLM exports OpenTelemetry) join tpo's.
//
// It is configured by the standard OTEL_* environment variables and is off
// unless one of them asks for traces:
//
//	OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
//	                         where to send them (e.g. http://localhost:4318)
//	OTEL_TRACES_EXPORTER     otlp (the default once an endpoint is set), console, or none
//	OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
//	                         http/protobuf (the only protocol supported)
//	OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
//	                         the resource (default service name "tpo")
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, OTEL_EXPORTER_OTLP_HEADERS,
//	OTEL_BSP_*, ...          as the OpenTelemetry SDK reads them
//	OTEL_SDK_DISABLED=true   turns it off whatever else is set
package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tpoproject/tpo"
)

// Tracer implements tpo.Tracer with an OpenTelemetry tracer.
type Tracer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// New returns a Tracer that records its spans with tp.
func New(tp trace.TracerProvider) *Tracer {
	return &Tracer{tracer: tp.Tracer("github.com/tpoproject/tpo"), prop: propagation.TraceContext{}}
}

// Start implements tpo.Tracer.
func (t *Tracer) Start(ctx context.Context, name string, attrs ...tpo.Attr) (context.Context, tpo.Span) {
	ctx, s := t.tracer.Start(ctx, name, trace.WithAttributes(convert(attrs)...))
	return ctx, span{s}
}

// Inject implements tpo.Tracer.
func (t *Tracer) Inject(ctx context.Context, set func(key, value string)) {
	t.prop.Inject(ctx, setter(set))
}

// Extract implements tpo.Tracer.
func (t *Tracer) Extract(ctx context.Context, get func(key string) string) context.Context {
	return t.prop.Extract(ctx, getter(get))
}

type span struct{ s trace.Span }

func (s span) Set(attrs ...tpo.Attr) { s.s.SetAttributes(convert(attrs)...) }

func (s span) End(err error) {
	if err != nil {
		s.s.RecordError(err)
		s.s.SetStatus(codes.Error, err.Error())
	}
	s.s.End()
}

// convert turns tpo attributes into OpenTelemetry ones.
func convert(attrs []tpo.Attr) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(attrs))
	for _, a := range attrs {
		switch v := a.Value.(type) {
		case string:
			out = append(out, attribute.String(a.Key, v))
		case bool:
			out = append(out, attribute.Bool(a.Key, v))
		case int:
			out = append(out, attribute.Int(a.Key, v))
		case int64:
			out = append(out, attribute.Int64(a.Key, v))
		case float64:
			out = append(out, attribute.Float64(a.Key, v))
		default:
			out = append(out, attribute.String(a.Key, fmt.Sprint(v)))
		}
	}
	return out
}

type setter func(key, value string)

func (s setter) Get(string) string   { return "" }
func (s setter) Set(k, v string)     { s(k, v) }
func (s setter) Keys() []string      { return nil }
func (g getter) Get(k string) string { return g(k) }
func (g getter) Set(string, string)  {}
func (g getter) Keys() []string      { return nil }

type getter func(key string) string

// FromEnv returns a Tracer configured by the OTEL_* environment variables
// read with getenv (os.Getenv when nil), and a function that flushes and
// stops it. When the environment asks for no traces it returns nil and a
// no-op. console traces go to stderr.
func FromEnv(ctx context.Context, getenv func(string) string, stderr io.Writer) (*Tracer, func(context.Context) error, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	noop := func(context.Context) error { return nil }
	exp, err := exporter(ctx, getenv, stderr)
	if err != nil || exp == nil {
		return nil, noop, err
	}
	// The host and process tell apart the processes that share a run's
	// items, whose steps are spans of one trace. OTEL_RESOURCE_ATTRIBUTES,
	// read later, wins.
	res, err := resource.New(ctx, resource.WithHost(), resource.WithProcessPID(), resource.WithTelemetrySDK(), resource.WithFromEnv(),
		resource.WithAttributes(semconv.ServiceName(serviceName(getenv))))
	if err != nil {
		return nil, noop, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return New(tp), tp.Shutdown, nil
}

func serviceName(getenv func(string) string) string {
	if n := getenv("OTEL_SERVICE_NAME"); n != "" {
		return n
	}
	return "tpo"
}

// exporter returns the span exporter the environment asks for, or nil.
func exporter(ctx context.Context, getenv func(string) string, stderr io.Writer) (sdktrace.SpanExporter, error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, nil
	}
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	kind := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	if kind == "" && endpoint {
		kind = "otlp"
	}
	switch kind {
	case "", "none":
		return nil, nil
	case "console":
		return stdouttrace.New(stdouttrace.WithWriter(stderr))
	case "otlp":
		proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if proto == "" {
			proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		if proto != "" && proto != "http/protobuf" {
			return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q is not supported: use http/protobuf (port 4318 of a collector)", proto)
		}
		var opts []otlptracehttp.Option
		if u := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); u != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(u))
		} else if u := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); u != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimRight(u, "/")+"/v1/traces"))
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
		}
		return exp, nil
	}
	return nil, errors.New("tracing: OTEL_TRACES_EXPORTER " + kind + " is not supported (want otlp, console or none)")
}
