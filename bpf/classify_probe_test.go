package bpf

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/httpstream"
	"github.com/boxtap/boxtap/internal/itest"
	"github.com/cilium/ebpf"
	"golang.org/x/net/http2"
)

// Verdicts of the kernel's classifier (enum cls_verdict in include/classify.h).
const (
	clsPending = 0
	clsYes     = 1
	clsNo      = 2
)

// classifyProbe runs the kernel's classifier through BPF_PROG_TEST_RUN
// (classify_probe.c, generated into testdata).
type classifyProbe struct {
	prog  *ebpf.Program
	h2    *ebpf.Program // the HTTP/2 check of a connection joined midway
	state *ebpf.Map
}

func loadClassifyProbe(t *testing.T) *classifyProbe {
	t.Helper()
	itest.RequireBPF(t)
	spec, err := ebpf.LoadCollectionSpec("testdata/classify_probe.o")
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatalf("loading the classifier probe: %v", err)
	}
	t.Cleanup(coll.Close)
	return &classifyProbe{prog: coll.Programs["classify_probe"], h2: coll.Programs["classify_h2_probe"], state: coll.Maps["state"]}
}

// verdict feeds segments, in order, to a fresh classifier and returns its
// verdict after each.
func (p *classifyProbe) verdicts(t *testing.T, segments ...string) []uint32 {
	t.Helper()
	if err := p.state.Put(uint32(0), make([]byte, p.state.ValueSize())); err != nil {
		t.Fatal(err)
	}
	var out []uint32
	for _, seg := range segments {
		frame := append(make([]byte, 14), seg...) // an Ethernet header, then the payload
		ret, err := p.prog.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatalf("test run: %v", err)
		}
		out = append(out, ret)
	}
	return out
}

// The kernel classifies a stream by the grammar user space frames with
// (httpstream/startline.go): empty lines, then any RFC 9110 token as the
// method, SP, a target, SP, "HTTP/1."; or "HTTP/1." for a response. It
// decides "not HTTP" only on a byte that proves it, across segments, and
// calls a valid start of 64 bytes HTTP.
func TestKernelClassifierGrammar(t *testing.T) {
	p := loadClassifyProbe(t)
	long := strings.Repeat("A", 70)
	for _, tc := range []struct {
		name     string
		segments []string
		want     []uint32
	}{
		{"GET", []string{"GET / HTTP/1.1\r\n\r\n"}, []uint32{clsYes}},
		{"response", []string{"HTTP/1.1 200 OK\r\n\r\n"}, []uint32{clsYes}},
		{"HTTP/1.0 response", []string{"HTTP/1.0 404\r\n"}, []uint32{clsYes}},
		{"leading CRLF", []string{"\r\nGET / HTTP/1.1\r\n"}, []uint32{clsYes}},
		{"leading CRLFs and LFs", []string{"\r\n\n\r\nPOST /x HTTP/1.0\r\n"}, []uint32{clsYes}},
		{"3-byte first segment", []string{"GET", " /a HTTP/1.1\r\n"}, []uint32{clsPending, clsYes}},
		{"1-byte segments", []string{"G", "E", "T", " ", "/", " ", "H", "T", "T", "P", "/", "1", "."},
			[]uint32{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, clsYes}},
		{"CRLF alone, then the request", []string{"\r\n", "GET / HTTP/1.1\r\n"}, []uint32{clsPending, clsYes}},
		{"PROPFIND", []string{"PROPFIND /dav HTTP/1.1\r\n"}, []uint32{clsYes}},
		{"MKCOL", []string{"MKCOL /new HTTP/1.1\r\n"}, []uint32{clsYes}},
		{"REPORT", []string{"REPORT /cal HTTP/1.1\r\n"}, []uint32{clsYes}},
		{"OPTIONS *", []string{"OPTIONS * HTTP/1.1\r\n"}, []uint32{clsYes}},
		{"CONNECT", []string{"CONNECT host:443 HTTP/1.1\r\n"}, []uint32{clsYes}},
		{"token characters", []string{"M-SEARCH.x_y!#$%&'*+^`|~9 * HTTP/1.1\r\n"}, []uint32{clsYes}},
		{"OPTIONS without a space is a longer token", []string{"OPTIONSX / HTTP/1.1\r\n"}, []uint32{clsYes}},
		{"TLS", []string{"\x16\x03\x01\x02\x00\x01"}, []uint32{clsNo}},
		{"lower-case http/ is a token, then '/'", []string{"http/1.1 200 OK\r\n"}, []uint32{clsNo}},
		{"space first", []string{" GET / HTTP/1.1\r\n"}, []uint32{clsNo}},
		{"non-token byte in the method", []string{"G(T / HTTP/1.1\r\n"}, []uint32{clsNo}},
		{"two spaces", []string{"GET  / HTTP/1.1\r\n"}, []uint32{clsNo}},
		{"no version", []string{"220 smtp ready\r\n"}, []uint32{clsNo}},
		{"HTTP/2 client preface", []string{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"}, []uint32{clsYes}},
		{"HTTP/3. is not a version", []string{"GET / HTTP/3.0\r\n"}, []uint32{clsNo}},
		{"HTTP/2 SETTINGS first (server preface)", []string{"\x00\x00\x12\x04\x00\x00\x00\x00\x00"}, []uint32{clsYes}},
		{"empty SETTINGS split over segments", []string{"\x00\x00", "\x00\x04\x00\x00\x00", "\x00\x00"}, []uint32{clsPending, clsPending, clsYes}},
		{"SETTINGS ACK is not a start", []string{"\x00\x00\x00\x04\x01\x00\x00\x00\x00"}, []uint32{clsNo}},
		{"SETTINGS length not a multiple of 6", []string{"\x00\x00\x07\x04\x00\x00\x00\x00\x00"}, []uint32{clsNo}},
		{"SETTINGS on a stream", []string{"\x00\x00\x06\x04\x00\x00\x00\x00\x01"}, []uint32{clsNo}},
		{"another frame type first", []string{"\x00\x00\x08\x06\x00\x00\x00\x00\x00"}, []uint32{clsNo}},
		{"a 0 byte after a CRLF", []string{"\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"}, []uint32{clsNo}},
		{"HTTP/1.2 response is still HTTP/1. for the kernel", []string{"HTTP/1.2 200 OK\r\n"}, []uint32{clsYes}},
		{"valid start, then a NUL in a later segment", []string{"GE", "T\x00"}, []uint32{clsPending, clsNo}},
		{"a valid start of 64 bytes", []string{long}, []uint32{clsYes}},
		{"63 bytes are not enough to decide", []string{long[:63]}, []uint32{clsPending}},
		{"empty segment", []string{""}, []uint32{clsPending}},
	} {
		got := p.verdicts(t, tc.segments...)
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %d verdicts for %d segments", tc.name, len(got), len(tc.segments))
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: verdict after segment %d (%q) is %d, want %d", tc.name, i, tc.segments[i], got[i], tc.want[i])
				break
			}
		}
	}
}

// joinedH2 runs the HTTP/2 check of a connection joined midway on one
// segment: true when the kernel takes it for HTTP/2.
func (p *classifyProbe) joinedH2(t *testing.T, seg []byte) bool {
	t.Helper()
	ret, err := p.h2.Run(&ebpf.RunOptions{Data: append(make([]byte, 14), seg...)})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	if ret > 1 {
		t.Fatalf("probe returned %d", ret)
	}
	// User space hands the connection to the midway parser by the same rules.
	if user := httpstream.H2FrameChain(seg); user != (ret == 1) {
		t.Fatalf("segment % x...: kernel says %v, user space %v", seg[:min(len(seg), 16)], ret == 1, user)
	}
	return ret == 1
}

// h2Frames writes frames with x/net's framer, as an HTTP/2 stack does.
func h2Frames(t *testing.T, write func(fr *http2.Framer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := write(http2.NewFramer(&b, nil)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// frameHeader is a raw 9-byte frame header, for headers x/net refuses to write.
func frameHeader(length uint32, typ, flags byte, stream uint32) []byte {
	return []byte{byte(length >> 16), byte(length >> 8), byte(length), typ, flags,
		byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
}

// A connection joined midway is taken for HTTP/2 from a segment that starts
// a chain of plausible frame headers, and never from HTTP/1, TLS, text or
// other binary protocols, or a segment that starts inside a frame. User
// space (httpstream.H2FrameChain) agrees on every segment.
func TestKernelClassifierJoinedHTTP2(t *testing.T) {
	p := loadClassifyProbe(t)
	// "GET /" as static-table and literal HPACK fields, on stream 5.
	block := []byte{0x82, 0x84, 0x86, 0x41, 0x03, 'a', '.', 'b'}
	headers := h2Frames(t, func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: block, EndHeaders: true, EndStream: true})
	})
	response := h2Frames(t, func(fr *http2.Framer) error {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: []byte{0x88}, EndHeaders: true}); err != nil {
			return err
		}
		return fr.WriteData(5, true, []byte(`{"ok":true}`))
	})
	control := h2Frames(t, func(fr *http2.Framer) error {
		if err := fr.WriteWindowUpdate(0, 1024); err != nil {
			return err
		}
		if err := fr.WritePing(false, [8]byte{1}); err != nil {
			return err
		}
		return fr.WriteSettingsAck()
	})
	bigData := h2Frames(t, func(fr *http2.Framer) error { return fr.WriteData(7, false, make([]byte, 16000)) })
	grpcCall := h2Frames(t, func(fr *http2.Framer) error { // five frames: the chain is cut after four
		for _, id := range []uint32{1, 3, 5, 7, 9} {
			if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
				return err
			}
		}
		return nil
	})
	for _, tc := range []struct {
		name string
		seg  []byte
		want bool
	}{
		{"HEADERS ending the segment", headers, true},
		{"HEADERS then DATA", response, true},
		{"WINDOW_UPDATE, PING, SETTINGS ACK", control, true},
		{"a chain of more than four frames", grpcCall, true},
		{"DATA running past the segment", bigData[:1400], true},
		{"a whole frame, then a header cut by the segment's end", append(append([]byte{}, headers...), 0, 0), true},
		{"a segment inside a DATA payload", bigData[1400:2800], false},
		{"a segment inside a header block", headers[9:], false},
		{"a frame header alone, cut", headers[:8], false},
		{"empty", nil, false},
		{"PING running past the segment", frameHeader(8, 6, 0, 0), false},
		{"frame longer than 16 KiB", append(frameHeader(16385, 0, 0, 1), make([]byte, 100)...), false},
		{"unknown type 0x0a", append(frameHeader(4, 0x0a, 0, 1), 0, 0, 0, 0), false},
		{"reserved bit set", append(frameHeader(4, 8, 0, 0x80000001), 0, 0, 0, 1), false},
		{"HEADERS on stream 0", append(frameHeader(1, 1, 4, 0), 0x88), false},
		{"DATA with an undefined flag", append(frameHeader(1, 0, 0x02, 1), 'x'), false},
		{"PING on a stream", append(frameHeader(8, 6, 0, 1), make([]byte, 8)...), false},
		{"RST_STREAM of 5 bytes", append(frameHeader(5, 3, 0, 1), make([]byte, 5)...), false},
		{"frames whose lengths do not chain", append(append([]byte{}, headers[:len(headers)-1]...), response...), false},
		{"HTTP/1 request", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), false},
		{"HTTP/1 response", []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), false},
		{"HTTP/1 body", []byte(`{"id":1,"name":"x"}`), false},
		{"HTTP/2 client preface", []byte(http2.ClientPreface), false},
		{"TLS handshake record", []byte("\x16\x03\x01\x00\x30\x01\x00\x00\x2c\x03\x03"), false},
		{"TLS application data", append([]byte("\x17\x03\x03\x00\x20"), make([]byte, 32)...), false},
		{"Kafka request (4-byte length first)", []byte("\x00\x00\x00\x2a\x00\x03\x00\x09\x00\x00\x00\x01\x00\x04test"), false},
		{"PostgreSQL startup (4-byte length first)", []byte("\x00\x00\x00\x08\x04\xd2\x16\x2f"), false},
		{"zeros", make([]byte, 64), false},
	} {
		if got := p.joinedH2(t, tc.seg); got != tc.want {
			t.Errorf("%s (% x): taken for HTTP/2 %v, want %v", tc.name, tc.seg[:min(len(tc.seg), 16)], got, tc.want)
		}
	}

	// Random binary segments: none is taken for HTTP/2. The seed is fixed,
	// so the cases are the same on every run.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		seg := make([]byte, 1+rng.IntN(1500))
		for j := range seg {
			seg[j] = byte(rng.Uint32())
		}
		if i%2 == 0 {
			seg[0] = 0 // half of them with the 0 byte a short frame starts with
		}
		if p.joinedH2(t, seg) {
			t.Fatalf("random segment %d (% x...) taken for HTTP/2", i, seg[:min(len(seg), 16)])
		}
	}
}
