package httpstream

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkSmallResponses feeds keep-alive GET + 150-byte response pairs; one op is
// one request segment plus one response segment.
func BenchmarkSmallResponses(b *testing.B) {
	req := []byte("GET /api/v1/items?id=42 HTTP/1.1\r\nHost: svc.local:8080\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\r\n")
	body := strings.Repeat("x", 150-len("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 02 Oct 2023 18:04:38 GMT\r\nContent-Length: 35\r\n\r\n"))
	resp := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 02 Oct 2023 18:04:38 GMT\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	var stats Stats
	c := NewConn(Limits{}, &stats)
	var n int
	emit := func(r *Response) { n += r.StatusCode }
	rq := Segment{Dir: Egress, Seq: 1000, Len: uint32(len(req)), Data: req}
	rs := Segment{Dir: Ingress, Seq: 0xFFFF0000, Len: uint32(len(resp)), Data: resp}
	b.SetBytes(int64(len(req) + len(resp)))
	b.ReportAllocs()
	for b.Loop() {
		rq.Info.TimestampNs++
		c.Feed(&rq, emit)
		rq.Seq += rq.Len
		rs.Info.TimestampNs++
		c.Feed(&rs, emit)
		rs.Seq += rs.Len
	}
	b.StopTimer()
	if stats.Responses != stats.Requests || stats.Desyncs != 0 || n == 0 {
		b.Fatalf("benchmark exchange misparsed: %+v", stats)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(stats.Responses), "ns/response")
}
