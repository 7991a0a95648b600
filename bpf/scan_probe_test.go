package bpf

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/cilium/ebpf"
)

// scanLen runs the kernel's Content-Length scan (scan_probe.c, generated
// into testdata) over one response start and returns the length it found,
// 0 for "cannot tell".
func loadScanProbe(t *testing.T) func(payload string) uint32 {
	t.Helper()
	itest.RequireBPF(t)
	spec, err := ebpf.LoadCollectionSpec("testdata/scan_probe.o")
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatalf("loading the scan probe: %v", err)
	}
	t.Cleanup(coll.Close)
	prog := coll.Programs["scan_probe"]
	return func(payload string) uint32 {
		ret, err := prog.Run(&ebpf.RunOptions{Data: append(make([]byte, 14), payload...)})
		if err != nil {
			t.Fatalf("test run: %v", err)
		}
		return ret
	}
}

// netHTTPLen is the length net/http gives the response at the start of s:
// its header block plus its declared body, or -1 when it has no declared
// length (chunked, until close) or does not parse.
func netHTTPLen(s string) int {
	br := bufio.NewReader(strings.NewReader(s))
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil || resp.ContentLength < 0 && resp.StatusCode >= 200 && resp.StatusCode != 204 && resp.StatusCode != 304 {
		return -1
	}
	hdr := strings.Index(s, "\r\n\r\n") + 4
	if resp.ContentLength < 0 {
		return hdr
	}
	return hdr + int(resp.ContentLength)
}

// The kernel finds the length of a response whose header block ends within
// its first 512 bytes and declares its body with one Content-Length (or has
// none: 1xx, 204, 304), as net/http reads it; anything else it leaves to
// user space (0), never a wrong length.
func TestKernelScanFindsTheLengthNetHTTPReads(t *testing.T) {
	scan := loadScanProbe(t)
	nginx := "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 17:05:39 GMT\r\n" +
		"Content-Type: text/plain\r\nContent-Length: 24\r\nConnection: keep-alive\r\n\r\nhello from boxtap bench\n"
	long := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 60)+"\r\n", 6) + "Content-Length: 5\r\n\r\nhello"
	for _, tc := range []struct {
		name, resp string
		want       int // -1: net/http's length
	}{
		{"nginx", nginx, -1},
		{"body past the segment", "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n", -1},
		{"lower case, first line", "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc", -1},
		{"upper case, blanks around", "HTTP/1.1 404 Not Found\r\nCONTENT-LENGTH: \t 7 \r\nX: y\r\n\r\nmissing", -1},
		{"shortest status line", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", -1},
		{"no body: 204", "HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", -1},
		{"no body: 304 with a length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", -1},
		{"interim 100", "HTTP/1.1 100 Continue\r\n\r\n", -1},
		{"zero length", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", -1},
		{"a line of every length around a word", "HTTP/1.1 200 OK\r\nA: 1\r\nBB: 22\r\nCCC: 333\r\nDDDD: 4444\r\nEEEEE: 55555\r\nFFFFFF: 666666\r\nG: 7\r\nContent-Length: 10\r\nH: 8\r\n\r\n0123456789", -1},
		{"header block ends just within 512 bytes", long, -1},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0},
		{"chunked and a length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 0},
		{"until close", "HTTP/1.1 200 OK\r\nServer: x\r\n\r\nhello", 0},
		{"a length that is not a number", "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello", 0},
		{"an empty length", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", 0},
		{"a length too large", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", 0},
		{"a name that only starts like it", "HTTP/1.1 200 OK\r\nContent-Lengths: 5\r\nContent-Length: 2\r\n\r\nok", -1},
		{"the name inside a value", "HTTP/1.1 200 OK\r\nX-Note: content-length: 9\r\nContent-Length: 2\r\n\r\nok", -1},
		{"header block unfinished", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", 0},
		{"header block past 512 bytes", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 60)+"\r\n", 8) + "Content-Length: 5\r\n\r\nhello", 0},
		{"not a response", "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 0},
		{"bad status", "HTTP/1.1 2x0 OK\r\nContent-Length: 5\r\n\r\nhello", 0},
	} {
		want := tc.want
		if want == -1 {
			want = netHTTPLen(tc.resp)
			if want < 0 {
				t.Fatalf("%s: net/http finds no length in %q", tc.name, tc.resp)
			}
		}
		if got := scan(tc.resp); int(got) != want {
			t.Errorf("%s: the kernel found %d, want %d", tc.name, got, want)
		}
	}
}

// Every split of the nginx response's header block into two lines of any
// length puts the line feeds at every offset within the scan's words.
func TestKernelScanAtEveryLineFeedOffset(t *testing.T) {
	scan := loadScanProbe(t)
	for pad := range 40 {
		for _, name := range []string{"Content-Length", "content-length", "Transfer-Encoding"} {
			resp := fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Pad: %s\r\n%s: 3\r\nServer: n\r\n\r\nabc", strings.Repeat("p", pad), name)
			want := 0
			if name != "Transfer-Encoding" {
				want = netHTTPLen(resp)
			}
			if got := scan(resp); int(got) != want {
				t.Errorf("pad %d, %s: the kernel found %d, want %d", pad, name, got, want)
			}
		}
	}
}
