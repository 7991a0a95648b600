package h2stream

import (
	"testing"

	"github.com/boxtap/boxtap/httpstream"
)

// BenchmarkGRPCCalls parses unary gRPC calls (request, response, trailers)
// on one connection; one op is one call.
func BenchmarkGRPCCalls(b *testing.B) {
	w, starts := grpcCalls(b, 1000, -1)
	body := w.chunks[starts[0]:]
	p := New(nil)
	for _, c := range w.chunks[:starts[0]] {
		p.Consume(c.dir, c.data, httpstream.PacketInfo{}, nil)
	}
	var bytes int64
	for _, c := range body {
		bytes += int64(len(c.data))
	}
	n := 0
	emit := func(*httpstream.Response) { n++ }
	b.SetBytes(bytes / int64(len(starts)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		// The same calls again on the same connection: every stream of a
		// round ends within it; the values decoded may differ from the
		// first round's (the HPACK table moved on), the work does not.
		for _, c := range body {
			p.Consume(c.dir, c.data, httpstream.PacketInfo{}, emit)
		}
		i += len(starts)
	}
	if n == 0 {
		b.Fatal("no events")
	}
}
