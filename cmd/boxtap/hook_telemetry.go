package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/boxtap/boxtap/internal/telemetry"
)

// hookOTLPFlags send each hooked container's spans to a collector. The hook
// starts its tracer with a clean environment, so OTEL_EXPORTER_OTLP_* of
// the runtime do not reach it: these flags carry what it needs. (Metrics
// are not offered here: a port per per-container tracer is not what a
// scraper wants, and the host tracer comes and goes with its containers;
// use boxtap watch for them.)
type hookOTLPFlags struct {
	OTLPEndpoint string   `name:"otlp-endpoint" help:"Send each container's spans to this OTLP collector URL, e.g. http://127.0.0.1:4317 (see boxtap trace --help)." placeholder:"URL"`
	OTLPProtocol string   `name:"otlp-protocol" help:"OTLP protocol: grpc or http/protobuf (default grpc)." placeholder:"PROTO"`
	OTLPHeader   []string `name:"otlp-header" sep:"none" help:"Add this header to OTLP requests, KEY=VALUE (repeatable). It is visible in the tracer's command line." placeholder:"KEY=VALUE"`
}

// args renders the flags for the hook's config and the tracer it starts.
func (f *hookOTLPFlags) args() []string {
	var a []string
	if f.OTLPEndpoint != "" {
		a = append(a, "--otlp-endpoint="+f.OTLPEndpoint)
	}
	if f.OTLPProtocol != "" {
		a = append(a, "--otlp-protocol="+f.OTLPProtocol)
	}
	for _, h := range f.OTLPHeader {
		a = append(a, "--otlp-header="+h)
	}
	return a
}

// spans starts the exporter the flags ask for; nil without an endpoint.
func (f *hookOTLPFlags) spans(ctx context.Context) (*telemetry.Spans, error) {
	if f.OTLPEndpoint == "" {
		return nil, nil
	}
	host, _ := os.Hostname()
	return telemetry.NewSpans(ctx, telemetry.SpanOptions{Endpoint: f.OTLPEndpoint, Protocol: f.OTLPProtocol, Headers: f.OTLPHeader, HostName: host})
}

// closeSpans flushes the hook tracer's spans (bounded) and logs the counts.
func closeHookSpans(id string, s *telemetry.Spans) {
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "boxtap tracer %s: %v\n", id, err)
	}
	fmt.Fprintf(os.Stderr, "boxtap tracer %s: %s\n", id, s.Summary())
}
