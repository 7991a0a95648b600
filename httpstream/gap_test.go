package httpstream

import (
	"strings"
	"testing"
)

// TestGapGivesUpHoleAtOnce: when the kernel reports that records were lost
// before a segment, the hole is given up immediately and framing resumes at
// the next response boundary, instead of waiting for bytes that never come.
func TestGapGivesUpHoleAtOnce(t *testing.T) {
	var stats Stats
	c := NewConn(Limits{}, &stats)
	var got []string
	emit := func(r *Response) { got = append(got, strings.Clone(r.Status)) } // Status is only valid during emit
	const reqISN, respISN = 1000, 5000
	req := "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n"
	c.Feed(&Segment{Dir: Ingress, Seq: reqISN, Len: uint32(len(req)), Data: []byte(req)}, emit)
	r1 := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	r2 := "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok" // lost in the kernel
	r3 := "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"
	c.Feed(&Segment{Dir: Egress, Seq: respISN, Len: uint32(len(r1)), Data: []byte(r1)}, emit)
	seq3 := uint32(respISN + len(r1) + len(r2))
	c.Feed(&Segment{Dir: Egress, Seq: seq3, Len: uint32(len(r3)), Data: []byte(r3), Gap: true}, emit)
	if len(got) != 2 || got[0] != "200 OK" || got[1] != "202 Accepted" {
		t.Fatalf("events = %q, want [200 OK 202 Accepted]", got)
	}
	if stats.GapBytes != uint64(len(r2)) {
		t.Errorf("GapBytes = %d, want %d", stats.GapBytes, len(r2))
	}

	// Without Gap the same segment waits in the out-of-order buffer.
	var stats2 Stats
	c2 := NewConn(Limits{}, &stats2)
	got = nil
	c2.Feed(&Segment{Dir: Ingress, Seq: reqISN, Len: uint32(len(req)), Data: []byte(req)}, emit)
	c2.Feed(&Segment{Dir: Egress, Seq: respISN, Len: uint32(len(r1)), Data: []byte(r1)}, emit)
	c2.Feed(&Segment{Dir: Egress, Seq: seq3, Len: uint32(len(r3)), Data: []byte(r3)}, emit)
	if len(got) != 1 {
		t.Fatalf("without Gap: events = %q, want only the first", got)
	}
}
