package telemetry

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/summary"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// series reads the request-duration histogram: label set -> (count, sum in ms).
func series(t *testing.T, m *Metrics) map[string][2]uint64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string][2]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "boxtap_http_request_duration_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var ls []string
			for _, l := range mt.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			h := mt.GetHistogram()
			out[strings.Join(ls, ",")] = [2]uint64{h.GetSampleCount(), uint64(h.GetSampleSum()*1000 + 0.5)}
		}
	}
	return out
}

func exchange(name, method, uri string, status int, latency time.Duration) *output.Event {
	return &output.Event{
		Container: output.Container{ID: strings.Repeat("ab", 32), Name: name},
		Direction: output.DirectionEgress,
		Request:   &output.Request{Method: method, URIPath: uri},
		Response:  output.Response{StatusCode: status},
		Latency:   latency, LatencyKnown: true,
	}
}

func labels(container, method, route, status string) string {
	return "container=" + container + ",direction=egress,method=" + method + ",route=" + route + ",status_code=" + status
}

// Each exchange lands in its series, whether the series is new or known.
func TestMetricsObserveCountsEachExchangeInItsSeries(t *testing.T) {
	m := NewMetrics(func() []ContainerStats { return nil }, nil)
	for range 3 {
		m.Observe(exchange("web", "GET", "/users/42?x=1", 200, 2*time.Millisecond))
		m.Observe(exchange("web", "GET", "/users/43", 200, 3*time.Millisecond))
		m.Observe(exchange("web", "POST", "/users/43", 201, 5*time.Millisecond))
		m.Observe(exchange("", "PURGE", "/", 500, 7*time.Millisecond))
	}
	noLatency := exchange("web", "GET", "/", 200, 0)
	noLatency.LatencyKnown = false
	m.Observe(noLatency)
	m.Observe(&output.Event{Container: output.Container{Name: "web"}, Response: output.Response{StatusCode: 200}})
	want := map[string][2]uint64{
		labels("web", "GET", "/users/{id}", "200"):      {6, 15},
		labels("web", "POST", "/users/{id}", "201"):     {3, 15},
		labels("abababababab", OtherMethod, "/", "500"): {3, 21},
	}
	got := series(t, m)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("series:\n got %v\nwant %v", got, want)
	}
}

// An event's strings may alias the parser's buffers, which the next message
// overwrites: the labels must be the values observed, not what the buffer
// holds later.
func TestMetricsKeepNoAliasOfTheEventsStrings(t *testing.T) {
	m := NewMetrics(func() []ContainerStats { return nil }, nil)
	buf := []byte("/alpha")
	uri := unsafe.String(unsafe.SliceData(buf), len(buf))
	m.Observe(exchange("web", "GET", uri, 200, time.Millisecond))
	copy(buf, "/omega")
	m.Observe(exchange("web", "GET", uri, 200, time.Millisecond))
	copy(buf, "/alpha")
	m.Observe(exchange("web", "GET", uri, 200, time.Millisecond))
	want := map[string][2]uint64{
		labels("web", "GET", "/alpha", "200"): {2, 2},
		labels("web", "GET", "/omega", "200"): {1, 1},
	}
	if got := series(t, m); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("series:\n got %v\nwant %v", got, want)
	}
}

// Past summary.MaxRoutes routes of a container, new routes share the
// "other" series, every time; routes admitted before keep their own.
func TestMetricsBoundRoutesPerContainer(t *testing.T) {
	m := NewMetrics(func() []ContainerStats { return nil }, nil)
	for i := range summary.MaxRoutes {
		m.Observe(exchange("web", "GET", fmt.Sprintf("/r%c%c", 'a'+i/26%26, 'a'+i%26)+fmt.Sprint(i/676), 200, time.Millisecond))
	}
	for range 2 {
		m.Observe(exchange("web", "GET", "/late", 200, time.Millisecond))
		m.Observe(exchange("web", "GET", "/raa0", 200, time.Millisecond))
	}
	got := series(t, m)
	if n := len(got); n != summary.MaxRoutes+1 {
		t.Errorf("%d series, want %d", n, summary.MaxRoutes+1)
	}
	if c := got[labels("web", "GET", summary.OtherRoute, "200")]; c[0] != 2 {
		t.Errorf("other route counted %d times, want 2", c[0])
	}
	if c := got[labels("web", "GET", "/raa0", "200")]; c[0] != 3 {
		t.Errorf("an admitted route counted %d times, want 3", c[0])
	}
}

// BenchmarkMetricsObserve is one exchange of a known series.
func BenchmarkMetricsObserve(b *testing.B) {
	m := NewMetrics(func() []ContainerStats { return nil }, nil)
	e := exchange("nginx", "GET", "/", 200, time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(e)
	}
}

// A span is exported after the event is gone: its attributes must not alias
// the event's strings.
func TestSpanOfKeepsNoAliasOfTheEventsStrings(t *testing.T) {
	buf := []byte("/alpha?x=1 PURGE")
	uri := unsafe.String(unsafe.SliceData(buf), 10)
	method := unsafe.String(&buf[11], 5)
	e := exchange("web", method, uri, 200, time.Millisecond)
	m := SpanOf(e)
	copy(buf, "/omega?y=2 XXXXX")
	got := map[string]string{}
	for _, a := range m.Attrs {
		got[string(a.Key)] = a.Value.Emit()
	}
	if got["url.path"] != "/alpha" || got["http.request.method_original"] != "PURGE" {
		t.Errorf("after the buffer changed: url.path %q, http.request.method_original %q; want /alpha and PURGE", got["url.path"], got["http.request.method_original"])
	}
}

// nopExporter takes every batch.
type nopExporter struct{}

func (nopExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (nopExporter) Shutdown(context.Context) error                             { return nil }

// benchExchange is a typical exchange of the bench's nginx.
func benchExchange() *output.Event {
	e := exchange("nginx", "GET", "/", 200, time.Millisecond)
	e.Timestamp = time.Now().UnixNano()
	e.Meta = output.PacketMeta{SrcIP: netip.MustParseAddr("127.0.0.1"), SrcPort: 8080, DstIP: netip.MustParseAddr("127.0.0.1"), DstPort: 40000}
	e.Response.Protocol = "HTTP/1.1"
	e.Response.Headers = []output.Header{{Name: "Server", Value: "nginx"}, {Name: "Content-Type", Value: "text/html"}, {Name: "Content-Length", Value: "615"}}
	return e
}

// BenchmarkSpansObserve is what a span costs the tracer's goroutine: the
// exchange copied and queued. The benchmark takes it back out of the queue
// and recycles it, as the builder does (so that the queue never fills and
// the drop path is not what is measured).
func BenchmarkSpansObserve(b *testing.B) {
	s := &Spans{in: make(chan *spanInput, DefaultQueueSize)}
	s.free.New = func() any { return new(spanInput) }
	e := benchExchange()
	b.ReportAllocs()
	for b.Loop() {
		s.Observe(e)
		s.recycle(<-s.in)
	}
	if s.Dropped() > 0 {
		b.Fatalf("%d dropped", s.Dropped())
	}
}

// BenchmarkSpansBuild is one exchange made into a span by the build
// goroutine's code and queued, the export loop handing batches to an
// exporter that drops them (the OTLP encoding and the connection are not
// included).
func BenchmarkSpansBuild(b *testing.B) {
	s := startSpans(nopExporter{}, SpanOptions{HostName: "vm"})
	s.stopBuild() // the benchmark builds, on its own goroutine
	<-s.built
	e := benchExchange()
	b.ReportAllocs()
	for b.Loop() {
		x := s.free.Get().(*spanInput)
		x.fill(e)
		s.accepted.Add(1)
		s.span(x)
	}
	b.StopTimer()
	s.handOff()
	if err := s.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	if s.Dropped() > 0 {
		b.Logf("%d of %d dropped (export queue full)", s.Dropped(), s.accepted.Load())
	}
}
