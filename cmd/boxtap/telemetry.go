package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/boxtap/boxtap/internal/telemetry"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/tracer"
)

// telemetryFlags feed Prometheus and OpenTelemetry (shared by every command
// that traces, the hook's tracer included).
type telemetryFlags struct {
	MetricsAddr  string   `name:"metrics-addr" help:"Serve Prometheus metrics on HOST:PORT/metrics: a request-duration histogram (container, direction, method, route, status_code) and per-container counters." placeholder:"HOST:PORT"`
	OTLPEndpoint string   `name:"otlp-endpoint" help:"Send one OpenTelemetry span per exchange to this OTLP collector URL, e.g. http://127.0.0.1:4317 (https: TLS). OTEL_EXPORTER_OTLP_* variables are honoured." placeholder:"URL"`
	OTLPProtocol string   `name:"otlp-protocol" help:"OTLP protocol: grpc or http/protobuf (default: OTEL_EXPORTER_OTLP_PROTOCOL, else grpc)." placeholder:"PROTO"`
	OTLPHeader   []string `name:"otlp-header" help:"Add this header to OTLP requests, KEY=VALUE (repeatable); OTEL_EXPORTER_OTLP_HEADERS works too." placeholder:"KEY=VALUE"`
}

// telemetry is a session's metrics server and span exporter, each optional.
type sessionTelemetry struct {
	metrics     *telemetry.Metrics
	stopMetrics func()
	spans       *telemetry.Spans
}

// startTelemetry starts what the flags ask for. stats lists the traced
// containers at scrape time.
func startTelemetry(ctx context.Context, f *telemetryFlags, stats func() []telemetry.ContainerStats) (*sessionTelemetry, error) {
	t := &sessionTelemetry{}
	if f.OTLPEndpoint != "" || f.OTLPProtocol != "" || len(f.OTLPHeader) > 0 || telemetry.Enabled("") {
		host, _ := os.Hostname()
		sp, err := telemetry.NewSpans(ctx, telemetry.SpanOptions{Endpoint: f.OTLPEndpoint, Protocol: f.OTLPProtocol, Headers: f.OTLPHeader, HostName: host})
		if err != nil {
			return nil, err
		}
		t.spans = sp
	}
	if f.MetricsAddr != "" {
		t.metrics = telemetry.NewMetrics(stats, t.spans)
		stop, err := t.metrics.Serve(ctx, f.MetricsAddr)
		if err != nil {
			t.close()
			return nil, err
		}
		t.stopMetrics = stop
	}
	return t, nil
}

// Observe passes an exchange to the metrics and the span exporter.
func (t *sessionTelemetry) Observe(e *output.Event) {
	if t.metrics != nil {
		t.metrics.Observe(e)
	}
	if t.spans != nil {
		t.spans.Observe(e)
	}
}

// observer is the tracer's observer, nil when there is nothing to feed
// (so the tracer skips the call).
func (t *sessionTelemetry) observer() tracer.Observer {
	if t == nil || (t.metrics == nil && t.spans == nil) {
		return nil
	}
	return t
}

// close flushes the spans (bounded) and stops the metrics server. It
// returns the exit line's part about spans ("" without them).
func (t *sessionTelemetry) close() (string, error) {
	if t == nil {
		return "", nil
	}
	var err error
	note := ""
	if t.spans != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = t.spans.Close(ctx)
		cancel()
		note = ", " + t.spans.Summary()
	}
	if t.stopMetrics != nil {
		t.stopMetrics()
	}
	return note, err
}

// containerStats reads the counters of a tracer's targets.
func containerStats(tr *tracer.Tracer) []telemetry.ContainerStats {
	tgs := tr.Targets()
	out := make([]telemetry.ContainerStats, 0, len(tgs))
	for _, tg := range tgs {
		s := telemetry.ContainerStats{Container: telemetry.ContainerLabel(tg.Info.ID, tg.Info.Name),
			Events: tg.Events(), Evicted: tg.Evicted(), Filtered: tg.Filtered()}
		if c, err := tg.Counters(); err == nil {
			s.LostRecords = c.LostRecords
			s.Filtered += c.Filtered // left out in the kernel (--status)
		}
		out = append(out, s)
	}
	return out
}

// discardSink writes nothing: --output none, for metrics or spans alone.
type discardSink struct{}

func (discardSink) Write(*output.Event) error { return nil }
func (discardSink) Flush() error              { return nil }
func (discardSink) Close() error              { return nil }

// Discards tells the tracer that no event is written, so that it fills only
// what the metrics and spans read.
func (discardSink) Discards() bool { return true }

var errNoOutputAtAll = errors.New("--output none writes no events: add --metrics-addr, --otlp-endpoint or --summary, or drop --output none")

// checkNone rejects --output none with --output-dir, and --output none with
// nothing else to show for the tracing.
func (f *outputFlags) checkNone(cf *captureFlags) error {
	if f.Output != "none" {
		return nil
	}
	if f.OutputDir != "" {
		return errors.New("--output none and --output-dir contradict each other: give one")
	}
	t := &cf.telemetryFlags
	if t.MetricsAddr == "" && t.OTLPEndpoint == "" && !telemetry.Enabled("") && !cf.Summary && cf.SummaryEvery == 0 && cf.SummaryJSON == "" {
		return errNoOutputAtAll
	}
	return nil
}
