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
	tg := benchTarget(tr, nothingSink{})
	newBenchExchange().run(b, tr)
	if tg.Events() != uint64(b.N) {
		b.Fatalf("%d events for %d exchanges", tg.Events(), b.N)
	}
}
