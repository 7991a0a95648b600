package main

import (
	"bytes"
	"net"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/boxtap/boxtap/internal/itest"
)

// h2Conn is one long-lived prior-knowledge HTTP/2 connection whose frames
// the test writes itself: each request is one HEADERS frame in one write
// (so one segment on loopback), and x/net's encoder indexes every header,
// as Go's and grpc-go's clients do.
type h2Conn struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	out  bytes.Buffer
	hb   bytes.Buffer
	enc  *hpack.Encoder
	addr string
	next uint32
}

func dialH2(t *testing.T, addr string) *h2Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(2 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	c := &h2Conn{t: t, conn: conn, addr: addr, next: 1}
	c.enc = hpack.NewEncoder(&c.hb)
	c.fr = http2.NewFramer(&c.out, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.out.WriteString(http2.ClientPreface)
	c.must(c.fr.WriteSettings())
	c.flush()
	return c
}

// port is the client's local port.
func (c *h2Conn) port() int { return c.conn.LocalAddr().(*net.TCPAddr).Port }

func (c *h2Conn) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
}

// flush writes what the framer buffered in one write.
func (c *h2Conn) flush() {
	c.t.Helper()
	_, err := c.conn.Write(c.out.Bytes())
	c.must(err)
	c.out.Reset()
}

// get sends GET path on the next stream and reads frames until its
// response ended; it returns the status. SETTINGS are acknowledged.
func (c *h2Conn) get(path string) int {
	c.t.Helper()
	id := c.next
	c.next += 2
	c.hb.Reset()
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: path}, {Name: ":authority", Value: c.addr}} {
		c.must(c.enc.WriteField(f))
	}
	c.must(c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hb.Bytes(), EndStream: true, EndHeaders: true}))
	c.flush()
	code := 0
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("reading the response of stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.must(c.fr.WriteSettingsAck())
				c.flush()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id && code == 0 {
				code, _ = strconv.Atoi(f.PseudoValue("status"))
			}
			if f.StreamID == id && f.StreamEnded() {
				return code
			}
		case *http2.DataFrame:
			if f.StreamID == id && f.StreamEnded() {
				return code
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			c.t.Fatalf("stream %d: %v", id, f)
		}
	}
}

// emptyTables asks the server for an empty HPACK table
// (SETTINGS_HEADER_TABLE_SIZE 0) and empties the client's own, as a client
// does that changes the setting mid-connection. Both encoders then start
// their next block with a table size update to 0: every entry from before
// is gone, on the wire.
func (c *h2Conn) emptyTables() {
	c.t.Helper()
	c.must(c.fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}))
	c.flush()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("waiting for the SETTINGS ACK: %v", err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && s.IsAck() {
			break
		}
	}
	c.enc.SetMaxDynamicTableSize(0)
}

// An HTTP/2 connection that opened and carried requests before boxtap
// started is joined midway. Every request sent after boxtap attached is
// seen: each one's HEADERS starts a segment, the first of them makes the
// kernel take the connection for HTTP/2 (a chain of frame headers), and
// the server's answers start segments too. Their events are partial while
// the HPACK tables hold entries from before the join: method and status
// (static table) are known, a path or host the client indexed before the
// join is empty, one first sent after the join is right. Once both sides
// empty their tables, events are whole again. The requests before the
// join give no event. A second connection whose first segment after the
// join is the client's SETTINGS frame, emptying the tables, gives a whole
// event.
func TestTraceHTTP2JoinedMidwayMarksPartialUntilTheTablesAreKnown(t *testing.T) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c := e.startContainer(t, "listening on", "serve-h2c", "-addr", addr)

	h := dialH2(t, addr)
	for _, path := range []string{"/h2/ok", "/h2/ok"} { // streams 1, 3: before boxtap
		if code := h.get(path); code != 200 {
			t.Fatalf("GET %s before tracing: %d", path, code)
		}
	}
	// A second connection whose first segment after the join is the
	// client's SETTINGS frame (which a fresh connection's server sends
	// first): the server's ACK shows it is a join.
	b := dialH2(t, addr)
	if code := b.get("/h2/ok"); code != 200 { // stream 1: before boxtap
		t.Fatalf("GET /h2/ok before tracing: %d", code)
	}
	p := e.startTrace(t, []*itest.Container{c})
	b.emptyTables()
	if code := b.get("/h2/ok"); code != 200 { // 3: the tables are known again
		t.Fatalf("GET /h2/ok on the second connection: %d", code)
	}
	want := []struct {
		path string
		code int
	}{
		{"/h2/ok", 200},         // 5: path and host indexed before the join
		{"/h2/status/404", 404}, // 7: a path first sent now: a literal, inserted
		{"/h2/status/404", 404}, // 9: that entry, inserted since the join
	}
	for _, w := range want {
		if code := h.get(w.path); code != w.code {
			t.Fatalf("GET %s: %d, want %d", w.path, code, w.code)
		}
	}
	h.emptyTables()
	for _, path := range []string{"/h2/ok", "/h2/status/404"} { // 11, 13
		if code := h.get(path); code != map[string]int{"/h2/ok": 200, "/h2/status/404": 404}[path] {
			t.Fatalf("GET %s after emptying the tables: %d", path, code)
		}
	}
	x := stopTrace(t, p, syscall.SIGINT)
	if x.code != 0 {
		t.Fatalf("boxtap exited %d:\n%s", x.code, x.stderr)
	}
	checkCountsLine(t, x.stderr, len(x.events))
	checkExitCounters(t, x.stderr, 0)

	type ev struct {
		port    int // the client's
		stream  int64
		code    int
		method  string
		path    string
		host    string
		partial bool
	}
	var got []ev
	for _, v := range viewEvents(t, x.events) {
		g := ev{port: int(v.meta.DstPort), stream: -1, code: v.resp.StatusCode}
		if v.req != nil {
			g.method, g.path, g.host = v.req.Method, v.req.URIPath, v.req.Host
		}
		for _, a := range v.ev.Args {
			switch a.Name {
			case "stream_id":
				g.stream = argInt(t, a)
			case "partial":
				g.partial, _ = a.Value.(bool)
			}
		}
		got = append(got, g)
	}
	sort.SliceStable(got, func(i, j int) bool { return got[i].port < got[j].port })
	hp, bp := h.port(), b.port()
	wantEvs := []ev{
		{hp, 5, 200, "GET", "", "", true},
		{hp, 7, 404, "GET", "/h2/status/404", "", true},
		{hp, 9, 404, "GET", "/h2/status/404", "", true},
		{hp, 11, 200, "GET", "/h2/ok", addr, false},
		{hp, 13, 404, "GET", "/h2/status/404", addr, false},
		{bp, 3, 200, "GET", "/h2/ok", addr, false},
	}
	sort.SliceStable(wantEvs, func(i, j int) bool { return wantEvs[i].port < wantEvs[j].port })
	if len(got) != len(wantEvs) {
		t.Fatalf("%d events, want %d:\n got %+v\nwant %+v", len(got), len(wantEvs), got, wantEvs)
	}
	for i := range wantEvs {
		if got[i] != wantEvs[i] {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], wantEvs[i])
		}
	}
}
