package tracer

import (
	"fmt"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/internal/telemetry"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
)

// The benchmarks here are the exchanges of `make bench`'s filter and
// telemetry rows, which write no JSON: one op is one keep-alive exchange of
// the bench's nginx, its request record and its response record.

// nothingSink takes events and writes nothing, as --output none does.
type nothingSink struct{}

func (nothingSink) Write(*output.Event) error { return nil }
func (nothingSink) Flush() error              { return nil }
func (nothingSink) Close() error              { return nil }

type benchExchange struct {
	req, resp []byte
	in, out   bpf.Record
}

func newBenchExchange() *benchExchange {
	x := &benchExchange{req: []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")}
	body := "hello from boxtap bench\n"
	x.resp = []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 17:05:39 GMT\r\n"+
		"Content-Type: text/plain\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n%s", len(body), body))
	x.in = benchRecord(bpf.DirIngress, 1000, x.req)
	x.out = benchRecord(bpf.DirEgress, 5000, x.resp)
	x.out.Rflags |= bpf.FlagOwner
	x.out.Owner = benchOwner()
	return x
}

// filtered makes the response records those of a response the kernel's
// status filter left out: no payload, its status and its end.
func (x *benchExchange) filtered() {
	x.out.Data = nil
	x.out.DataLen = 0
	x.out.Rflags |= bpf.FlagFiltered
	x.out.Status = 200
	x.out.SkipTo = x.out.Seq + uint32(len(x.resp))
}

func (x *benchExchange) run(b *testing.B, tr *Tracer) {
	b.ReportAllocs()
	for b.Loop() {
		x.in.TsTai += 1000
		tr.handle(&x.in)
		x.in.Seq += uint32(len(x.req))
		x.out.TsTai += 1000
		x.out.Seq += 0
		tr.handle(&x.out)
		x.out.Seq += uint32(len(x.resp))
		if x.out.Rflags&bpf.FlagFiltered != 0 {
			x.out.SkipTo = x.out.Seq + uint32(len(x.resp))
		}
		x.out.Rflags &^= bpf.FlagOwner
		x.out.Owner = nil
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}

func benchTarget(tr *Tracer, sink output.Sink) *Target {
	tg := &Target{
		Info: container.Info{ID: strings.Repeat("d2", 32), Name: "nginx", Image: "boxtap-bench-nginx:1", Runtime: "docker", Hostname: "vm"},
		sink: sink,
	}
	tg.bare = output.Discards(sink)
	tr.targets[7] = tg
	return tg
}

// BenchmarkHandleKernelFiltered: --status 5xx against a server that answers
// 200, the kernel leaving each response out (a record without payload).
func BenchmarkHandleKernelFiltered(b *testing.B) {
	f, err := output.NewFilter(output.FilterSpec{Status: []string{"5xx"}})
	if err != nil {
		b.Fatal(err)
	}
	tr := New(nil, Options{Filter: f, OnError: func(err error) { b.Fatalf("tracer error: %v", err) }})
	tg := benchTarget(tr, nothingSink{})
	x := newBenchExchange()
	x.filtered()
	x.run(b, tr)
	if tr.stats.Filtered != uint64(b.N) || tg.Events() != 0 {
		b.Fatalf("%d filtered, %d events for %d exchanges", tr.stats.Filtered, tg.Events(), b.N)
	}
}

// BenchmarkHandleUserFiltered: the same filter where the kernel could not
// decide (the response is framed and left out in user space).
func BenchmarkHandleUserFiltered(b *testing.B) {
	f, err := output.NewFilter(output.FilterSpec{Status: []string{"5xx"}})
	if err != nil {
		b.Fatal(err)
	}
	tr := New(nil, Options{Filter: f, OnError: func(err error) { b.Fatalf("tracer error: %v", err) }})
	tg := benchTarget(tr, nothingSink{})
	newBenchExchange().run(b, tr)
	if tg.Filtered() != uint64(b.N) || tg.Events() != 0 {
		b.Fatalf("%d filtered, %d events for %d exchanges", tg.Filtered(), tg.Events(), b.N)
	}
}

// BenchmarkHandleMetricsOnly: --output none --metrics-addr, each exchange
// observed into the request-duration histogram.
func BenchmarkHandleMetricsOnly(b *testing.B) {
	m := telemetry.NewMetrics(func() []telemetry.ContainerStats { return nil }, nil)
	tr := New(nil, Options{Observer: m, OnError: func(err error) { b.Fatalf("tracer error: %v", err) }})
	tg := benchTarget(tr, discarding{})
	newBenchExchange().run(b, tr)
	if tg.Events() != uint64(b.N) {
		b.Fatalf("%d events for %d exchanges", tg.Events(), b.N)
	}
}

// keptFields is what an observer saw of one exchange.
type keptFields struct {
	process, container, uri string
	status                  int
	identity, latency       bool
}

type fieldObserver struct{ seen []keptFields }

func (o *fieldObserver) Observe(e *output.Event) {
	o.seen = append(o.seen, keptFields{process: e.ProcessName, container: e.Container.Name, uri: strings.Clone(e.Request.URIPath),
		status: e.Response.StatusCode, identity: e.Identity != nil, latency: e.LatencyKnown})
}

// discarding is a sink that writes nothing and says so.
type discarding struct{ nothingSink }

func (discarding) Discards() bool { return true }

// With a sink that writes nothing, the observer gets the exchange and the
// container but not the process fields, which only a written line shows;
// with any other sink it gets the event as written.
func TestObserverOfADiscardingSinkGetsTheExchangeWithoutTheProcess(t *testing.T) {
	for _, tc := range []struct {
		name string
		sink output.Sink
		want keptFields
	}{
		{"discarding", discarding{}, keptFields{container: "nginx", uri: "/", status: 200, latency: true}},
		{"writing", nothingSink{}, keptFields{process: "nginx", container: "nginx", uri: "/", status: 200, identity: true, latency: true}},
	} {
		obs := &fieldObserver{}
		tr := New(nil, Options{Observer: obs, OnError: func(err error) { t.Fatalf("tracer error: %v", err) }})
		tg := benchTarget(tr, tc.sink)
		x := newBenchExchange()
		for range 2 {
			tr.handle(&x.in)
			x.in.Seq += uint32(len(x.req))
			tr.handle(&x.out)
			x.out.Seq += uint32(len(x.resp))
			x.out.Rflags &^= bpf.FlagOwner
			x.out.Owner = nil
		}
		if len(obs.seen) != 2 || obs.seen[0] != tc.want || obs.seen[1] != tc.want || tg.Events() != 2 {
			t.Errorf("%s sink: observed %+v, %d events; want twice %+v", tc.name, obs.seen, tg.Events(), tc.want)
		}
	}
}
