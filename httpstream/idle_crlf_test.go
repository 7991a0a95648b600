package httpstream

import (
	"slices"
	"testing"
)

// TestEmptyLinesBetweenMessagesAreIgnored: RFC 9112 2.2 lets a recipient ignore empty
// lines before a request line (clients send a CRLF after a POST body); the responses
// still pair with their requests, nothing desyncs. Segment starts and middles both.
func TestEmptyLinesBetweenMessagesAreIgnored(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"CRLF alone in its own segment", cat(seq(eg, getA), seq(in, resp200("1")), seq(eg, "\r\n", getB), seq(in, resp200("22")))},
		{"CRLFs before the next request in one segment", cat(seq(eg, getA), seq(in, resp200("1")), seq(eg, "\r\n\r\n\n"+getB), seq(in, resp200("22")))},
		{"CRLF after a response before the next one", cat(seq(eg, getA+getB), seq(in, resp200("1")+"\r\n"+resp200("22")))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(Limits{}, 1000, 9000)
			for _, s := range tc.steps {
				r.feed(s)
			}
			want := []string{`ingress HTTP/1.1 "200 OK" cl=1 <- GET /a`, `ingress HTTP/1.1 "200 OK" cl=2 <- GET /b`}
			if got := r.summaries(); !slices.Equal(got, want) {
				t.Fatalf("events\n got %q\nwant %q", got, want)
			}
			checkStats(t, r.stats, Stats{Requests: 2, Responses: 2})
		})
	}
}
