//go:build 386 || amd64

package tracer

import (
	"strings"
	"testing"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
)

// tlsRec builds a TLS record of connection ssl as the kernel sends it.
func tlsRec(cg, ssl uint64, dir uint8, seq uint32, flags uint8, data string) *bpf.TLSRecord {
	h := &bpf.TLSRecordHeader{Conn: ssl, CgroupId: cg, Tgid: 42, Tid: 42, Seq: seq, Len: uint32(len(data)),
		DataLen: uint32(len(data)), CallLen: uint32(len(data)) + 1000, Dir: dir, Flags: flags | bpf.TLSFlagSock,
		Family: 4, Local: [16]uint8{10, 0, 0, 1}, Remote: [16]uint8{10, 0, 0, 2}, Lport: 443, Rport: 50000}
	copy(h.Comm[:], []int8{'n', 'g', 'i', 'n', 'x'})
	return &bpf.TLSRecord{TLSRecordHeader: h, Data: []byte(data)}
}

// TestTLSRecordsFeedTheConnectionPipeline feeds crafted TLS records (no
// kernel) through the tracer: a request and a response split across
// records make one egress event with tls=true, the socket's ports, the
// calling process and packet_len from the SSL call; records of an untraced
// cgroup make none; after SSL_free the same SSL* starts a new stream.
func TestTLSRecordsFeedTheConnectionPipeline(t *testing.T) {
	sink := &recordingSink{}
	tr := New(nil, Options{})
	tr.targets[7] = &Target{Info: container.Info{ID: "c1", Name: "web"}, sink: sink}
	const req = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	const resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	feed := func(cg, ssl uint64, base uint32) {
		tr.handleTLS(tlsRec(cg, ssl, 1, base, 0, req))
		tr.handleTLS(tlsRec(cg, ssl, 0, base, 0, resp[:10]))
		tr.handleTLS(tlsRec(cg, ssl, 0, base+10, 0, resp[10:]))
	}
	feed(7, 0x1000, 0)
	feed(8, 0x2000, 0) // untraced cgroup
	tr.handleTLS(tlsRec(7, 0x1000, 0, 0, bpf.TLSFlagClose, ""))
	feed(7, 0x1000, 0) // a new TLS connection at the same address
	if len(sink.events) != 2 {
		t.Fatalf("%d events, want 2", len(sink.events))
	}
	for i, e := range sink.events {
		if !e.tls || e.status != 200 || e.uri != "/a" || e.dir != output.DirectionEgress ||
			e.sport != 443 || e.dport != 50000 || e.comm != "nginx" || e.pktLen != uint32(10+1000) {
			t.Errorf("event %d: %+v", i, e)
		}
	}
}

type recordedTLS struct {
	tls          bool
	status       int
	uri          string
	dir          output.Direction
	sport, dport uint16
	comm         string
	pktLen       uint32
}

type recordingSink struct{ events []recordedTLS }

func (s *recordingSink) Write(e *output.Event) error {
	r := recordedTLS{tls: e.TLS, status: e.Response.StatusCode, dir: e.Direction, sport: e.Meta.SrcPort,
		dport: e.Meta.DstPort, comm: e.ProcessName, pktLen: e.Meta.PacketLen}
	if e.Request != nil {
		r.uri = strings.Clone(e.Request.URIPath)
	}
	s.events = append(s.events, r)
	return nil
}
func (s *recordingSink) Flush() error { return nil }
func (s *recordingSink) Close() error { return nil }
