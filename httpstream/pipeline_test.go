package httpstream

import (
	"fmt"
	"strings"
	"testing"
)

// pipeReq is a pipelined request for /rN, padded with a header to about size bytes.
func pipeReq(n, size int) string {
	head := fmt.Sprintf("GET /r%d HTTP/1.1\r\nHost: h\r\n", n)
	pad := ""
	if k := size - len(head) - len("X-Pad: \r\n\r\n"); k > 0 {
		pad = "X-Pad: " + strings.Repeat("p", k) + "\r\n"
	}
	return head + pad + "\r\n"
}

// pipeResp answers /rN, naming it in a header so that pairing can be checked.
func pipeResp(n int) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-For: /r%d\r\nContent-Length: 0\r\n\r\n", n)
}

// TestPipelineOverflowNeverMispairs: when the pending queue overflows, in count or
// in bytes, every response is emitted either with its own request or with none, and
// the dropped requests are counted.
func TestPipelineOverflowNeverMispairs(t *testing.T) {
	interim := "HTTP/1.1 100 Continue\r\n\r\n"
	cases := []struct {
		name     string
		lim      Limits
		requests int
		reqSize  int
		interim  bool // a 100 Continue before each final response
		dropped  uint64
	}{
		{name: "count: 70 requests over the default 64", requests: 70, reqSize: 40, dropped: 6},
		{name: "count: 200 requests over a queue of 3", lim: Limits{MaxPendingRequests: 3}, requests: 200, reqSize: 40, dropped: 197},
		{name: "bytes: 64 requests of 16 KiB over the default 128 KiB", requests: 64, reqSize: 16000, dropped: 56},
		{name: "bytes: a request larger than the whole cap", lim: Limits{MaxPendingBytes: 1000}, requests: 3, reqSize: 2000, dropped: 3},
		{name: "count with interim responses", lim: Limits{MaxPendingRequests: 4}, requests: 10, reqSize: 40, interim: true, dropped: 6},
		{name: "no overflow", requests: 64, reqSize: 100, dropped: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(tc.lim, 1000, 5000)
			for i := range tc.requests {
				r.feed(step{dir: Egress, off: cont, data: pipeReq(i, tc.reqSize)})
			}
			for i := range tc.requests {
				if tc.interim {
					r.feed(step{dir: Ingress, off: cont, data: interim})
				}
				r.feed(step{dir: Ingress, off: cont, data: pipeResp(i)})
			}
			paired, final := 0, 0
			for i, ev := range r.events {
				if ev.Code == 100 {
					continue
				}
				final++
				want := ev.header("X-For")[0]
				if ev.HasReq {
					paired++
					if ev.Req.URI != want {
						t.Errorf("event %d answers %s but is paired with %s", i, want, ev.Req.URI)
					}
				}
			}
			if final != tc.requests {
				t.Fatalf("%d final responses, want %d", final, tc.requests)
			}
			if r.stats.DroppedRequests != tc.dropped {
				t.Errorf("DroppedRequests = %d, want %d", r.stats.DroppedRequests, tc.dropped)
			}
			if want := tc.requests - int(tc.dropped); paired != want {
				t.Errorf("%d responses paired, want %d (every request that was kept)", paired, want)
			}
		})
	}
}

// TestPendingBytesBoundFootprint: however many large requests a connection
// pipelines without answers, what it keeps stays near MaxPendingBytes.
func TestPendingBytesBoundFootprint(t *testing.T) {
	r := newRunner(Limits{}, 1, 1)
	for i := range 500 {
		r.feed(step{dir: Egress, off: cont, data: pipeReq(i, 16000)})
	}
	if fp := r.conn.Footprint(); fp > DefaultMaxPendingBytes+4*DefaultMaxHeaderBytes*2+64<<10 {
		t.Errorf("footprint %d bytes after 500 unanswered 16 KB requests, want about %d at most", fp, DefaultMaxPendingBytes)
	}
	if r.conn.pendingBytes > DefaultMaxPendingBytes {
		t.Errorf("pending requests keep %d bytes, over the %d cap", r.conn.pendingBytes, DefaultMaxPendingBytes)
	}
}

// TestResyncAfterOverflowDoesNotMispair: responses lost after an overflow make the
// direction resync; the unanswered count is then unknown and is forgotten.
func TestResyncAfterOverflowDoesNotMispair(t *testing.T) {
	r := newRunner(Limits{MaxPendingRequests: 2}, 1000, 5000)
	for i := range 4 {
		r.feed(step{dir: Egress, off: cont, data: pipeReq(i, 40)})
	}
	// Responses to /r0../r2 are lost: the next one answers /r3.
	r.feed(step{dir: Ingress, off: 0, data: pipeResp(0)})
	lost := len(pipeResp(1)) + len(pipeResp(2))
	r.feed(step{dir: Ingress, off: uint32(len(pipeResp(0))), uncaptured: uint32(lost)})
	r.feed(step{dir: Ingress, off: cont, data: pipeResp(3)})
	for i, ev := range r.events {
		if ev.HasReq && ev.Req.URI != ev.header("X-For")[0] {
			t.Errorf("event %d answers %s but is paired with %s", i, ev.header("X-For")[0], ev.Req.URI)
		}
	}
}
