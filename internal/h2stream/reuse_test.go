package h2stream

import (
	"fmt"
	"net/textproto"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"

	"github.com/boxtap/boxtap/httpstream"
)

// A dropped stream's struct and header slices serve the next stream: no
// field of an earlier stream (an interim head's longer header list
// included) may show in a later event, and what is kept for reuse holds no
// string and is counted in Footprint.
func TestReusedStreamsKeepNothingOfEarlierOnes(t *testing.T) {
	w := newWire(t)
	w.headers(w.cli, 1, true, 0, ":method", "GET", ":scheme", "http", ":path", "/1", ":authority", "a.test", "x-a", "1", "x-b", "2")
	w.headers(w.srv, 1, false, 0, ":status", "103", "link", "</a.css>", "link", "</b.css>", "x-i", "i")
	w.headers(w.srv, 1, false, 0, ":status", "200", "content-type", "text/plain")
	w.data(w.srv, 1, true, 0, []byte("one"))
	w.get(3, "/3")
	w.headers(w.srv, 3, true, 0, ":status", "204")
	// 20 headers: more than a kept slice may hold.
	kv := []string{":status", "200"}
	for i := range 20 {
		kv = append(kv, fmt.Sprintf("x-%d", i), "v")
	}
	w.get(5, "/5")
	w.headers(w.srv, 5, true, 0, kv...)
	w.get(7, "/7")
	w.headers(w.srv, 7, true, 0, ":status", "200", "x-last", "1")
	evs, p, st := feed(w.chunks, 0)
	many := ""
	for i := range 20 {
		many += fmt.Sprintf(",X-%d=v", i)
	}
	want := []event{
		{Stream: 1, Code: 103, Status: "103", Method: "GET", Path: "/1", Host: "a.test", CL: -1, Headers: "Link=</a.css>,Link=</b.css>,X-I=i", ReqHasHeaders: true},
		{Stream: 1, Code: 200, Status: "200", Method: "GET", Path: "/1", Host: "a.test", CL: 3, Headers: "Content-Type=text/plain", ReqHasHeaders: true},
		{Stream: 3, Code: 204, Status: "204", Method: "GET", Path: "/3", Host: "example.test", CL: 0},
		{Stream: 5, Code: 200, Status: "200", Method: "GET", Path: "/5", Host: "example.test", CL: 0, Headers: many[1:]},
		{Stream: 7, Code: 200, Status: "200", Method: "GET", Path: "/7", Host: "example.test", CL: 0, Headers: "X-Last=1"},
	}
	if len(evs) != len(want) {
		t.Fatalf("got %d events, want %d:\n%v", len(evs), len(want), evs)
	}
	for i := range want {
		want[i].LatencyKnown, want[i].Proto, want[i].Dir = true, "HTTP/2.0", "egress"
		if evs[i] != want[i] {
			t.Errorf("event %d:\n got %v\nwant %v", i, evs[i], want[i])
		}
	}
	if st.Responses != 5 || st.Desyncs != 0 || len(p.streams) != 0 || p.size != 0 {
		t.Fatalf("stats %+v, %d streams (%d bytes) tracked", *st, len(p.streams), p.size)
	}
	if len(p.free) != 1 {
		t.Fatalf("%d streams kept for reuse, want 1 (the one struct every stream used in turn)", len(p.free))
	}
	kept := 0
	for _, s := range p.free {
		if s.id != 0 || s.method != "" || s.path != "" || s.hasResp || s.size != 0 {
			t.Errorf("kept stream holds state: %+v", *s)
		}
		if cap(s.hdrs) > maxFreeFields || cap(s.reqHdrs) > maxFreeFields {
			t.Errorf("kept stream has slices of capacity %d and %d, at most %d may be kept", cap(s.reqHdrs), cap(s.hdrs), maxFreeFields)
		}
		for _, f := range append(s.reqHdrs[:cap(s.reqHdrs)], s.hdrs[:cap(s.hdrs)]...) {
			if f != (httpstream.HeaderField{}) {
				t.Errorf("kept stream holds field %+v", f)
			}
		}
		kept += streamOverhead + (cap(s.reqHdrs)+cap(s.hdrs))*fieldSize
	}
	if p.freeBytes != kept {
		t.Errorf("freeBytes %d, the kept streams hold %d", p.freeBytes, kept)
	}
}

// At most maxFreeStreams dropped streams are kept, however many ended at once.
func TestKeptStreamsAreBounded(t *testing.T) {
	w := newWire(t)
	n := uint32(maxFreeStreams + 5)
	for i := range n {
		w.get(1+2*i, "/")
	}
	for i := range n {
		w.headers(w.srv, 1+2*i, false, 0, ":status", "200")
	}
	evs, p, _ := feedTo(New(nil), nil, w.chunks, 0)
	p.Finish(httpstream.Egress, nil)
	if len(evs) != 0 || len(p.streams) != 0 || p.stats.Responses != uint64(n) {
		t.Fatalf("%d events, %d streams tracked, %d responses: want %d responses at Finish", len(evs), len(p.streams), p.stats.Responses, n)
	}
	if len(p.free) != maxFreeStreams {
		t.Fatalf("%d streams kept, want %d", len(p.free), maxFreeStreams)
	}
}

func TestCanonicalNamesAreTextprotos(t *testing.T) {
	names := []string{"x-custom", "X-Custom", "x_under", "a b", "", "-", "te", "grpc-status", "Content-Type", "ÿ"}
	// Every name of the static table, and gRPC's and others commonHeader interns.
	for i := 1; i <= 61; i++ {
		fs, err := hpack.NewDecoder(0, nil).DecodeFull([]byte{0x80 | byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, fs[0].Name)
	}
	names = append(names, strings.Fields(`grpc-status grpc-message grpc-encoding grpc-accept-encoding grpc-timeout
		te x-request-id x-forwarded-for x-forwarded-proto x-content-type-options alt-svc`)...)
	for i, n := range names {
		if got, want := httpstream.CanonicalName(n), textproto.CanonicalMIMEHeaderKey(n); got != want {
			t.Errorf("CanonicalName(%q) = %q, textproto: %q", n, got, want)
		}
		// The static table's names and gRPC's are interned: no copy per field.
		if i >= 10 && testing.AllocsPerRun(10, func() { httpstream.CanonicalName(n) }) != 0 {
			t.Errorf("CanonicalName(%q) allocates", n)
		}
	}
}
