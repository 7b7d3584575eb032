package main

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// otlpConfigured says whether the standard OTLP environment asks for
// export.
func otlpConfigured() bool {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if os.Getenv(k) != "" {
			return true
		}
	}
	return false
}

// tracing builds the process's tracer provider: OTLP export when the
// standard OTEL_EXPORTER_OTLP_* variables are set, plus any extra span
// processors (cat --trace records spans in memory). The returned shutdown
// flushes and stops it.
func tracing(ctx context.Context, service string, log *slog.Logger, extra ...sdktrace.SpanProcessor) (trace.TracerProvider, func(context.Context) error) {
	var opts []sdktrace.TracerProviderOption
	if otlpConfigured() {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			log.Warn("OTLP trace export disabled", "err", err)
		} else {
			opts = append(opts, sdktrace.WithBatcher(exp))
		}
	}
	for _, p := range extra {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	if len(opts) == 0 {
		// Nothing would see the spans: don't pay for recording them on
		// every read.
		return noop.NewTracerProvider(), func(context.Context) error { return nil }
	}
	res, _ := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", service)))
	opts = append(opts, sdktrace.WithResource(res))
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return tp, tp.Shutdown
}

// newLogger returns the process logger: text on stderr at the given level.
func newLogger(level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
