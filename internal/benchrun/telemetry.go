package main

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"sync/atomic"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// The telemetry cases measure boxtap feeding Prometheus or an OTLP
// collector with no JSON written (--output none): the cheapest ways to
// watch a busy server. The collector is a local OTLP gRPC receiver that
// counts spans and keeps nothing.

// otlpSink is the local OTLP receiver the OTLP case exports to.
type otlpSink struct {
	coltracepb.UnimplementedTraceServiceServer
	addr  string
	spans atomic.Uint64
	srv   *grpc.Server
}

func (s *otlpSink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	var n uint64
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += uint64(len(ss.GetSpans()))
		}
	}
	s.spans.Add(n)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// startOTLPSink serves OTLP/gRPC on a free loopback port until stop.
func startOTLPSink() (*otlpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("OTLP receiver: %w", err)
	}
	s := &otlpSink{addr: ln.Addr().String(), srv: grpc.NewServer()}
	coltracepb.RegisterTraceServiceServer(s.srv, s)
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *otlpSink) stop() { s.srv.Stop() }

// freeLoopbackAddr returns a loopback address with a port free right now.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// telemetryCases: untraced right before each traced run, as the filter
// cases do, so that each round's ratio compares neighbours in time.
func telemetryCases(a *server, sink *otlpSink, metricsAddr string) []benchCase {
	return []benchCase{
		{key: "telemetry/untraced", srv: a, path: "/"},
		{key: "telemetry/metrics-only", srv: a, path: "/", tool: toolBoxtap, watched: a,
			toolArgs: []string{"--output", "none", "--metrics-addr", metricsAddr}},
		{key: "telemetry/untraced-2", srv: a, path: "/"},
		{key: "telemetry/otlp-only", srv: a, path: "/", tool: toolBoxtap, watched: a,
			toolArgs: []string{"--output", "none", "--otlp-endpoint", "http://" + sink.addr}},
	}
}

// boxtapSpans is the part of boxtap's exit line about spans.
var boxtapSpans = regexp.MustCompile(`(\d+) spans exported, (\d+) dropped`)

func spansOf(m measurement, group int) float64 {
	s := boxtapSpans.FindStringSubmatch(m.obs.stderr)
	if s == nil {
		return -1
	}
	n, _ := strconv.ParseFloat(s[group], 64)
	return n
}

func eventsPerResponse(m measurement) float64 {
	if m.served == 0 {
		return 0
	}
	return float64(m.obs.events) / float64(m.served)
}

func spansPerResponse(m measurement) float64 {
	if m.served == 0 {
		return 0
	}
	return spansOf(m, 1) / float64(m.served)
}

func spansDropped(m measurement) float64 { return spansOf(m, 2) }

func telemetryRows(r *results) []row {
	var out []row
	if base, mo := r.of("telemetry/untraced"), r.of("telemetry/metrics-only"); mo != nil {
		out = append(out, judgedAll(r, []row{
			{"Metrics only (--output none --metrics-addr): req/s untraced", each(base, rps), "%.0f", "", nil, nil},
			{"Metrics only: req/s traced", each(mo, rps), "%.0f", "", nil, nil},
			{"Metrics only: throughput ratio traced/untraced", ratios(mo, base, rps), "%.3f", ">= 0.97", atLeast(0.97), nil},
			{"Metrics only: boxtap CPU s per 100k responses", each(mo, cpuPer100k), "%.3f", "<= 0.10", atMost(0.10), nil},
			{"Metrics only: exchanges counted / responses", each(mo, eventsPerResponse), "%.6f", "1.0 exactly", allEqual(1), nil},
			{"Metrics only: lost records", each(mo, lost), "%.0f", "0", allEqual(0), nil},
		}, "telemetry/untraced", "telemetry/metrics-only")...)
	}
	if base, ot := r.of("telemetry/untraced-2"), r.of("telemetry/otlp-only"); ot != nil {
		out = append(out, judgedAll(r, []row{
			{"OTLP only (--output none --otlp-endpoint, local receiver): req/s untraced", each(base, rps), "%.0f", "", nil, nil},
			{"OTLP only: req/s traced", each(ot, rps), "%.0f", "", nil, nil},
			{"OTLP only: throughput ratio traced/untraced", ratios(ot, base, rps), "%.3f", ">= 0.97", atLeast(0.97), nil},
			{"OTLP only: boxtap CPU s per 100k responses", each(ot, cpuPer100k), "%.3f", "<= 0.10", atMost(0.10), nil},
			{"OTLP only: spans exported / responses", each(ot, spansPerResponse), "%.6f", "", nil, nil},
			{"OTLP only: spans dropped (queue full)", each(ot, spansDropped), "%.0f", "", nil, nil},
			{"OTLP only: lost records", each(ot, lost), "%.0f", "0", allEqual(0), nil},
		}, "telemetry/untraced-2", "telemetry/otlp-only")...)
	}
	return out
}
