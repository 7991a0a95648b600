package httpstream

import (
	"reflect"
	"strings"
	"testing"
)

// kernelFiltered is the record the kernel sends for a response its status
// filter leaves out: no bytes, covering the n bytes of the response that
// are in its first segment, and saying it is total bytes long.
func kernelFiltered(off, n, total uint32, status int) step {
	return step{dir: Ingress, off: off, uncaptured: n, filtered: true, status: status, filteredEnd: off + total}
}

// A response the kernel left out answers the oldest queued request; the
// responses after it are paired with the requests after that one, and the
// framing disagreeing with the kernel is a counted resync, never a wrong pair.
func TestKernelFilteredResponsesArePairedInOrder(t *testing.T) {
	ok := resp200("ok")
	big := resp200(strings.Repeat("b", 5000))
	bigHead := len(big) - 5000
	err500 := "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"
	getC := "GET /c HTTP/1.1\r\nHost: example.com\r\n\r\n"
	n := func(s string) uint32 { return uint32(len(s)) }
	eg, in := Egress, Ingress
	tests := []struct {
		name                       string
		steps                      []step
		want                       []string
		filtered, desyncs, dropped uint64
	}{
		{
			name:     "filtered 200 then a 500 on keep-alive",
			steps:    cat(seq(eg, getA), []step{kernelFiltered(0, n(ok), n(ok), 200)}, seq(eg, getB), seq(in, err500)),
			want:     []string{`ingress HTTP/1.1 "500 Internal Server Error" cl=4 <- GET /b`},
			filtered: 1,
		},
		{
			name: "pipelined requests, two filtered, then a 500",
			steps: cat(seq(eg, getA+getB+getC),
				[]step{kernelFiltered(0, n(ok), n(ok), 200), kernelFiltered(n(ok), n(ok), n(ok), 200)}, seq(in, err500)),
			want:     []string{`ingress HTTP/1.1 "500 Internal Server Error" cl=4 <- GET /c`},
			filtered: 2,
		},
		{
			name: "a filtered response whose body the kernel skips",
			steps: cat(seq(eg, getA+getB), []step{kernelFiltered(0, uint32(bigHead)+100, n(big), 200),
				{dir: in, off: uint32(bigHead) + 100, data: strings.Repeat("b", 256), uncaptured: 1744, hasSkip: true, skipTo: n(big)}},
				[]step{at(in, len(big), err500)}),
			want:     []string{`ingress HTTP/1.1 "500 Internal Server Error" cl=4 <- GET /b`},
			filtered: 1,
		},
		{
			name: "a filtered response whose body segments the kernel copies",
			steps: cat(seq(eg, getA+getB), []step{kernelFiltered(0, uint32(bigHead)+100, n(big), 200)},
				seq(in, big[bigHead+100:3000], big[3000:], err500)),
			want:     []string{`ingress HTTP/1.1 "500 Internal Server Error" cl=4 <- GET /b`},
			filtered: 1,
		},
		{
			name: "the filtered record arrives after the response that follows it",
			steps: cat(seq(eg, getA+getB+getC), []step{kernelFiltered(0, n(ok), n(ok), 200), at(in, 2*len(ok), err500),
				kernelFiltered(n(ok), n(ok), n(ok), 200)}),
			want:     []string{`ingress HTTP/1.1 "500 Internal Server Error" cl=4 <- GET /c`},
			filtered: 2,
		},
		{
			name: "a retransmitted filtered record counts once",
			steps: cat(seq(eg, getA+getB), []step{kernelFiltered(0, n(ok), n(ok), 200), kernelFiltered(0, n(ok), n(ok), 200)},
				seq(in, err500)),
			want:     []string{`ingress HTTP/1.1 "500 Internal Server Error" cl=4 <- GET /b`},
			filtered: 1,
		},
		{
			name:     "a filtered response with no request queued is passed unpaired",
			steps:    cat([]step{kernelFiltered(0, n(ok), n(ok), 200)}, seq(eg, getA), seq(in, err500)),
			want:     []string{`ingress HTTP/1.1 "500 Internal Server Error" cl=4 <- GET /a`},
			filtered: 1,
		},
		{
			name: "a filtered record in the middle of a header block resyncs",
			steps: cat(seq(eg, getA+getB), seq(in, "HTTP/1.1 200 OK\r\nContent-"),
				[]step{kernelFiltered(25, n(ok), n(ok), 200)}, []step{at(in, 25+len(ok), err500)}),
			want:    []string{`ingress HTTP/1.1 "500 Internal Server Error" cl=4 <- GET /b`},
			desyncs: 1, dropped: 1,
		},
		{
			// The next response starts a segment: framing resumes there.
			name:     "an answer to HEAD has no body the kernel could skip: resync",
			steps:    cat(seq(eg, "HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n"+getB), []step{kernelFiltered(0, n(ok)-2, n(ok), 200)}, seq(in, err500)),
			want:     []string{`ingress HTTP/1.1 "500 Internal Server Error" cl=4 <- GET /b`},
			filtered: 1, desyncs: 1,
		},
		{
			name: "a filtered 200 to CONNECT ends HTTP on the connection",
			steps: cat(seq(eg, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
				[]step{kernelFiltered(0, 19, 19, 200)}, seq(in, err500)),
			want:     nil,
			filtered: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(Limits{}, 1000, 0xfffffff0) // the response direction wraps
			for _, st := range tc.steps {
				r.feed(st)
			}
			if got := r.summaries(); !reflect.DeepEqual(got, tc.want) && (len(got) != 0 || len(tc.want) != 0) {
				t.Errorf("events\n got %q\nwant %q", got, tc.want)
			}
			if r.stats.Filtered != tc.filtered || r.stats.Desyncs != tc.desyncs || r.stats.DroppedRequests != tc.dropped {
				t.Errorf("filtered %d, desyncs %d, dropped %d; want %d, %d, %d",
					r.stats.Filtered, r.stats.Desyncs, r.stats.DroppedRequests, tc.filtered, tc.desyncs, tc.dropped)
			}
		})
	}
}
