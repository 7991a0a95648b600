package h2stream

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/boxtap/boxtap/httpstream"
)

// BenchmarkGRPCCalls parses unary gRPC calls (request, response, trailers)
// on one connection; one op is one call.
func BenchmarkGRPCCalls(b *testing.B) {
	w, starts := grpcCalls(b, 1000, -1)
	body := w.chunks[starts[0]:]
	p := New(nil)
	for _, c := range w.chunks[:starts[0]] {
		p.Consume(c.dir, c.data, httpstream.PacketInfo{}, nil)
	}
	var bytes int64
	for _, c := range body {
		bytes += int64(len(c.data))
	}
	n := 0
	emit := func(*httpstream.Response) { n++ }
	b.SetBytes(bytes / int64(len(starts)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		// The same calls again on the same connection: every stream of a
		// round ends within it; the values decoded may differ from the
		// first round's (the HPACK table moved on), the work does not.
		for _, c := range body {
			p.Consume(c.dir, c.data, httpstream.PacketInfo{}, emit)
		}
		i += len(starts)
	}
	if n == 0 {
		b.Fatal("no events")
	}
}

// nginxBlock is the header block nginx 1.22 writes for `return 200` with
// default_type text/plain: :status 200 indexed, then literals with
// incremental indexing (static names, Huffman values but content-length's)
// that it never refers to: every response decodes them and inserts them
// into the 4 KiB table, evicting older ones. (nginx sizes the table to 0
// only when the client sends SETTINGS_HEADER_TABLE_SIZE; h2load does not.)
func nginxBlock() []byte {
	b := []byte{0x88} // :status 200
	for _, f := range []struct {
		idx   byte
		value string
	}{{54, "nginx/1.22.1"}, {33, "Mon, 30 Nov 2026 11:30:00 GMT"}, {31, "text/plain"}} {
		b = append(b, 0x40|f.idx, 0x80|byte(hpack.HuffmanEncodeLength(f.value)))
		b = hpack.AppendHuffmanString(b, f.value)
	}
	return append(b, 0x40|28, 2, '2', '4') // content-length: 24, raw
}

// BenchmarkNginxStreams parses what h2load -m10 and nginx exchange in the
// h2c row of `make bench`: per round, one client write of 10 HEADERS and
// two server writes of 5 streams' HEADERS and DATA each. One op is one
// stream (request and response).
func BenchmarkNginxStreams(b *testing.B) {
	const streams = 10
	w := newWire(b)
	resp := nginxBlock()
	round := func(first uint32, req func(id uint32)) {
		for i := range uint32(streams) {
			req(first + 2*i)
		}
		for half := range 2 {
			for i := half * streams / 2; i < (half+1)*streams/2; i++ {
				id := first + 2*uint32(i)
				w.must(w.srv.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: resp, EndHeaders: true}))
				w.must(w.srv.fr.WriteData(id, true, []byte("hello from boxtap bench\n")))
			}
			w.flush(w.srv)
		}
	}
	get := func(id uint32) {
		w.must(w.cli.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
			BlockFragment: w.block(w.cli, ":method", "GET", ":path", "/", ":scheme", "http",
				":authority", "127.0.0.1:8080", "user-agent", "h2load nghttp2/1.52.0")}))
	}
	round(1, func(id uint32) { get(id); w.flush(w.cli) })
	setup := len(w.chunks)
	// Later rounds: the client's fields are all in its table; one write of
	// all requests. Stream ids are patched per round.
	round(1+2*streams, get)
	w.flush(w.cli)
	body := w.chunks[setup:]
	body = append(body[len(body)-1:], body[:len(body)-1]...) // the client's write first
	p := New(nil)
	for _, c := range w.chunks[:setup] {
		p.Consume(c.dir, c.data, httpstream.PacketInfo{}, nil)
	}
	n := 0
	emit := func(*httpstream.Response) { n++ }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += streams {
		for _, c := range body {
			p.Consume(c.dir, c.data, httpstream.PacketInfo{}, emit)
		}
		for _, c := range body {
			shiftStreams(c.data, 2*streams)
		}
	}
	b.StopTimer()
	if n == 0 || p.stats.Desyncs != 0 {
		b.Fatalf("%d events, %d desyncs", n, p.stats.Desyncs)
	}
}

// shiftStreams adds delta to the stream id of every frame in b.
func shiftStreams(b []byte, delta uint32) {
	for len(b) >= 9 {
		n := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		binary.BigEndian.PutUint32(b[5:9], binary.BigEndian.Uint32(b[5:9])+delta)
		b = b[9+n:]
	}
}
