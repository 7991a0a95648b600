package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is a minimal OTLP trace receiver on 127.0.0.1 built on the
// official OTLP protobuf service definitions (gRPC, and HTTP/protobuf on
// /v1/traces). It keeps every span with its resource.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	addr  string
	mu    sync.Mutex
	spans []receivedSpan
	stop  func()
	// hang, if not nil, makes Export wait for it or the caller's deadline
	// and then fail: a collector too slow to ever answer in time.
	hang chan struct{}
}

type receivedSpan struct {
	resource map[string]string
	span     *tracepb.Span
}

func (r *otlpReceiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	if r.hang != nil {
		select {
		case <-r.hang:
		case <-ctx.Done():
		}
		return nil, context.DeadlineExceeded
	}
	r.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) add(req *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				r.spans = append(r.spans, receivedSpan{resource: res, span: sp})
			}
		}
	}
}

func (r *otlpReceiver) received() []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedSpan(nil), r.spans...)
}

// waitSpans waits until n spans arrived (bounded).
func (r *otlpReceiver) waitSpans(t *testing.T, n int) []receivedSpan {
	t.Helper()
	deadline := time.Now().Add(traceExitTimeout)
	for {
		got := r.received()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startOTLPReceiver listens on a free 127.0.0.1 port with the protocol
// boxtap is told to use ("grpc" or "http/protobuf"); hang: see otlpReceiver.
func startOTLPReceiver(t *testing.T, protocol string, hang chan struct{}) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{addr: ln.Addr().String(), hang: hang}
	switch protocol {
	case "grpc":
		srv := grpc.NewServer()
		coltracepb.RegisterTraceServiceServer(srv, r)
		go func() { _ = srv.Serve(ln) }()
		r.stop = srv.Stop
	default:
		mux := http.NewServeMux()
		mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, req *http.Request) {
			b, err := io.ReadAll(req.Body)
			var msg coltracepb.ExportTraceServiceRequest
			if err == nil {
				err = proto.Unmarshal(b, &msg)
			}
			if err != nil || req.Header.Get("Content-Type") != "application/x-protobuf" {
				http.Error(w, fmt.Sprintf("bad request: %v", err), http.StatusBadRequest)
				return
			}
			r.add(&msg)
			out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write(out)
		})
		srv := &http.Server{Handler: mux}
		go func() { _ = srv.Serve(ln) }()
		r.stop = func() { _ = srv.Close() }
	}
	t.Cleanup(r.stop)
	return r
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			m[kv.GetKey()] = v.GetStringValue()
		default:
			m[kv.GetKey()] = strconv.FormatInt(v.GetIntValue(), 10)
		}
	}
	return m
}

// spanExchange reads a span back as the exchange it describes, in the
// form the JSON events are read (jsonExchange), so the two compare.
func spanExchange(s receivedSpan) exchange {
	a := attrMap(s.span.GetAttributes())
	x := exchange{
		container: s.resource["container.name"],
		client:    hostPort(a["client.address"], mustPort(a["client.port"])),
		server:    hostPort(a["server.address"], mustPort(a["server.port"])),
		request:   a["http.request.method"] + " " + a["url.path"],
		proto:     "HTTP/" + a["network.protocol.version"],
		latency:   time.Duration(s.span.GetEndTimeUnixNano() - s.span.GetStartTimeUnixNano()),
	}
	x.status, _ = strconv.Atoi(a["http.response.status_code"])
	switch s.span.GetKind() {
	case tracepb.Span_SPAN_KIND_SERVER:
		x.dir = "egress"
	case tracepb.Span_SPAN_KIND_CLIENT:
		x.dir = "ingress"
	}
	x.time = time.Unix(0, int64(s.span.GetEndTimeUnixNano())).UTC().Format("15:04:05.000")
	return x
}

func mustPort(s string) uint16 {
	n, _ := strconv.ParseUint(s, 10, 16)
	return uint16(n)
}

// eventExchange is jsonExchange reduced to what a span carries (url.path
// has no query; the span has no size or process).
func eventExchange(t *testing.T, x exchange) exchange {
	if i := strings.IndexAny(x.request, "?#"); i >= 0 {
		x.request = x.request[:i]
	}
	x.size, x.process, x.notes = 0, "", ""
	return x
}

func sortedExchanges(xs []exchange) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = fmt.Sprintf("%+v", x)
	}
	sort.Strings(out)
	return out
}

func otlpTraffic() []viewRequest {
	return []viewRequest{
		{"GET", "/status/200", ""}, {"GET", "/status/404", ""}, {"GET", "/status/503", ""},
		{"POST", "/echo?token=s3cret", ""}, {"PUT", "/status/201", ""}, {"GET", "/sleep/30ms", ""},
		{"DELETE", "/status/500", ""}, {"GET", "/status/200", ""},
	}
}

// checkSpansMatchEvents compares each span with the event of the same
// exchange, and the semantic details a span adds (kind, status, resource).
func checkSpansMatchEvents(t *testing.T, spans []receivedSpan, x traceExit, server *itest.Container) {
	t.Helper()
	var fromSpans, fromEvents []exchange
	for _, s := range spans {
		fromSpans = append(fromSpans, spanExchange(s))
		res := s.resource
		if res["container.id"] != server.ID || res["container.name"] != server.Name || res["container.image.name"] == "" || res["host.name"] == "" {
			t.Errorf("resource %v: want container.id %s, container.name %s, container.image.name and host.name", res, server.ID, server.Name)
		}
		code, _ := strconv.Atoi(attrMap(s.span.GetAttributes())["http.response.status_code"])
		isErr := s.span.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR
		if isErr != (code >= 500) {
			t.Errorf("server span with status %d: error status %v, want %v", code, isErr, code >= 500)
		}
		if a := attrMap(s.span.GetAttributes()); strings.Contains(fmt.Sprint(a), "s3cret") {
			t.Errorf("a span carries the query's secret: %v", a)
		}
	}
	for _, ev := range x.events {
		fromEvents = append(fromEvents, eventExchange(t, jsonExchange(t, ev)))
	}
	gotS, gotE := sortedExchanges(fromSpans), sortedExchanges(fromEvents)
	if strings.Join(gotS, "\n") != strings.Join(gotE, "\n") {
		t.Errorf("spans and events differ:\nspans:\n%s\nevents:\n%s", strings.Join(gotS, "\n"), strings.Join(gotE, "\n"))
	}
}

func testSpansMatchTheExchanges(t *testing.T, protocol string) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	server := e.startServer(t, fmt.Sprintf("127.0.0.1:%d", port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitServer(t, base)
	recv := startOTLPReceiver(t, protocol, nil)
	p := e.startTrace(t, []*itest.Container{server}, "--otlp-endpoint", "http://"+recv.addr, "--otlp-protocol", protocol)
	reqs := otlpTraffic()
	sendRequests(t, base, reqs)
	if _, err := p.WaitLines(len(reqs), traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	x := stopTrace(t, p, os.Interrupt)
	if x.code != 0 || len(x.events) != len(reqs) {
		t.Fatalf("status %d, %d events for %d requests; stderr:\n%s", x.code, len(x.events), len(reqs), x.stderr)
	}
	// Close flushes the queue before exit: every span has arrived by now.
	spans := recv.received()
	if len(spans) != len(reqs) {
		t.Fatalf("%d spans for %d exchanges", len(spans), len(reqs))
	}
	checkSpansMatchEvents(t, spans, x, server)
	if want := fmt.Sprintf("%d spans exported, 0 dropped", len(reqs)); !strings.Contains(x.stderr, want) {
		t.Errorf("exit line lacks %q:\n%s", want, x.stderr)
	}
}

func TestOTLPSpansOverGRPCMatchEachExchange(t *testing.T) { testSpansMatchTheExchanges(t, "grpc") }

func TestOTLPSpansOverHTTPProtobufMatchEachExchange(t *testing.T) {
	testSpansMatchTheExchanges(t, "http/protobuf")
}

var spansLine = regexp.MustCompile(`(\d+) spans exported, (\d+) dropped`)

func TestKilledCollectorCostsSpansButNotEvents(t *testing.T) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	server := e.startServer(t, fmt.Sprintf("127.0.0.1:%d", port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitServer(t, base)
	recv := startOTLPReceiver(t, "grpc", nil)
	p := e.startTrace(t, []*itest.Container{server}, "--otlp-endpoint", "http://"+recv.addr)
	before := otlpTraffic()
	sendRequests(t, base, before)
	// Spans leave in batches at least every second: wait for them all.
	if got := recv.waitSpans(t, len(before)); len(got) != len(before) {
		t.Fatalf("%d spans before the kill, want %d", len(got), len(before))
	}
	recv.stop() // the collector dies
	after := otlpTraffic()
	sendRequests(t, base, after)
	total := len(before) + len(after)
	if _, err := p.WaitLines(total, traceStartTimeout); err != nil {
		t.Fatalf("events stopped with the collector: %v", err)
	}
	x := stopTrace(t, p, os.Interrupt)
	if x.code != 0 || len(x.events) != total {
		t.Fatalf("status %d, %d events for %d requests; stderr:\n%s", x.code, len(x.events), total, x.stderr)
	}
	checkCountsLine(t, x.stderr, total)
	m := spansLine.FindStringSubmatch(x.stderr)
	if m == nil {
		t.Fatalf("no spans counts on the exit line:\n%s", x.stderr)
	}
	exported, _ := strconv.Atoi(m[1])
	dropped, _ := strconv.Atoi(m[2])
	if exported != len(recv.received()) || dropped != len(after) {
		t.Errorf("exit line says %d exported, %d dropped; the collector got %d, and %d exchanges came after it died\n%s",
			exported, dropped, len(recv.received()), len(after), x.stderr)
	}
}

func TestSlowCollectorNeverSlowsEventsAndCostsCountedSpans(t *testing.T) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	server := e.startServer(t, fmt.Sprintf("127.0.0.1:%d", port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitServer(t, base)
	hang := make(chan struct{})
	recv := startOTLPReceiver(t, "grpc", hang)
	t.Cleanup(func() { close(hang) }) // runs before the receiver stops
	p := e.startTrace(t, []*itest.Container{server}, "--otlp-endpoint", "http://"+recv.addr)
	reqs := otlpTraffic()
	sendRequests(t, base, reqs)
	if _, err := p.WaitLines(len(reqs), traceStartTimeout); err != nil {
		t.Fatalf("events held up by the collector: %v", err)
	}
	x := stopTrace(t, p, os.Interrupt)
	if x.code != 0 || len(x.events) != len(reqs) {
		t.Fatalf("status %d, %d events for %d requests; stderr:\n%s", x.code, len(x.events), len(reqs), x.stderr)
	}
	if want := fmt.Sprintf("0 spans exported, %d dropped", len(reqs)); !strings.Contains(x.stderr, want) {
		t.Errorf("exit line lacks %q:\n%s", want, x.stderr)
	}
}
