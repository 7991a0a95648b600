//go:build 386 || amd64

package tracer

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

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

// TestTLSRecordsOfHTTP2GoToTheHTTP2Parser feeds the plaintext of an h2 (ALPN)
// connection: the client preface and requests on streams 1 and 3, the
// server's SETTINGS, a whole response on stream 3 and a response head on
// stream 1 whose body never ends. Stream 3 gives its event at END_STREAM;
// stream 1 when SSL_free ends the connection.
func TestTLSRecordsOfHTTP2GoToTheHTTP2Parser(t *testing.T) {
	sink := &recordingSink{}
	tr := New(nil, Options{})
	tr.targets[7] = &Target{Info: container.Info{ID: "c1", Name: "web"}, sink: sink}
	var cli, srv bytes.Buffer
	cli.WriteString(http2.ClientPreface)
	cf, sf := http2.NewFramer(&cli, nil), http2.NewFramer(&srv, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	block := func(kv ...string) []byte {
		hb.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			if err := enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}); err != nil {
				t.Fatal(err)
			}
		}
		return bytes.Clone(hb.Bytes())
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cf.WriteSettings())
	for _, r := range []struct {
		id   uint32
		path string
	}{{1, "/slow"}, {3, "/fast"}} {
		must(cf.WriteHeaders(http2.HeadersFrameParam{StreamID: r.id, EndStream: true, EndHeaders: true,
			BlockFragment: block(":method", "GET", ":scheme", "https", ":path", r.path, ":authority", "x")}))
	}
	must(sf.WriteSettings())
	must(sf.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, BlockFragment: block(":status", "404", "content-length", "2")}))
	must(sf.WriteData(3, true, []byte("no")))
	must(sf.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: block(":status", "200")}))
	must(sf.WriteData(1, false, []byte("partial body")))
	c, s := cli.String(), srv.String()
	tr.handleTLS(tlsRec(7, 0x1000, 0, 0, 0, s[:20])) // the server's SETTINGS first
	tr.handleTLS(tlsRec(7, 0x1000, 1, 0, 0, c))
	tr.handleTLS(tlsRec(7, 0x1000, 0, 20, 0, s[20:]))
	if len(sink.events) != 1 || sink.events[0].status != 404 || sink.events[0].uri != "/fast" {
		t.Fatalf("before SSL_free: %+v, want the 404 of /fast", sink.events)
	}
	tr.handleTLS(tlsRec(7, 0x1000, 0, 0, bpf.TLSFlagClose, ""))
	if len(sink.events) != 2 || sink.events[1].status != 200 || sink.events[1].uri != "/slow" {
		t.Fatalf("after SSL_free: %+v, want the 200 of /slow too", sink.events)
	}
	for i, e := range sink.events {
		if !e.tls || e.dir != output.DirectionEgress || e.sport != 443 || e.dport != 50000 || e.comm != "nginx" {
			t.Errorf("event %d: %+v", i, e)
		}
	}
}
