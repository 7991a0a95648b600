package h2stream

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/net/http2"

	"github.com/boxtap/boxtap/httpstream"
)

// interleaved is a conversation with every frame kind the parser handles:
// five interleaved streams answered out of order, an interim 103, padding,
// PRIORITY, a header block split over CONTINUATION frames, a server push,
// a RST_STREAM before any response and a GOAWAY that cuts the last stream.
func interleaved(t testing.TB) *wire {
	w := newWire(t)
	w.get(1, "/a?token=x")
	w.headers(w.cli, 3, false, 0, ":method", "POST", ":scheme", "http", ":path", "/b", ":authority", "example.test", "content-length", "4")
	w.data(w.cli, 3, true, 0, []byte("body"))
	big := strings.Repeat("v", 300)
	w.headersSplit(w.cli, 5, true, 50, ":method", "GET", ":scheme", "http", ":path", "/c", ":authority", "example.test", "x-big", big)
	w.get(7, "/reset")
	w.get(9, "/d")
	w.get(11, "/after-goaway")
	// Server: 103 then 200 on stream 3, stream 5 (padded headers and data) first.
	w.headers(w.srv, 5, false, 7, ":status", "200", "content-type", "text/plain")
	w.headers(w.srv, 3, false, 0, ":status", "103", "link", "</s.css>")
	w.must(w.srv.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true,
		BlockFragment: w.block(w.srv, ":method", "GET", ":scheme", "http", ":path", "/pushed.css", ":authority", "example.test")}))
	w.flush(w.srv)
	w.data(w.srv, 5, false, 10, []byte("hello "))
	w.headers(w.srv, 3, false, 0, ":status", "201", "content-length", "2")
	w.must(w.srv.fr.WriteRSTStream(7, http2.ErrCodeCancel))
	w.flush(w.srv)
	w.data(w.srv, 5, true, 3, []byte("world"))
	w.data(w.srv, 3, true, 0, []byte("ok"))
	w.headersSplit(w.srv, 1, false, 20, ":status", "404", "x-big", big)
	w.data(w.srv, 1, true, 0, nil)
	w.headers(w.srv, 2, true, 0, ":status", "200", "content-length", "0")
	w.headers(w.srv, 9, true, 0, ":status", "204")
	w.must(w.srv.fr.WriteGoAway(9, http2.ErrCodeNo, nil))
	w.flush(w.srv)
	return w
}

func TestStreamsInterleavedGiveOneEventPerResponse(t *testing.T) {
	w := interleaved(t)
	evs, p, st := feed(w.chunks, 0)
	want := []event{
		{Stream: 3, Code: 103, Status: "103", Method: "POST", Path: "/b", Host: "example.test", CL: -1, Headers: "Link=</s.css>"},
		{Stream: 5, Code: 200, Status: "200", Method: "GET", Path: "/c", Host: "example.test", CL: 11, Headers: "Content-Type=text/plain"},
		{Stream: 3, Code: 201, Status: "201", Method: "POST", Path: "/b", Host: "example.test", CL: 2, Headers: "Content-Length=2"},
		{Stream: 1, Code: 404, Status: "404", Method: "GET", Path: "/a?token=x", Host: "example.test", CL: 0, Headers: "X-Big=" + strings.Repeat("v", 300)},
		{Stream: 2, Code: 200, Status: "200", Method: "GET", Path: "/pushed.css", Host: "example.test", CL: 0, Headers: "Content-Length=0"},
		{Stream: 9, Code: 204, Status: "204", Method: "GET", Path: "/d", Host: "example.test", CL: 0},
	}
	if len(evs) != len(want) {
		t.Fatalf("got %d events, want %d:\n%v", len(evs), len(want), evs)
	}
	for i := range want {
		g := evs[i]
		want[i].LatencyKnown, want[i].Proto, want[i].Dir = true, "HTTP/2.0", "egress"
		want[i].ReqHasHeaders = g.Stream == 3 || g.Stream == 5
		if g != want[i] {
			t.Errorf("event %d:\n got %v\nwant %v", i, g, want[i])
		}
	}
	// 7 reset and 11 beyond the GOAWAY's last stream: cut, no event.
	if st.CutStreams != 2 || st.Responses != 6 || st.Requests != 7 || st.Desyncs != 0 {
		t.Errorf("stats %+v, want 2 cut, 6 responses, 7 requests (6 + 1 push), 0 desyncs", *st)
	}
	if len(p.streams) != 0 || p.size != 0 {
		t.Errorf("%d streams (%d bytes) still tracked after all ended", len(p.streams), p.size)
	}
}

func TestEventsDoNotDependOnSegmentation(t *testing.T) {
	w := interleaved(t)
	whole, _, _ := feed(w.chunks, 0)
	for _, n := range []int{1, 2, 3, 7, 9, 10, 100} {
		got, _, _ := feed(w.chunks, n)
		if len(got) != len(whole) {
			t.Fatalf("pieces of %d: %d events, whole: %d", n, len(got), len(whole))
		}
		for i := range got {
			if got[i] != whole[i] {
				t.Errorf("pieces of %d, event %d:\n got %v\nwant %v", n, i, got[i], whole[i])
			}
		}
	}
}

// grpcWire has three gRPC calls: a unary OK, a trailers-only NOT_FOUND and
// a server stream that fails with INTERNAL.
func grpcWire(t testing.TB) *wire {
	w := newWire(t)
	call := func(id uint32, method string) {
		w.headers(w.cli, id, false, 0, ":method", "POST", ":scheme", "http", ":path", method, ":authority", "svc:50051",
			"content-type", "application/grpc", "te", "trailers")
		w.data(w.cli, id, true, 0, []byte{0, 0, 0, 0, 0})
	}
	call(1, "/pkg.Svc/Ok")
	call(3, "/pkg.Svc/Missing")
	call(5, "/pkg.Svc/Stream")
	w.headers(w.srv, 1, false, 0, ":status", "200", "content-type", "application/grpc")
	w.data(w.srv, 1, false, 0, []byte{0, 0, 0, 0, 1, 42})
	w.headers(w.srv, 1, true, 0, "grpc-status", "0")
	// Trailers-only: the one HEADERS frame ends the stream.
	w.headers(w.srv, 3, true, 0, ":status", "200", "content-type", "application/grpc", "grpc-status", "5", "grpc-message", "no such thing")
	w.headers(w.srv, 5, false, 0, ":status", "200", "content-type", "application/grpc+proto")
	for i := 0; i < 3; i++ {
		w.data(w.srv, 5, false, 0, []byte{0, 0, 0, 0, 1, byte(i)})
	}
	w.headers(w.srv, 5, true, 0, "grpc-status", "13", "grpc-message", "boom")
	return w
}

func TestGRPCStatusFromTrailersAndTrailersOnly(t *testing.T) {
	evs, _, st := feed(grpcWire(t).chunks, 0)
	type g struct {
		stream uint32
		path   string
		has    bool
		code   int
		msg    string
		cl     int64
	}
	want := []g{{1, "/pkg.Svc/Ok", true, 0, "", 6}, {3, "/pkg.Svc/Missing", true, 5, "no such thing", 0}, {5, "/pkg.Svc/Stream", true, 13, "boom", 18}}
	if len(evs) != len(want) || st.CutStreams != 0 {
		t.Fatalf("got %d events (%d cut), want %d: %v", len(evs), st.CutStreams, len(want), evs)
	}
	for i, e := range evs {
		got := g{e.Stream, e.Path, e.GRPC, e.GRPCCode, e.GRPCMsg, e.CL}
		if got != want[i] {
			t.Errorf("event %d: got %+v, want %+v", i, got, want[i])
		}
	}
}

// An encoder allowed a larger dynamic table by SETTINGS_HEADER_TABLE_SIZE
// uses it; the decoder must accept the size update and keep the entries.
func TestHeaderTableSizeFromSettings(t *testing.T) {
	w := newWire(t)
	w.must(w.cli.fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 16384}))
	w.flush(w.cli)
	w.srv.enc.SetMaxDynamicTableSizeLimit(16384)
	w.srv.enc.SetMaxDynamicTableSize(16384)
	val := strings.Repeat("x", 3000)
	for id := uint32(1); id <= 9; id += 2 {
		w.get(id, "/t")
		w.headers(w.srv, id, true, 0, ":status", "200", "x-a", val, "x-b", val+"b", "x-c", val+"c")
	}
	evs, _, st := feed(w.chunks, 0)
	if len(evs) != 5 || st.Desyncs != 0 {
		t.Fatalf("got %d events, %d desyncs; want 5, 0", len(evs), st.Desyncs)
	}
	for _, e := range evs {
		if !strings.Contains(e.Headers, "X-C="+val+"c") {
			t.Errorf("stream %d lost a header from the dynamic table", e.Stream)
		}
	}
	// Without the SETTINGS the same bytes exceed the default 4096-byte table.
	var noSettings []chunk
	for i, c := range w.chunks {
		if i != 2 { // chunk 2 is the client's SETTINGS_HEADER_TABLE_SIZE
			noSettings = append(noSettings, c)
		}
	}
	if evs, _, st := feed(noSettings, 0); st.Desyncs == 0 {
		t.Errorf("a table size update beyond the allowed size was accepted (%d events)", len(evs))
	}
}

// A frame longer than the receiver allows loses the direction instead of
// being buffered.
func TestOversizedFrameLosesDirection(t *testing.T) {
	w := newWire(t)
	w.get(1, "/")
	hdr := []byte{0x10, 0, 0, byte(http2.FrameHeaders), 0x4, 0, 0, 0, 1} // 1 MiB HEADERS
	w.chunks = append(w.chunks, chunk{httpstream.Egress, append(hdr, make([]byte, 100)...)})
	evs, p, st := feed(w.chunks, 0)
	if len(evs) != 0 || st.Desyncs != 1 || !p.dirs[httpstream.Egress].lost {
		t.Fatalf("events %d desyncs %d", len(evs), st.Desyncs)
	}
	if f := p.Footprint(); f > 2*maxTableSize+4096 {
		t.Errorf("footprint %d after an oversized frame", f)
	}
}

func TestBadPrefaceLosesClientDirection(t *testing.T) {
	_, p, st := feed([]chunk{{httpstream.Ingress, []byte("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")}}, 0)
	if !p.dirs[httpstream.Ingress].lost || st.Desyncs != 1 {
		t.Fatalf("bad preface accepted")
	}
}

// The connection's server side ending settles every stream: one with a
// response head gives its event, one without is cut.
func TestFinishSettlesOpenStreams(t *testing.T) {
	w := newWire(t)
	w.get(1, "/a")
	w.get(3, "/b")
	w.headers(w.srv, 1, false, 0, ":status", "200")
	w.data(w.srv, 1, false, 0, []byte("partial"))
	evs, p, st := feed(w.chunks, 0)
	if len(evs) != 0 {
		t.Fatalf("event before the stream ended: %v", evs)
	}
	p.Finish(httpstream.Egress, func(r *httpstream.Response) { evs = append(evs, record(r)) })
	if len(evs) != 1 || evs[0].Stream != 1 || evs[0].CL != 7 || st.CutStreams != 1 {
		t.Fatalf("events %v, cut %d", evs, st.CutStreams)
	}
}

// Seam: httpstream.Conn hands a connection to the parser on the client
// preface, on a server's first SETTINGS frame and on an h2c upgrade.
func TestConnSwitchesToHTTP2(t *testing.T) {
	w := newWire(t)
	w.get(1, "/x")
	w.headers(w.srv, 1, true, 0, ":status", "200")
	run := func(chunks []chunk) ([]event, *httpstream.Stats) {
		st := new(httpstream.Stats)
		c := httpstream.NewConn(httpstream.Limits{NewHTTP2: NewProtocol}, st)
		var seq [2]uint32
		var evs []event
		for _, ch := range chunks {
			c.Feed(&httpstream.Segment{Dir: ch.dir, Seq: seq[ch.dir], Data: ch.data}, func(r *httpstream.Response) { evs = append(evs, record(r)) })
			seq[ch.dir] += uint32(len(ch.data))
		}
		return evs, st
	}
	t.Run("preface first", func(t *testing.T) {
		evs, st := run(w.chunks)
		if len(evs) != 1 || evs[0].Path != "/x" || evs[0].Code != 200 || st.Desyncs != 0 {
			t.Fatalf("events %v stats %+v", evs, *st)
		}
	})
	t.Run("server settings first", func(t *testing.T) {
		ch := append([]chunk{w.chunks[1], w.chunks[0]}, w.chunks[2:]...)
		evs, st := run(ch)
		if len(evs) != 1 || evs[0].Path != "/x" || st.Desyncs != 0 {
			t.Fatalf("events %v stats %+v", evs, *st)
		}
	})
	t.Run("h2c upgrade", func(t *testing.T) {
		u := newWire(t)
		req := "GET /up HTTP/1.1\r\nHost: h.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
		// The 101 and the server's first frames share one segment.
		var srv bytes.Buffer
		srv.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
		srv.Write(u.chunks[1].data)
		u.chunks = u.chunks[:1] // client preface + SETTINGS
		u.headers(u.srv, 1, false, 0, ":status", "200", "content-length", "3")
		u.data(u.srv, 1, true, 0, []byte("abc"))
		u.get(3, "/second")
		u.headers(u.srv, 3, true, 0, ":status", "404")
		ch := append([]chunk{{httpstream.Ingress, []byte(req)}, {httpstream.Egress, srv.Bytes()}}, u.chunks...)
		evs, st := run(ch)
		if len(evs) != 3 || evs[0].Code != 101 || evs[0].Proto != "HTTP/1.1" ||
			evs[1].Stream != 1 || evs[1].Path != "/up" || evs[1].Host != "h.test" || evs[1].Code != 200 || evs[1].Proto != "HTTP/2.0" ||
			evs[2].Stream != 3 || evs[2].Path != "/second" || evs[2].Code != 404 || st.Desyncs != 0 {
			t.Fatalf("events %v stats %+v", evs, *st)
		}
	})
	t.Run("no parser configured", func(t *testing.T) {
		st := new(httpstream.Stats)
		c := httpstream.NewConn(httpstream.Limits{}, st)
		n := 0
		var seq [2]uint32
		for _, ch := range w.chunks {
			c.Feed(&httpstream.Segment{Dir: ch.dir, Seq: seq[ch.dir], Data: ch.data}, func(*httpstream.Response) { n++ })
			seq[ch.dir] += uint32(len(ch.data))
		}
		if n != 0 {
			t.Fatalf("%d events without an HTTP/2 parser", n)
		}
	})
}

// Request trailers (a HEADERS block without pseudo-headers after the
// request's DATA) open no stream, even after the response ended.
func TestRequestTrailersOpenNoStream(t *testing.T) {
	w := newWire(t)
	w.headers(w.cli, 1, false, 0, ":method", "POST", ":scheme", "http", ":path", "/up", ":authority", "a")
	w.data(w.cli, 1, false, 0, []byte("x"))
	w.headers(w.srv, 1, true, 0, ":status", "413")
	w.headers(w.cli, 1, true, 0, "x-checksum", "abc")
	evs, p, st := feed(w.chunks, 0)
	if len(evs) != 1 || st.Requests != 1 || len(p.streams) != 0 || st.CutStreams != 0 {
		t.Fatalf("events %v, stats %+v, %d streams open", evs, *st, len(p.streams))
	}
}

// Streams settled together (a GOAWAY, the connection's end) give their
// events in stream order, every time.
func TestSettledStreamsComeOutInStreamOrder(t *testing.T) {
	w := newWire(t)
	for id := uint32(1); id <= 41; id += 2 {
		w.get(id, "/s")
		w.headers(w.srv, id, false, 0, ":status", "200")
	}
	w.must(w.srv.fr.WriteGoAway(0, http2.ErrCodeNo, nil)) // below every stream: all settled now
	w.flush(w.srv)
	evs, _, _ := feed(w.chunks, 0)
	if len(evs) != 21 {
		t.Fatalf("%d events, want 21", len(evs))
	}
	for i, e := range evs {
		if e.Stream != uint32(2*i+1) {
			t.Fatalf("event %d is stream %d", i, e.Stream)
		}
	}
}

// A client opening many streams with large header blocks and never getting
// answers cannot make the parser hold more than maxTrackedBytes (plus one
// stream's worth): later requests are dropped and counted.
func TestTrackedStreamsAreBounded(t *testing.T) {
	w := newWire(t)
	big := strings.Repeat("h", 60000)
	for id := uint32(1); id < 200; id += 2 {
		w.headersSplit(w.cli, id, true, 16000, ":method", "GET", ":scheme", "http", ":path", "/"+strings.Repeat("p", int(id)), ":authority", "a", "x-big", big)
	}
	_, p, st := feed(w.chunks, 0)
	if st.DroppedRequests == 0 || st.Requests != 100 {
		t.Fatalf("stats %+v: want requests dropped", *st)
	}
	if p.size > maxTrackedBytes+maxBlockBytes+streamOverhead+1000 {
		t.Errorf("streams hold %d bytes", p.size)
	}
}

// A connection reset settles its streams like a FIN of the server's side.
func TestConnectionResetSettlesStreams(t *testing.T) {
	w := newWire(t)
	w.get(1, "/a")
	w.get(3, "/b")
	w.headers(w.srv, 1, false, 0, ":status", "200")
	st := new(httpstream.Stats)
	c := httpstream.NewConn(httpstream.Limits{NewHTTP2: NewProtocol}, st)
	var seq [2]uint32
	var evs []event
	emit := func(r *httpstream.Response) { evs = append(evs, record(r)) }
	for _, ch := range w.chunks {
		c.Feed(&httpstream.Segment{Dir: ch.dir, Seq: seq[ch.dir], Data: ch.data}, emit)
		seq[ch.dir] += uint32(len(ch.data))
	}
	c.Feed(&httpstream.Segment{Dir: httpstream.Ingress, Seq: seq[httpstream.Ingress], RST: true}, emit)
	if len(evs) != 1 || evs[0].Stream != 1 || st.CutStreams != 1 {
		t.Fatalf("events %v, cut %d", evs, st.CutStreams)
	}
}

// A connection handed to HTTP/2 counts the parser's state in its Footprint,
// which the tracer's memory budget reads: a stream waiting for its response
// must show there.
func TestConnFootprintCountsTheHTTP2Parser(t *testing.T) {
	w := newWire(t)
	w.get(1, "/waiting")
	c := httpstream.NewConn(httpstream.Limits{NewHTTP2: NewProtocol}, new(httpstream.Stats))
	var seq [2]uint32
	for _, ch := range w.chunks {
		c.Feed(&httpstream.Segment{Dir: ch.dir, Seq: seq[ch.dir], Data: ch.data}, func(*httpstream.Response) {})
		seq[ch.dir] += uint32(len(ch.data))
	}
	proto := c.ProtocolFootprint()
	if proto == 0 {
		t.Fatal("the connection was not handed to the HTTP/2 parser, or the parser reports no state")
	}
	plain := httpstream.NewConn(httpstream.Limits{}, new(httpstream.Stats))
	if got, base := c.Footprint(), plain.Footprint(); got < base+proto {
		t.Errorf("Footprint %d, want at least a bare connection's %d plus the HTTP/2 parser's %d", got, base, proto)
	}
}
