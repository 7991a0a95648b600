package httpstream

import (
	"bytes"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/cilium/ebpf"
)

// kernelClassifier runs the kernel's classifier (bpf/classify_probe.c over
// include/classify.h, the code boxtap's programs run) through
// BPF_PROG_TEST_RUN.
type kernelClassifier struct {
	prog  *ebpf.Program
	state *ebpf.Map
}

func loadKernelClassifier(t testing.TB) *kernelClassifier {
	t.Helper()
	itest.RequireBPF(t)
	spec, err := ebpf.LoadCollectionSpec("../bpf/testdata/classify_probe.o")
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatalf("loading the classifier probe: %v", err)
	}
	t.Cleanup(coll.Close)
	return &kernelClassifier{prog: coll.Programs["classify_probe"], state: coll.Maps["state"]}
}

// verdict is the kernel's verdict on a stream that starts with data, in one
// segment: 0 undecided, 1 HTTP, 2 not HTTP.
func (k *kernelClassifier) verdict(t testing.TB, data []byte) uint32 {
	t.Helper()
	if err := k.state.Put(uint32(0), make([]byte, k.state.ValueSize())); err != nil {
		t.Fatal(err)
	}
	ret, err := k.prog.Run(&ebpf.RunOptions{Data: append(make([]byte, 14), data...)})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret
}

// userSpaceFrames reports whether a stream starting with data begins with a
// start line this package frames: empty lines, then a complete valid line.
func userSpaceFrames(data []byte) bool {
	data = bytes.TrimLeft(data, "\r\n")
	nl := bytes.IndexByte(data, '\n')
	return nl >= 0 && lineKind(trimLineEnd(data[:nl+1])) != kindNone
}

// FuzzKernelAcceptsWhatUserSpaceFrames: the kernel never judges "not HTTP" a
// connection whose first line user space would frame, so a connection is
// never invisible for its shape alone; and a first line user space frames is
// always decided HTTP, not left waiting.
func FuzzKernelAcceptsWhatUserSpaceFrames(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\n", "\r\nGET /x HTTP/1.1\r\n", "\n\r\nPROPFIND /d HTTP/1.1\r\n", "MKCOL /n HTTP/1.0\r\n",
		"M-SEARCH * HTTP/1.1\r\n", "HTTP/1.1 200 OK\r\n", "HTTP/1.0 404\r\n", "HTTP/1.1 600 X\r\n", "G(T / HTTP/1.1\r\n",
		"\x16\x03\x01\x00", "220 smtp ready\r\n", "GET  / HTTP/1.1\r\n", "X /" + string(bytes.Repeat([]byte("a"), 80)) + " HTTP/1.1\r\n",
	} {
		f.Add([]byte(s))
	}
	k := loadKernelClassifier(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		if userSpaceFrames(data) {
			if v := k.verdict(t, data); v != 1 {
				t.Fatalf("user space frames %q, the kernel's verdict is %d, want 1 (HTTP)", data, v)
			}
		}
	})
}

// FuzzKernelH2ChainMatchesUserSpace: on any segment, the kernel's check of a
// connection joined midway (h2_joined, bpf/include/classify_h2.h, through
// classify_h2_probe) and H2FrameChain, which hands the connection to the
// midway parser, agree.
func FuzzKernelH2ChainMatchesUserSpace(f *testing.F) {
	itest.RequireBPF(f)
	spec, err := ebpf.LoadCollectionSpec("../bpf/testdata/classify_probe.o")
	if err != nil {
		f.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		f.Fatalf("loading the classifier probe: %v", err)
	}
	f.Cleanup(coll.Close)
	prog := coll.Programs["classify_h2_probe"]
	f.Add([]byte("\x00\x00\x04\x01\x05\x00\x00\x00\x05\x82\x84\x86\x88"))                     // HEADERS
	f.Add([]byte("\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x04\x01")) // WINDOW_UPDATE, then a cut header
	f.Add([]byte("\x00\x40\x00\x00\x00\x00\x00\x00\x07abc"))                                  // DATA running past the end
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, seg []byte) {
		seg = seg[:min(len(seg), 2048)] // test runs take one page of packet
		ret, err := prog.Run(&ebpf.RunOptions{Data: append(make([]byte, 14), seg...)})
		if err != nil {
			t.Fatalf("test run: %v", err)
		}
		if user := H2FrameChain(seg); user != (ret == 1) {
			t.Fatalf("segment % x: kernel %d, user space %v", seg, ret, user)
		}
	})
}
