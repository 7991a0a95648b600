package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
)

// buildOTelCollector builds the OpenTelemetry Collector of internal/otelcol
// (its own Go module, so the main module's go.mod stays free of the
// collector's dependency tree): the OTLP receiver and the OTLP/HTTP exporter
// of the collector's own Go modules.
func buildOTelCollector(t *testing.T) string {
	t.Helper()
	root, err := itest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	goBin, err := itest.GoBinary()
	itest.Require(t, err == nil, "no go toolchain to build the OpenTelemetry Collector: %v", err)
	bin := filepath.Join(t.TempDir(), "otelcol")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(root, "internal", "otelcol")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the OpenTelemetry Collector (internal/otelcol): %v\n%s", err, out)
	}
	return bin
}

// startOTelCollector runs the collector with an OTLP receiver (gRPC and
// HTTP) on free loopback ports, exporting every span over OTLP/HTTP to
// forwardTo; it returns the receiver's gRPC and HTTP addresses.
func startOTelCollector(t *testing.T, bin, forwardTo string) (grpcAddr, httpAddr string) {
	t.Helper()
	grpcAddr = fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
	httpAddr = fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc: {endpoint: %q}
      http: {endpoint: %q}
exporters:
  otlphttp:
    endpoint: http://%s
    compression: none
service:
  telemetry:
    metrics: {level: none}
  pipelines:
    traces: {receivers: [otlp], exporters: [otlphttp]}
`, grpcAddr, httpAddr, forwardTo)
	file := filepath.Join(t.TempDir(), "otelcol.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), traceRunTimeout)
	t.Cleanup(cancel)
	p := itest.StartProc(t, ctx, bin, "--config=file:"+file)
	if err := p.WaitStderr("Everything is ready", traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	return grpcAddr, httpAddr
}

// Spans go through a real OpenTelemetry Collector (OTLP in, OTLP/HTTP out)
// and arrive whole: each one matches its exchange's event.
func TestOTelCollectorReceivesASpanPerExchange(t *testing.T) {
	e := newTraceEnv(t)
	col := buildOTelCollector(t)
	sink := startOTLPReceiver(t, "http/protobuf", nil)
	grpcAddr, httpAddr := startOTelCollector(t, col, sink.addr)
	port := itest.FreePort(t)
	server := e.startServer(t, fmt.Sprintf("127.0.0.1:%d", port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitServer(t, base)
	for _, c := range []struct{ proto, addr string }{{"grpc", grpcAddr}, {"http/protobuf", httpAddr}} {
		before := len(sink.received())
		p := e.startTrace(t, []*itest.Container{server}, "--otlp-endpoint", "http://"+c.addr, "--otlp-protocol", c.proto)
		reqs := otlpTraffic()
		sendRequests(t, base, reqs)
		if _, err := p.WaitLines(len(reqs), traceStartTimeout); err != nil {
			t.Fatal(err)
		}
		x := stopTrace(t, p, os.Interrupt)
		if x.code != 0 || len(x.events) != len(reqs) {
			t.Fatalf("%s: status %d, %d events for %d requests; stderr:\n%s", c.proto, x.code, len(x.events), len(reqs), x.stderr)
		}
		spans := sink.waitSpans(t, before+len(reqs))[before:]
		if len(spans) != len(reqs) {
			t.Fatalf("%s: %d spans came through the collector for %d exchanges", c.proto, len(spans), len(reqs))
		}
		checkSpansMatchEvents(t, spans, x, server)
	}
}
