package tracer

import (
	"bytes"
	"encoding/binary"
	"io"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
)

// h2Exchange builds the records of `make bench`'s h2c row: h2load (one
// connection, h2Streams requests in flight) against the bench's nginx
// (`listen ... http2`, prior knowledge). Each round is one client record
// with h2Streams HEADERS frames and two server records with the HEADERS
// and DATA frames of half of the streams each, as nginx writes them.
type h2Exchange struct {
	reqBlock, respBlock []byte // steady-state header blocks
	body                []byte
	in, out             bpf.Record
	cbuf, sbuf          []byte
	next                uint32 // the next stream id
	// firstBlocks are the first round's first request and response
	// blocks; the first request fills the client's table.
	firstBlocks [2][]byte
}

// h2BenchStreams is h2load's -m in the bench.
const h2BenchStreams = 10

// appendFrame appends one frame (RFC 9113 4.1).
func appendFrame(dst []byte, typ http2.FrameType, flags http2.Flags, id uint32, payload []byte) []byte {
	n := len(payload)
	dst = append(dst, byte(n>>16), byte(n>>8), byte(n), byte(typ), byte(flags))
	dst = binary.BigEndian.AppendUint32(dst, id)
	return append(dst, payload...)
}

// appendIncIndexed appends a literal with incremental indexing whose name
// is static entry idx (< 63) and whose value is Huffman-coded: how nginx
// writes server, date, content-type; content-length's value is raw.
func appendIncIndexed(dst []byte, idx byte, value string, huff bool) []byte {
	dst = append(dst, 0x40|idx)
	if !huff {
		return append(append(dst, byte(len(value))), value...)
	}
	n := hpack.HuffmanEncodeLength(value)
	return hpack.AppendHuffmanString(append(dst, 0x80|byte(n)), value)
}

// nginxResponseBlock is the header block nginx 1.22 writes for `return
// 200` with default_type text/plain: :status 200 indexed, then literals
// with incremental indexing (nginx never refers to them; h2load sends no
// SETTINGS_HEADER_TABLE_SIZE, so nginx sizes no table to 0 either): every
// response inserts four entries into the 4 KiB table, evicting older ones.
func nginxResponseBlock(bodyLen int) []byte {
	b := []byte{0x88} // :status 200
	b = appendIncIndexed(b, 54, "nginx/1.22.1", true)
	b = appendIncIndexed(b, 33, "Mon, 30 Nov 2026 11:30:00 GMT", true)
	b = appendIncIndexed(b, 31, "text/plain", true)
	return appendIncIndexed(b, 28, strconv.Itoa(bodyLen), false)
}

func newH2Exchange(tb testing.TB) *h2Exchange {
	x := &h2Exchange{body: []byte("hello from boxtap bench\n"), next: 1}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	request := func() []byte {
		hb.Reset()
		for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":path", Value: "/"},
			{Name: ":scheme", Value: "http"}, {Name: ":authority", Value: "127.0.0.1:8080"},
			{Name: "user-agent", Value: "h2load nghttp2/1.52.0"}} {
			if err := enc.WriteField(f); err != nil {
				tb.Fatal(err)
			}
		}
		return bytes.Clone(hb.Bytes())
	}
	firstReq := request()
	x.reqBlock = request() // every field indexed from now on
	x.respBlock = nginxResponseBlock(len(x.body))

	// The connection's start: h2load's preface, SETTINGS and WINDOW_UPDATE;
	// nginx's SETTINGS, WINDOW_UPDATE and SETTINGS ACK.
	var settings []byte
	for _, s := range []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 100}, {ID: http2.SettingInitialWindowSize, Val: 1<<30 - 1}} {
		settings = binary.BigEndian.AppendUint16(settings, uint16(s.ID))
		settings = binary.BigEndian.AppendUint32(settings, s.Val)
	}
	cli := append([]byte(http2.ClientPreface), appendFrame(nil, http2.FrameSettings, 0, 0, settings)...)
	cli = appendFrame(cli, http2.FrameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, 1<<30))
	srv := appendFrame(nil, http2.FrameSettings, 0, 0, settings)
	srv = appendFrame(srv, http2.FrameWindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, 1<<30))
	srv = appendFrame(srv, http2.FrameSettings, http2.FlagSettingsAck, 0, nil)
	x.in = benchRecord(bpf.DirIngress, 1000, nil)
	x.out = benchRecord(bpf.DirEgress, 5000, nil)
	x.out.Rflags |= bpf.FlagOwner
	x.out.Owner = benchOwner()
	x.cbuf = cli
	x.sbuf = srv
	x.firstBlocks = [2][]byte{firstReq, x.respBlock}
	return x
}

// setPayload makes data the payload of r.
func setPayload(r *bpf.Record, data []byte) {
	r.Data = data
	r.SegLen, r.DataLen, r.PktLen = uint32(len(data)), uint16(len(data)), uint32(len(data)+52)
}

// round sends the records of h2BenchStreams requests and their responses.
func (x *h2Exchange) round(tr *Tracer) {
	req, resp := x.reqBlock, x.respBlock
	if x.firstBlocks[0] != nil {
		req, resp = x.firstBlocks[0], x.firstBlocks[1]
	}
	first := x.next
	for i := uint32(0); i < h2BenchStreams; i++ {
		blk := req
		if i > 0 {
			blk = x.reqBlock
		}
		x.cbuf = appendFrame(x.cbuf, http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, first+2*i, blk)
	}
	x.send(tr, &x.in, x.cbuf)
	x.cbuf = x.cbuf[:0]
	for half := uint32(0); half < 2; half++ {
		for i := half * h2BenchStreams / 2; i < (half+1)*h2BenchStreams/2; i++ {
			blk := resp
			if i > 0 {
				blk = x.respBlock
			}
			x.sbuf = appendFrame(x.sbuf, http2.FrameHeaders, http2.FlagHeadersEndHeaders, first+2*i, blk)
			x.sbuf = appendFrame(x.sbuf, http2.FrameData, http2.FlagDataEndStream, first+2*i, x.body)
		}
		x.send(tr, &x.out, x.sbuf)
		x.sbuf = x.sbuf[:0]
		x.out.Rflags &^= bpf.FlagOwner
		x.out.Owner = nil
	}
	x.next += 2 * h2BenchStreams
	x.firstBlocks = [2][]byte{}
}

func (x *h2Exchange) send(tr *Tracer, r *bpf.Record, data []byte) {
	r.TsTai += 1000
	setPayload(r, data)
	tr.handle(r)
	r.Seq += uint32(len(data))
}

// BenchmarkHandleH2cResponses is BenchmarkHandleSmallResponses over h2c:
// the same nginx response (status, headers, body) as the h2c row of `make
// bench` sends it, h2BenchStreams streams interleaved per round, through
// handle and emit (JSON encoding into a LineSink writing to io.Discard).
// One op is one exchange (request and response of one stream), so ns/op,
// B/op and allocs/op compare with BenchmarkHandleSmallResponses's.
func BenchmarkHandleH2cResponses(b *testing.B) {
	tr := New(nil, Options{OnError: func(err error) { b.Fatalf("tracer error: %v", err) }})
	tg := &Target{
		Info: container.Info{ID: strings.Repeat("d2", 32), Name: "nginx", Image: "boxtap-bench-nginx:1", Runtime: "docker", Hostname: "vm"},
		sink: output.NewLineSink(io.Discard, nil),
	}
	tr.targets[7] = tg
	x := newH2Exchange(b)
	x.send(tr, &x.in, x.cbuf)
	x.send(tr, &x.out, x.sbuf)
	x.cbuf, x.sbuf = x.cbuf[:0], x.sbuf[:0]
	x.round(tr) // the first blocks, which set up both HPACK tables
	warm := tg.Events()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for n < b.N {
		x.round(tr)
		n += h2BenchStreams
	}
	b.StopTimer()
	if got := tg.Events() - warm; got != uint64(n) {
		b.Fatalf("%d events for %d exchanges", got, n)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}
