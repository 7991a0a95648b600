package httpstream

import (
	"slices"
	"testing"
)

// The first request of a connection is framed whatever shape its first bytes
// take on the wire, as long as they follow the grammar the kernel accepts
// too (bpf/include/classify.h): empty lines first, a start line cut into
// small writes, any token as the method.
func TestFirstRequestShapes(t *testing.T) {
	propfind := "PROPFIND /dav HTTP/1.1\r\nHost: example.com\r\nDepth: 1\r\n\r\n"
	tests := []struct {
		name string
		req  []step
		want string
	}{
		{"leading CRLF", seq(eg, "\r\n"+getA), `ingress HTTP/1.1 "200 OK" cl=2 <- GET /a`},
		{"leading CRLFs in their own segment", seq(eg, "\r\n\r\n", getA), `ingress HTTP/1.1 "200 OK" cl=2 <- GET /a`},
		{"leading bare LF", seq(eg, "\n"+getA), `ingress HTTP/1.1 "200 OK" cl=2 <- GET /a`},
		{"3-byte first segment", split(eg, 0, getA, 3), `ingress HTTP/1.1 "200 OK" cl=2 <- GET /a`},
		{"1-byte segments", split(eg, 0, getA, ones(len(getA))...), `ingress HTTP/1.1 "200 OK" cl=2 <- GET /a`},
		{"CRLF then a 3-byte segment", cat(seq(eg, "\r\n"), split(eg, 2, getA, 3)), `ingress HTTP/1.1 "200 OK" cl=2 <- GET /a`},
		{"WebDAV PROPFIND", seq(eg, propfind), `ingress HTTP/1.1 "200 OK" cl=2 <- PROPFIND /dav`},
		{"method outside any list", seq(eg, "X-MY_VERB.2 /v HTTP/1.1\r\n\r\n"), `ingress HTTP/1.1 "200 OK" cl=2 <- X-MY_VERB.2 /v`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(Limits{}, 1000, 5000)
			for _, st := range cat(tc.req, seq(in, resp200("ok"))) {
				r.feed(st)
			}
			if got := r.summaries(); !slices.Equal(got, []string{tc.want}) {
				t.Fatalf("events %q, want %q", got, tc.want)
			}
			if r.stats.Desyncs != 0 {
				t.Fatalf("%d desyncs, want none", r.stats.Desyncs)
			}
		})
	}
}

// A stream that does not follow the grammar at its start is not framed.
func TestFirstBytesOutsideGrammar(t *testing.T) {
	for _, first := range []string{"G(T / HTTP/1.1\r\n\r\n", " GET / HTTP/1.1\r\n\r\n", "\x16\x03\x01\x02\x00"} {
		r := newRunner(Limits{}, 1000, 5000)
		for _, st := range cat(seq(eg, first), seq(in, "\x16\x03\x03 not http")) {
			r.feed(st)
		}
		if len(r.events) != 0 {
			t.Errorf("%q: events %q, want none", first, r.summaries())
		}
	}
}

func TestIsToken(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"GET", true}, {"M-SEARCH", true}, {"!#$%&'*+-.^_`|~09azAZ", true},
		{"", false}, {"GE T", false}, {"G(T", false}, {"GÉT", false}, {"G\x00", false}, {"G/", false},
	} {
		if got := isToken([]byte(tc.in)); got != tc.want {
			t.Errorf("isToken(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
