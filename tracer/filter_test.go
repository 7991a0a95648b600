package tracer

import (
	"fmt"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
)

// countingSink counts the events written to it.
type countingSink struct{ n int }

func (s *countingSink) Write(*output.Event) error { s.n++; return nil }
func (s *countingSink) Flush() error              { return nil }
func (s *countingSink) Close() error              { return nil }

// exchangeRecords returns the request and response records of one
// keep-alive exchange answered with status (runExchanges moves them on).
func exchangeRecords(status int) (in, out bpf.Record) {
	req := []byte("GET /api/v1/items HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
	body := "hello from boxtap\n"
	resp := []byte(fmt.Sprintf("HTTP/1.1 %d X\r\nServer: nginx/1.22.1\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", status, len(body), body))
	in = benchRecord(bpf.DirIngress, 1000, req)
	out = benchRecord(bpf.DirEgress, 5000, resp)
	out.Rflags |= bpf.FlagOwner
	out.Owner = benchOwner()
	return in, out
}

func filterTracer(t testing.TB, spec output.FilterSpec, sink output.Sink) (*Tracer, *Target) {
	f, err := output.NewFilter(spec)
	if err != nil {
		t.Fatal(err)
	}
	tr := New(nil, Options{Filter: f, OnError: func(err error) { t.Fatalf("tracer error: %v", err) }})
	tg := &Target{Info: container.Info{ID: strings.Repeat("d2", 32), Name: "nginx", Runtime: "docker"}, sink: sink}
	tr.targets[7] = tg
	return tr, tg
}

// runExchanges feeds n exchanges through handle.
func runExchanges(tr *Tracer, in, out *bpf.Record, n int) {
	reqLen, respLen := uint32(len(in.Data)), uint32(len(out.Data))
	for range n {
		in.TsTai += 1000
		tr.handle(in)
		in.Seq += reqLen
		out.TsTai += 1000
		tr.handle(out)
		out.Seq += respLen
		out.Rflags &^= bpf.FlagOwner
		out.Owner = nil
	}
}

func TestFilteredExchangesAreCountedNotWritten(t *testing.T) {
	for _, tc := range []struct {
		status        int
		spec          output.FilterSpec
		written, left uint64
	}{
		{200, output.FilterSpec{Status: []string{"5xx"}}, 0, 5},
		{503, output.FilterSpec{Status: []string{"5xx"}}, 5, 0},
		{200, output.FilterSpec{Path: []string{"/api/*"}, Method: []string{"GET"}}, 5, 0},
		{200, output.FilterSpec{Path: []string{"/api/*"}, Method: []string{"POST"}}, 0, 5},
		{200, output.FilterSpec{}, 5, 0},
	} {
		sink := &countingSink{}
		tr, tg := filterTracer(t, tc.spec, sink)
		in, out := exchangeRecords(tc.status)
		runExchanges(tr, &in, &out, 5)
		if tg.Events() != tc.written || tg.Filtered() != tc.left || uint64(sink.n) != tc.written {
			t.Errorf("status %d, %+v: %d events (%d written to the sink), %d filtered; want %d and %d",
				tc.status, tc.spec, tg.Events(), sink.n, tg.Filtered(), tc.written, tc.left)
		}
	}
}

func TestExitLineEndsWithTheFilteredCount(t *testing.T) {
	if s := (Summary{Events: 3, Filtered: 7}).String(); !strings.HasPrefix(s, "3 events, 0 lost records, ") || !strings.HasSuffix(s, ", 7 filtered out") {
		t.Errorf("%q", s)
	}
	if s := (Summary{Events: 3}).String(); strings.Contains(s, "filtered") {
		t.Errorf("nothing filtered, yet %q", s)
	}
}

// The kernel's share of what was filtered out is named after the total.
func TestExitLineNamesTheKernelsShareOfTheFilteredCount(t *testing.T) {
	a := Summary{Events: 1, Filtered: 7, FilteredKernel: 5}
	var s Summary
	s.add(a)
	s.add(Summary{Filtered: 2, FilteredKernel: 1})
	if got := s.String(); !strings.HasSuffix(got, ", 9 filtered out (6 of them in the kernel)") {
		t.Errorf("%q", got)
	}
}

func TestFilteredExchangeDoesNotCountTowardsMaxEvents(t *testing.T) {
	f, _ := output.NewFilter(output.FilterSpec{Status: []string{"2xx"}})
	sink := &countingSink{}
	tr := New(nil, Options{Filter: f, MaxEvents: 2})
	tg := &Target{Info: container.Info{ID: "x"}, sink: sink}
	tr.targets[7] = tg
	in, out := exchangeRecords(404)
	runExchanges(tr, &in, &out, 3)
	if sink.n != 0 || tr.written != 0 {
		t.Fatalf("filtered exchanges were written or counted: %d, %d", sink.n, tr.written)
	}
}

func TestFilteredExchangeDoesNotAllocate(t *testing.T) {
	tr, tg := filterTracer(t, output.FilterSpec{Status: []string{"5xx"}}, &countingSink{})
	in, out := exchangeRecords(200)
	runExchanges(tr, &in, &out, 10) // connection and parser state exist now
	if allocs := testing.AllocsPerRun(200, func() { runExchanges(tr, &in, &out, 1) }); allocs != 0 {
		t.Errorf("a filtered exchange allocates %.1f times, want 0", allocs)
	}
	if tg.Events() != 0 {
		t.Fatal("an exchange was written")
	}
}

// BenchmarkHandleSmallResponsesFiltered is BenchmarkHandleSmallResponses
// with --status 5xx against responses that are all 200: the exchange is
// reassembled, framed and paired, then left out before encoding.
func BenchmarkHandleSmallResponsesFiltered(b *testing.B) {
	tr, tg := filterTracer(b, output.FilterSpec{Status: []string{"5xx"}}, output.NewLineSink(discardWriter{}, nil))
	in, out := exchangeRecords(200)
	b.ReportAllocs()
	for b.Loop() {
		runExchanges(tr, &in, &out, 1)
	}
	b.StopTimer()
	if tg.Filtered() != uint64(b.N) {
		b.Fatalf("%d filtered for %d exchanges", tg.Filtered(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
