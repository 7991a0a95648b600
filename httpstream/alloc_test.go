package httpstream

import (
	"strings"
	"testing"
)

// TestSteadyStateZeroAlloc: once a Conn has warmed up, a keep-alive exchange with
// pipelined requests, a 1xx, a status line without reason phrase, lower-case
// header names and a chunked body allocates nothing, and every event still carries
// the right request and headers (request strings outlive the next request's parse).
func TestSteadyStateZeroAlloc(t *testing.T) {
	reqs := []byte("POST /submit HTTP/1.1\r\nhost: svc.local\r\ncontent-length: 3\r\n\r\nabc" +
		"GET /items?id=1 HTTP/1.1\r\nHost: other.local\r\nx-trace-id: 7\r\n\r\n")
	resps := []byte("HTTP/1.1 100 Continue\r\n\r\n" +
		"HTTP/1.1 201\r\ncontent-type: text/plain\r\nContent-Length: 2\r\n\r\nok" +
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
	type want struct {
		status, method, uri, host, reqHeader, respHeader string
	}
	wants := [...]want{
		{"100 Continue", "POST", "/submit", "svc.local", "Content-Length", ""},
		{"201 ", "POST", "/submit", "svc.local", "Content-Length", "Content-Type"},
		{"200 OK", "GET", "/items?id=1", "other.local", "X-Trace-Id", "Transfer-Encoding"},
	}
	var stats Stats
	c := NewConn(Limits{}, &stats)
	var n, bad int
	emit := func(r *Response) {
		w := &wants[n%len(wants)]
		n++
		q := r.Request
		if r.Status != w.status || q == nil || q.Method != w.method || q.URI != w.uri || q.Host != w.host ||
			len(q.Headers) != 2 || q.Headers[1].Name != w.reqHeader ||
			w.respHeader != "" && (len(r.Headers) == 0 || r.Headers[0].Name != w.respHeader) {
			if bad++; bad <= 3 {
				t.Errorf("event %d: %+v (request %+v), want %+v", n, *r, q, *w)
			}
		}
	}
	rq := Segment{Dir: Egress, Seq: 1 << 31, Len: uint32(len(reqs)), Data: reqs}
	rs := Segment{Dir: Ingress, Seq: 0xFFFFFF00, Len: uint32(len(resps)), Data: resps}
	exchange := func() {
		c.Feed(&rq, emit)
		rq.Seq += rq.Len
		c.Feed(&rs, emit)
		rs.Seq += rs.Len
	}
	for range 10 { // warm up: buffers and free lists reach their steady size
		exchange()
	}
	allocs := testing.AllocsPerRun(200, exchange)
	if allocs != 0 {
		t.Errorf("steady-state exchange allocates %v times, want 0", allocs)
	}
	runs := uint64(10 + 200 + 1) // AllocsPerRun runs the function once more to warm up
	if stats.Requests != 2*runs || stats.Responses != 3*runs || stats.Desyncs != 0 || stats.DroppedRequests != 0 {
		t.Errorf("stats %+v after %d exchanges", stats, runs)
	}
	if n != 3*int(runs) {
		t.Errorf("%d events, want %d", n, 3*runs)
	}
}

// TestEmittedStringsAreOverwrittenAfterEmit documents the contract: strings of an
// event alias the Conn's buffers, so a caller keeping one must copy it during emit.
func TestEmittedStringsAreOverwrittenAfterEmit(t *testing.T) {
	c := NewConn(Limits{}, nil)
	var kept, cloned []string
	emit := func(r *Response) {
		kept = append(kept, r.Headers[0].Value)
		cloned = append(cloned, strings.Clone(r.Headers[0].Value))
	}
	r1 := "HTTP/1.1 200 OK\r\nX-A: first\r\nContent-Length: 0\r\n\r\n"
	r2 := "HTTP/1.1 200 OK\r\nX-A: other\r\nContent-Length: 0\r\n\r\n"
	c.Feed(&Segment{Dir: Ingress, Seq: 0, Len: uint32(len(r1)), Data: []byte(r1)}, emit)
	c.Feed(&Segment{Dir: Ingress, Seq: uint32(len(r1)), Len: uint32(len(r2)), Data: []byte(r2)}, emit)
	if len(cloned) != 2 || cloned[0] != "first" || cloned[1] != "other" {
		t.Fatalf("cloned values %q, want [first other]", cloned)
	}
	if kept[0] != "other" {
		t.Errorf("a value kept past emit reads %q: the Conn no longer reuses its header buffer, update the doc", kept[0])
	}
}
