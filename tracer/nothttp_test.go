package tracer

import (
	"bytes"
	"testing"

	"github.com/boxtap/boxtap/bpf"
)

// The kernel sends the first bytes of a connection before it can tell
// whether it is HTTP ("GE" may become "GET "). When it then finds it is not,
// it sends a FlagNotHTTP record: the tracer forgets what it kept, so a later
// connection with the same socket cookie starts clean.
func TestNotHTTPRecordForgetsSpeculativeBytes(t *testing.T) {
	var buf bytes.Buffer
	tr, _ := newTestTracer(t, &buf)
	tr.handle(record(recSpec{dir: bpf.DirIngress, seq: 1000, data: "GE"}))
	if len(tr.conns) != 1 {
		t.Fatalf("%d connections after the speculative bytes, want 1", len(tr.conns))
	}
	marker := record(recSpec{dir: bpf.DirIngress, seq: 1002})
	marker.Rflags |= bpf.FlagNotHTTP
	tr.handle(marker)
	if len(tr.conns) != 0 {
		t.Fatalf("%d connections after the not-HTTP record, want 0", len(tr.conns))
	}
	// The cookie is reused by a new connection with other sequence numbers.
	tr.handle(record(recSpec{dir: bpf.DirIngress, seq: 7000, data: "GET /new HTTP/1.1\r\nHost: x\r\n\r\n"}))
	tr.handle(record(recSpec{dir: bpf.DirEgress, seq: 9000, data: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", owner: true}))
	tr.flush()
	evs := decodeLines(t, &buf)
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	if q := argValue(t, evs[0], "http_request").(map[string]any); q["uri_path"] != "/new" || q["method"] != "GET" {
		t.Errorf("http_request = %v, want GET /new", q)
	}
}
