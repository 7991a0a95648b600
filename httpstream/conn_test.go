package httpstream

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const (
	eg = Egress
	in = Ingress
)

func TestConnTable(t *testing.T) {
	bodyWithFake := "xxHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	chunked := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	overlap := resp200("hi") + "HTTP/1.1 204 No Content\r\n\r\n"
	ooo := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab" + resp200("c")
	cl5000 := "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
	long := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 300) + "\r\nContent-Length: 5\r\nX-After: 1\r\n\r\nhello"

	tests := []struct {
		name  string
		lim   Limits
		isnE  uint32
		isnI  uint32
		steps []step
		want  []string
		stats Stats // compared by checkStats
		check func(t *testing.T, r *runner)
		done  bool
	}{
		{
			name:  "simple keep-alive exchange",
			steps: cat(seq(eg, getA), seq(in, resp200("hello")), seq(eg, getB), seq(in, resp200("bye"))),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=5 <- GET /a`,
				`ingress HTTP/1.1 "200 OK" cl=3 <- GET /b`,
			},
			stats: Stats{Requests: 2, Responses: 2},
		},
		{
			name:  "response split at every byte",
			steps: cat(seq(eg, getA), split(in, 0, resp200("hello"), ones(len(resp200("hello")))...)),
			want:  []string{`ingress HTTP/1.1 "200 OK" cl=5 <- GET /a`},
			stats: Stats{Requests: 1, Responses: 1},
		},
		{
			name: "pipelined requests and responses in one segment each",
			steps: cat(seq(eg, getA+getB+"HEAD /c HTTP/1.1\r\n\r\n"),
				seq(in, resp200("1")+resp200("22")+"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"+resp200("3"))),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=1 <- GET /a`,
				`ingress HTTP/1.1 "200 OK" cl=2 <- GET /b`,
				`ingress HTTP/1.1 "200 OK" cl=100 <- HEAD /c`,
				`ingress HTTP/1.1 "200 OK" cl=1 <- -`,
			},
			stats: Stats{Requests: 3, Responses: 4},
		},
		{
			name: "1xx responses pair without consuming the request",
			steps: cat(seq(eg, "POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", "data"),
				seq(in, "HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"+resp200("ok")),
				seq(eg, getB), seq(in, resp200(""))),
			want: []string{
				`ingress HTTP/1.1 "100 Continue" cl=-1 <- POST /up`,
				`ingress HTTP/1.1 "103 Early Hints" cl=-1 <- POST /up`,
				`ingress HTTP/1.1 "200 OK" cl=2 <- POST /up`,
				`ingress HTTP/1.1 "200 OK" cl=0 <- GET /b`,
			},
			stats: Stats{Requests: 2, Responses: 4},
		},
		{
			name: "204 and 304 have no body even with Content-Length",
			steps: cat(seq(eg, getA+getB+getA),
				seq(in, "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"+"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"+resp200("x"))),
			want: []string{
				`ingress HTTP/1.1 "204 No Content" cl=10 <- GET /a`,
				`ingress HTTP/1.1 "304 Not Modified" cl=99 <- GET /b`,
				`ingress HTTP/1.1 "200 OK" cl=1 <- GET /a`,
			},
			stats: Stats{Requests: 3, Responses: 3},
		},
		{
			name: "chunked with extensions, trailers and fake responses inside chunks",
			steps: cat(seq(eg, getA+getB),
				seq(in, chunked+"11;name=v\r\nHTTP/1.1 200 OK\r\n\r\n", "15\r\n",
					"HTTP/1.1 404 Nope\r\n\r\n\r\n0\r\nX-Trailer: 1\r\n", "HTTP/1.1 500 Trailer\r\n\r\n"+resp200("z"))),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=-1 <- GET /a`,
				`ingress HTTP/1.1 "200 OK" cl=1 <- GET /b`,
			},
			stats: Stats{Requests: 2, Responses: 2},
		},
		{
			name: "fake response at a segment start inside a Content-Length body",
			steps: cat(seq(eg, getA+getB),
				seq(in, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nx", 1+len(bodyWithFake)), bodyWithFake, resp200("ok"))),
			want: []string{
				fmt.Sprintf(`ingress HTTP/1.1 "200 OK" cl=%d <- GET /a`, 1+len(bodyWithFake)),
				`ingress HTTP/1.1 "200 OK" cl=2 <- GET /b`,
			},
		},
		{
			name: "close-delimited body until FIN",
			steps: cat(seq(eg, "GET / HTTP/1.0\r\n\r\n"), []step{{dir: eg, off: cont, fin: true}},
				seq(in, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody", "HTTP/1.1 200 OK\r\n\r\n"),
				[]step{{dir: in, off: cont, data: "more", fin: true}}, seq(in, "HTTP/1.1 200 OK\r\n\r\n")),
			want:  []string{`ingress HTTP/1.0 "200 OK" cl=-1 <- GET /`},
			done:  true,
			stats: Stats{Requests: 1, Responses: 1},
		},
		{
			name: "retransmitted segments give no second event",
			steps: cat([]step{at(eg, 0, getA), at(eg, 0, getA), at(in, 0, resp200("hello")), at(in, 0, resp200("hello")),
				at(eg, 0, getA)}),
			want:  []string{`ingress HTTP/1.1 "200 OK" cl=5 <- GET /a`},
			stats: Stats{Requests: 1, Responses: 1, DuplicateBytes: uint64(2*len(getA) + len(resp200("hello")))},
		},
		{
			name: "partial overlaps are trimmed",
			steps: cat(seq(eg, getA),
				[]step{at(in, 0, overlap[:26]), at(in, 10, overlap[10:40]), at(in, 20, overlap[20:])}),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=2 <- GET /a`,
				`ingress HTTP/1.1 "204 No Content" cl=-1 <- -`,
			},
			stats: Stats{Requests: 1, Responses: 2, DuplicateBytes: 16 + 20},
		},
		{
			name: "out-of-order ingress is reassembled",
			steps: cat(seq(eg, getA+getB),
				[]step{at(in, 0, ooo[:17]), at(in, 36, ooo[36:]), at(in, 17, ooo[17:36])}),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=2 <- GET /a`,
				`ingress HTTP/1.1 "200 OK" cl=1 <- GET /b`,
			},
		},
		{
			name: "sequence numbers wrap around 2^32",
			isnE: 0xFFFFFFF0, isnI: 0xFFFFFFFA,
			steps: cat(split(eg, 0, getA, 10, 10),
				[]step{at(in, 0, resp200("hello")[:10]), at(in, 20, resp200("hello")[20:]), at(in, 10, resp200("hello")[10:20])},
				seq(in, resp200("x")), []step{at(in, 3, "retransmit")}),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=5 <- GET /a`,
				`ingress HTTP/1.1 "200 OK" cl=1 <- -`,
			},
			stats: Stats{DuplicateBytes: 10},
		},
		{
			name: "uncaptured body bytes are consumed",
			steps: cat(seq(eg, getA+getB),
				[]step{{dir: in, off: cont, data: cl5000 + "ab", uncaptured: 1000},
					{dir: in, off: cont, data: "cd", uncaptured: 5000 - 1004}},
				seq(in, resp200("ok"))),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=5000 <- GET /a`,
				`ingress HTTP/1.1 "200 OK" cl=2 <- GET /b`,
			},
		},
		{
			name: "SkipTo spans a body",
			steps: cat(seq(eg, getA+getB),
				[]step{{dir: in, off: 0, data: cl5000 + "ab", hasSkip: true, skipTo: uint32(len(cl5000)) + 5000}},
				seq(in, "HTTP/1.1 201 Created\r\n", "\r\n"),
				[]step{at(in, 100, "late duplicate inside the skipped span")}),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=5000 <- GET /a`,
				`ingress HTTP/1.1 "201 Created" cl=-1 <- GET /b`,
			},
			stats: Stats{DuplicateBytes: 38},
		},
		{
			name: "uncaptured header bytes desync, then resync at a start line",
			steps: cat(seq(eg, getA),
				[]step{{dir: in, off: cont, data: "HTTP/1.1 200 OK\r\nContent-Le", uncaptured: 30}},
				seq(eg, getB),
				seq(in, "body bytes HTTP/1.1 200 OK\r\n\r\n", resp200("ok"))),
			want:  []string{`ingress HTTP/1.1 "200 OK" cl=2 <- GET /b`},
			stats: Stats{Desyncs: 1, DroppedRequests: 1},
		},
		{
			name: "mid-stream start resyncs at the first start line",
			steps: cat(seq(eg, "ody of an earlier POST", getA),
				seq(in, "tail of a previous body\r\n", "not a start\r\n", resp200("ok"))),
			want: []string{`ingress HTTP/1.1 "200 OK" cl=2 <- GET /a`},
		},
		{
			name: "truncated header block still frames by a late Content-Length",
			lim:  Limits{MaxHeaderBytes: 64},
			steps: cat(seq(eg, getA+getB),
				split(in, 0, long+resp200("x"), 7, 100, 3)),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=5 truncated <- GET /a`,
				`ingress HTTP/1.1 "200 OK" cl=1 <- GET /b`,
			},
			stats: Stats{Truncated: 1},
			check: func(t *testing.T, r *runner) {
				if h := r.events[0].Headers; len(h) != 0 {
					t.Errorf("truncated block kept headers beyond the limit: %v", h)
				}
				if got, want := r.events[0].HeaderBytes, len(long)-5; got != want {
					t.Errorf("HeaderBytes = %d, want %d", got, want)
				}
			},
		},
		{
			name: "101 switching protocols ends HTTP",
			steps: cat(seq(eg, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
				seq(in, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n"),
				seq(eg, getA), []step{{dir: eg, off: cont, fin: true}, {dir: in, off: 500, fin: true}}),
			want:  []string{`ingress HTTP/1.1 "101 Switching Protocols" cl=-1 <- GET /ws`},
			done:  true,
			stats: Stats{Requests: 1, Responses: 1},
		},
		{
			name: "CONNECT 200 ends HTTP, refused CONNECT does not",
			steps: cat(seq(eg, "CONNECT a:443 HTTP/1.1\r\n\r\n"), seq(in, "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 0\r\n\r\n"),
				seq(eg, "CONNECT b:443 HTTP/1.1\r\n\r\n", "tunnel bytes"),
				seq(in, "HTTP/1.1 200 Connection established\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n")),
			want: []string{
				`ingress HTTP/1.1 "407 Proxy Auth" cl=0 <- CONNECT a:443`,
				`ingress HTTP/1.1 "200 Connection established" cl=-1 <- CONNECT b:443`,
			},
		},
		{
			name: "invalid status lines are not events",
			steps: cat(seq(eg, getA), seq(in, resp200("0")), seq(eg, getA), seq(in, "HTTP/1.1 2x0 OK\r\n\r\n"),
				seq(eg, getB), seq(in, "HTTP/2.0 200 OK\r\n\r\n"),
				seq(eg, "GET /c HTTP/1.1\r\n\r\n"), seq(in, "HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n"),
				seq(eg, "GET /d HTTP/1.1\r\n\r\n"), seq(in, resp200("ok"))),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=1 <- GET /a`,
				`ingress HTTP/1.1 "200 OK" cl=-1 <- GET /c`,
				`ingress HTTP/1.1 "200 OK" cl=2 <- GET /d`,
			},
			stats: Stats{Desyncs: 2, DroppedRequests: 2},
		},
		{
			name:  "request line in the response direction desyncs",
			steps: cat(seq(eg, getA), seq(in, resp200("a"), getB)),
			want:  []string{`ingress HTTP/1.1 "200 OK" cl=1 <- GET /a`},
			stats: Stats{Desyncs: 1},
		},
		{
			name: "bare LF, obs-fold, non-canonical names, empty reason",
			steps: cat(seq(eg, "GET /x HTTP/1.1\nhost: h\nx-forwarded-for: 1\n\n"),
				seq(in, "HTTP/1.1 200\ncontent-type: text/plain\nX-Long: a\n  b\ncontent-length:  1 \nset-cookie: a\nSET-COOKIE: b\nWeird Name: v\n\nz")),
			want: []string{`ingress HTTP/1.1 "200 " cl=1 <- GET /x`},
			check: func(t *testing.T, r *runner) {
				e := r.events[0]
				want := []HeaderField{{"Content-Type", "text/plain"}, {"X-Long", "a b"}, {"Content-Length", "1"},
					{"Set-Cookie", "a"}, {"Set-Cookie", "b"}, {"Weird Name", "v"}}
				if !reflect.DeepEqual(e.Headers, want) {
					t.Errorf("headers = %q, want %q", e.Headers, want)
				}
				if e.Req.Host != "h" || !reflect.DeepEqual(e.Req.Headers, []HeaderField{{"Host", "h"}, {"X-Forwarded-For", "1"}}) {
					t.Errorf("request = %+v", e.Req)
				}
			},
		},
		{
			name: "request bodies: Content-Length and chunked",
			steps: cat(seq(eg, "POST /p HTTP/1.1\r\nContent-Length: 20\r\n\r\nGET /fake HTTP/1.1\r\n",
				"PUT /c HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", getB),
				seq(in, resp200("1"), resp200("2"), resp200("3"))),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=1 <- POST /p`,
				`ingress HTTP/1.1 "200 OK" cl=1 <- PUT /c`,
				`ingress HTTP/1.1 "200 OK" cl=1 <- GET /b`,
			},
			check: func(t *testing.T, r *runner) {
				if r.events[0].Req.ContentLength != 20 || r.events[1].Req.ContentLength != -1 || r.events[2].Req.ContentLength != 0 {
					t.Errorf("request content lengths wrong: %d %d %d", r.events[0].Req.ContentLength, r.events[1].Req.ContentLength, r.events[2].Req.ContentLength)
				}
			},
		},
		{
			name: "chunk data and its CRLF may be uncaptured",
			steps: cat(seq(eg, getA+getB),
				[]step{{dir: in, off: cont, data: chunked + "1000\r\nab", uncaptured: 4096 - 2 + 2}},
				seq(in, "0\r\n\r\n"+resp200("q"))),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=-1 <- GET /a`,
				`ingress HTTP/1.1 "200 OK" cl=1 <- GET /b`,
			},
		},
		{
			name: "pending request queue is bounded",
			lim:  Limits{MaxPendingRequests: 2},
			steps: cat(seq(eg, "GET /1 HTTP/1.1\r\n\r\n", "GET /2 HTTP/1.1\r\n\r\n", "GET /3 HTTP/1.1\r\n\r\n"),
				seq(in, resp200("a"), resp200("b"), resp200("c"))),
			// /1 was dropped: its response has no request, the others keep theirs.
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=1 <- -`,
				`ingress HTTP/1.1 "200 OK" cl=1 <- GET /2`,
				`ingress HTTP/1.1 "200 OK" cl=1 <- GET /3`,
			},
			stats: Stats{DroppedRequests: 1},
		},
		{
			name:  "egress responses of a traced server, then reset",
			steps: cat(seq(in, getA), seq(eg, resp200("x")), []step{{dir: in, off: 1, rst: true}}, seq(eg, resp200("y"))),
			want:  []string{`egress HTTP/1.1 "200 OK" cl=1 <- GET /a`},
			done:  true,
		},
		{
			name: "out-of-order bound gives up the hole inside a body",
			lim:  Limits{MaxOutOfOrderBytes: 300},
			steps: cat(seq(eg, getA+getB),
				seq(in, "HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n"),
				[]step{at(in, 140, strings.Repeat("b", 100)), at(in, 240, strings.Repeat("c", 100))},
				seq(in, resp200("ok"))),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=300 <- GET /a`,
				`ingress HTTP/1.1 "200 OK" cl=2 <- GET /b`,
			},
			stats: Stats{GapBytes: 140 - 40},
		},
		{
			name: "out-of-order bound gives up a hole where headers were expected",
			lim:  Limits{MaxOutOfOrderBytes: 300},
			steps: cat(seq(eg, getA), seq(in, resp200("a")), seq(eg, getB),
				[]step{at(in, 100, strings.Repeat("b", 100)), at(in, 200, strings.Repeat("c", 100))},
				seq(in, resp200("ok"))),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=1 <- GET /a`,
				`ingress HTTP/1.1 "200 OK" cl=2 <- GET /b`,
			},
			stats: Stats{GapBytes: 100 - uint64(len(resp200("a"))), Desyncs: 1},
		},
		{
			name: "FIN and SkipTo on out-of-order segments",
			steps: cat(seq(eg, getA+getB),
				[]step{at(in, 0, cl5000[:10]),
					{dir: in, off: 20, data: cl5000[20:] + "ab", hasSkip: true, skipTo: uint32(len(cl5000)) + 5000},
					{dir: in, off: uint32(len(cl5000)) + 5000 + uint32(len(resp200("z"))), fin: true},
					at(in, len(cl5000)+5000, resp200("z")),
					at(in, 10, cl5000[10:20])}),
			want: []string{
				`ingress HTTP/1.1 "200 OK" cl=5000 <- GET /a`,
				`ingress HTTP/1.1 "200 OK" cl=1 <- GET /b`,
			},
			check: func(t *testing.T, r *runner) {
				if !r.conn.dirs[in].finished || r.conn.dirs[eg].finished {
					t.Error("FIN not applied to the ingress direction alone")
				}
			},
		},
		{
			name: "Host and truncation of a request",
			lim:  Limits{MaxHeaderBytes: 40},
			steps: cat(seq(eg, "GET /r HTTP/1.1\r\nHost: h1\r\nX-Pad: "+strings.Repeat("p", 50)+"\r\nContent-Length: 2\r\n\r\nab"),
				seq(in, resp200("k"))),
			want:  []string{`ingress HTTP/1.1 "200 OK" cl=1 <- GET /r`},
			stats: Stats{Truncated: 1},
			check: func(t *testing.T, r *runner) {
				q := r.events[0].Req
				if !q.Truncated || q.Host != "h1" || len(q.Headers) != 1 || q.ContentLength != 2 {
					t.Errorf("request %+v", q)
				}
			},
		},
		{
			name: "first start line split across segments on a new connection",
			steps: cat(split(eg, 0, "GET /very/long/path HTTP/1.1\r\nHost: x\r\n\r\n", 5, 10, 3),
				split(in, 0, resp200("ok"), 4, 8)),
			want: []string{`ingress HTTP/1.1 "200 OK" cl=2 <- GET /very/long/path`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(tc.lim, tc.isnE, tc.isnI)
			for _, st := range tc.steps {
				r.feed(st)
			}
			if got := r.summaries(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("events:\n got %q\nwant %q", got, tc.want)
			}
			checkStats(t, r.stats, tc.stats)
			if r.stats.Responses != uint64(len(r.events)) {
				t.Errorf("Stats.Responses = %d, events = %d", r.stats.Responses, len(r.events))
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			if r.conn.Done() != tc.done {
				t.Errorf("Done() = %v, want %v", r.conn.Done(), tc.done)
			}
		})
	}
}

// checkStats compares the fields that want sets (non-zero); Desyncs and GapBytes
// are always compared because zero is meaningful for them.
func checkStats(t *testing.T, got, want Stats) {
	t.Helper()
	cmp := func(name string, g, w uint64, always bool) {
		if (w != 0 || always) && g != w {
			t.Errorf("Stats.%s = %d, want %d", name, g, w)
		}
	}
	cmp("Requests", got.Requests, want.Requests, false)
	cmp("Responses", got.Responses, want.Responses, false)
	cmp("Truncated", got.Truncated, want.Truncated, true)
	cmp("DuplicateBytes", got.DuplicateBytes, want.DuplicateBytes, false)
	cmp("Desyncs", got.Desyncs, want.Desyncs, true)
	cmp("GapBytes", got.GapBytes, want.GapBytes, true)
	cmp("DroppedRequests", got.DroppedRequests, want.DroppedRequests, true)
}

func ones(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

func TestLargeHeaderBlockSplitManyWays(t *testing.T) {
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n")
	n := 0
	for b.Len() < DefaultMaxHeaderBytes-60 {
		fmt.Fprintf(&b, "X-Header-%04d: %s\r\n", n, strings.Repeat("v", 40))
		n++
	}
	b.WriteString("\r\n")
	block := b.String()
	if len(block) > DefaultMaxHeaderBytes {
		t.Fatalf("test block is %d bytes, over the limit", len(block))
	}
	sizes := make([]int, 0, 200)
	for i := 0; i < 150; i++ {
		sizes = append(sizes, 1+(i*37)%150)
	}
	r := newRunner(Limits{}, 1, 2)
	r.feed(step{dir: eg, data: getA})
	steps := split(in, 0, block+resp200("x"), sizes...)
	if len(steps) < 100 {
		t.Fatalf("only %d pieces", len(steps))
	}
	for _, st := range steps {
		r.feed(st)
	}
	if len(r.events) != 2 {
		t.Fatalf("got %d events, want 2: %q", len(r.events), r.summaries())
	}
	e := r.events[0]
	if e.Truncated || len(e.Headers) != n+1 || e.HeaderBytes != len(block) {
		t.Fatalf("truncated=%v headers=%d (want %d) headerBytes=%d (want %d)", e.Truncated, len(e.Headers), n+1, e.HeaderBytes, len(block))
	}
	if got := e.header("X-Header-0000"); len(got) != 1 || got[0] != strings.Repeat("v", 40) {
		t.Errorf("X-Header-0000 = %q", got)
	}
	if e.Info.TimestampNs != 2000 {
		t.Errorf("Info from segment %d, want the status line's segment (2000)", e.Info.TimestampNs)
	}
}

func TestInfoAndLatency(t *testing.T) {
	r := newRunner(Limits{}, 10, 20)
	r.feed(step{dir: eg, data: "GET /a HTTP/1.1\r\n"})          // ts 1000
	r.feed(step{dir: eg, off: 17, data: "\r\n"})                // ts 2000
	r.feed(step{dir: in, data: resp200("hello")[:30]})          // ts 3000
	r.feed(step{dir: in, off: 30, data: resp200("hello")[30:]}) // ts 4000
	if len(r.events) != 1 {
		t.Fatalf("events: %q", r.summaries())
	}
	e := r.events[0]
	if e.Info.TimestampNs != 3000 || e.Req.Info.TimestampNs != 1000 || e.Latency != 2000 {
		t.Errorf("info %+v, request info %+v, latency %d", e.Info, e.Req.Info, e.Latency)
	}
	if e.Info.PacketLen != 30+52 || e.Info.Ifindex != 1 {
		t.Errorf("packet info %+v", e.Info)
	}
}

func TestDirectionString(t *testing.T) {
	for d, want := range map[Direction]string{Egress: "egress", Ingress: "ingress", 7: "direction(7)"} {
		if got := d.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", d, got, want)
		}
	}
}

func TestValidHeaderByte(t *testing.T) {
	const tchar = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for c := 0; c < 256; c++ {
		if got, want := validHeaderByte(byte(c)), strings.IndexByte(tchar, byte(c)) >= 0; got != want {
			t.Errorf("validHeaderByte(%#x) = %v, want %v", c, got, want)
		}
	}
}

func TestCanonicalName(t *testing.T) {
	for _, in := range []string{"content-type", "CONTENT-LENGTH", "x-my-header", "Host", "a", "-x", "with space", "X_Under_score", "Ünicode"} {
		b := []byte(in)
		got := canonicalName(b, aliasString(b))
		if want := canonicalMIME(in); got != want {
			t.Errorf("canonicalName(%q) = %q, want %q", in, got, want)
		}
		if string(b) != got && got != in {
			// A rewritten name is rewritten in place (or interned): b holds it too.
			t.Errorf("canonicalName(%q) left the bytes as %q", in, b)
		}
	}
}

func TestParseChunkSize(t *testing.T) {
	tests := []struct {
		in   string
		size uint64
		ok   bool
	}{
		{"0", 0, true}, {"1a", 26, true}, {"FF;ext=1\r", 255, true}, {"10 ;x", 16, true},
		{"", 0, false}, {"g", 0, false}, {"1 2", 0, false}, {"fffffffffffffffff", 0, false}, {"0000000000000000001", 1, true},
	}
	for _, tc := range tests {
		size, ok := parseChunkSize([]byte(tc.in))
		if size != tc.size || ok != tc.ok {
			t.Errorf("parseChunkSize(%q) = %d,%v want %d,%v", tc.in, size, ok, tc.size, tc.ok)
		}
	}
}

func TestStartLines(t *testing.T) {
	tests := []struct {
		in     string
		full   bool // startLineAt
		prefix bool // startLinePrefixAt
	}{
		{"HTTP/1.1 200 OK\r\n", true, true},
		{"HTTP/1.0 404\r\n", true, true},
		{"HTTP/1.1 200 OK", false, true},
		{"HTTP/1.1 2", false, true},
		{"HTTP/1.2 200 OK\r\n", false, false},
		{"HTTP/1.1 600 X\r\n", false, false},
		{"HTTP/1.1 20 OK\r\n", false, false},
		{"HTTP/1.1 200OK\r\n", false, false},
		{"GET / HTTP/1.1\r\n", true, true},
		{"GE", false, true},
		{"GET /x HTTP/1.", false, true},
		{"GET /x HTTP/1.1x", false, false},
		{"GOT / HTTP/1.1\r\n", true, true}, // any token is a method, as in the kernel
		{"PROPFIND /x HTTP/1.1\r\n", true, true},
		{"M-SEARCH * HTTP/1.1\r\n", true, true},
		{"G(T / HTTP/1.1\r\n", false, false},
		{"GET  / HTTP/1.1\r\n", false, false},
		{"GET / HTTP/2\r\n", false, false},
		{"get / HTTP/1.1\r\n", true, true},
		{"\r\nHTTP/1.1 200 OK\r\n", false, false},
	}
	for _, tc := range tests {
		if got := startLineAt([]byte(tc.in), kindNone); got != tc.full {
			t.Errorf("startLineAt(%q) = %v", tc.in, got)
		}
		if got := startLinePrefixAt([]byte(tc.in), kindNone); got != tc.prefix {
			t.Errorf("startLinePrefixAt(%q) = %v", tc.in, got)
		}
	}
	if startLineAt([]byte("GET / HTTP/1.1\r\n"), kindResponse) || startLineAt([]byte("HTTP/1.1 200 OK\r\n"), kindRequest) {
		t.Error("start line of the wrong role accepted")
	}
}

func TestCloseReleases(t *testing.T) {
	r := newRunner(Limits{}, 0, 0)
	r.feed(step{dir: eg, data: getA})
	r.feed(step{dir: in, off: 100, data: "out of order"})
	r.conn.Close()
	if !r.conn.Done() || r.conn.dirs[1].ooo != nil || r.conn.pending != nil {
		t.Fatal("Close did not release state")
	}
	r.feed(step{dir: in, data: resp200("x")})
	if len(r.events) != 0 {
		t.Fatalf("events after Close: %q", r.summaries())
	}
}

func TestHeaderLimitBoundary(t *testing.T) {
	block := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: b\r\n\r\n"
	for _, tc := range []struct {
		limit     int
		truncated bool
		headers   int
	}{
		{len(block), false, 2},
		{len(block) - 1, true, 2},
		{len(block) - 3, true, 1},
	} {
		r := newRunner(Limits{MaxHeaderBytes: tc.limit}, 0, 0)
		for _, st := range split(in, 0, block+block, 5, 5, 5) {
			r.feed(st)
		}
		if len(r.events) != 2 {
			t.Fatalf("limit %d: events %q", tc.limit, r.summaries())
		}
		for _, e := range r.events {
			if e.Truncated != tc.truncated || len(e.Headers) != tc.headers || e.HeaderBytes != len(block) {
				t.Errorf("limit %d: truncated=%v headers=%d bytes=%d", tc.limit, e.Truncated, len(e.Headers), e.HeaderBytes)
			}
		}
	}
}
