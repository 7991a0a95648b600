package bpf

import (
	"strings"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/cilium/ebpf"
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
	return &classifyProbe{prog: coll.Programs["classify_probe"], state: coll.Maps["state"]}
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
