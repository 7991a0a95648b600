package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/aquasecurity/tracee/types/trace"
	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/runtime/containerd/ctrtest"
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
		g := ev{port: int(v.meta.DstPort), code: v.resp.StatusCode}
		if v.req != nil {
			g.method, g.path, g.host = v.req.Method, v.req.URIPath, v.req.Host
		}
		g.stream, _, g.partial = h2Args(t, v.ev)
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

// Hook mode attaches before the container starts, so it sees every
// connection from its start: the requests that a join midway would give
// partially (a path indexed earlier in the connection) come whole, and no
// event is ever partial.
func TestHookHTTP2NeverPartial(t *testing.T) {
	e := newHookEnv(t)
	port := itest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	id := e.prefix + "h2"
	b := e.bundle(t, id, e.exampleHooks(t), "serve-h2c", "-addr", addr)
	if err := e.start(t, id, b); err != nil {
		t.Fatal(err)
	}
	firstResponse(t, "http://"+addr+"/h2/ok", time.Now()) // HTTP/1.1, once it listens
	h := dialH2(t, addr)
	for _, path := range []string{"/h2/ok", "/h2/ok", "/h2/status/404", "/h2/status/404"} {
		h.get(path)
	}
	h.conn.Close()
	e.kill(t, id)
	e.delete(t, id)
	waitNoTracer(t, id, 10*time.Second)
	waitHostTracers(t, e.run, 0, 10*time.Second) // it ends with its last container, its files closed
	var h2 []hookEvent
	all := readHookEvents(t, filepath.Join(e.out, id+".json"))
	for _, ev := range all {
		if ev.Partial {
			t.Errorf("partial event in hook mode: %+v", ev)
		}
		if ev.Stream > 0 {
			h2 = append(h2, ev)
		}
	}
	sort.Slice(h2, func(i, j int) bool { return h2[i].Stream < h2[j].Stream })
	want := []hookEvent{{Stream: 1, URIPath: "/h2/ok", Status: 200}, {Stream: 3, URIPath: "/h2/ok", Status: 200},
		{Stream: 5, URIPath: "/h2/status/404", Status: 404}, {Stream: 7, URIPath: "/h2/status/404", Status: 404}}
	if len(h2) != len(want) {
		t.Fatalf("%d HTTP/2 events, want %d: %+v\nall events: %+v\nhook log:\n%s", len(h2), len(want), h2, all, e.hookLog())
	}
	for i, w := range want {
		g := h2[i]
		if g.Stream != w.Stream || g.URIPath != w.URIPath || g.Status != w.Status || g.ContainerID != id || g.SrcPort != port {
			t.Errorf("event %d: %+v, want %+v from port %d", i, g, w, port)
		}
	}
}

// A grpc-go client's connection to a grpc-go server, joined midway after
// 20 calls: each of the 30 calls after the join gives one event, marked
// partial (grpc-go never rebuilds its tables). :method POST and :status 200
// (static entries) are always known; the path, host and gRPC status,
// indexed before the join, are empty or right, never wrong. The test logs
// the share of fields recovered (BENCHMARKS.md).
func TestTraceGRPCJoinedMidwayNeverGivesAWrongValue(t *testing.T) {
	const before, after = 20, 30
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c := e.startContainer(t, "listening on", "grpc-serve", "-addr", addr)
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := grpc_health_v1.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Call i asks for "missing" (NOT_FOUND, trailers-only) every fifth time.
	wantStatus := func(i int) int64 { return map[bool]int64{true: 5, false: 0}[i%5 == 4] }
	call := func(i int) {
		svc := ""
		if wantStatus(i) == 5 {
			svc = "missing"
		}
		_, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: svc})
		if got := int64(status.Code(err)); got != wantStatus(i) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	for i := range before {
		call(i)
	}
	p := e.startTrace(t, []*itest.Container{c})
	for i := before; i < before+after; i++ {
		call(i)
	}
	x := stopTrace(t, p, syscall.SIGINT)
	if x.code != 0 {
		t.Fatalf("boxtap exited %d:\n%s", x.code, x.stderr)
	}
	checkCountsLine(t, x.stderr, len(x.events))
	checkExitCounters(t, x.stderr, 0)

	evs := viewEvents(t, x.events)
	if len(evs) != after {
		t.Fatalf("%d events, want one per call after the join (%d)", len(evs), after)
	}
	type ev struct {
		stream             int64
		method, path, host string
		code               int
		grpc               int64
		partial            bool
	}
	var got []ev
	for _, v := range evs {
		g := ev{code: v.resp.StatusCode}
		if v.req != nil {
			g.method, g.path, g.host = v.req.Method, v.req.URIPath, v.req.Host
		}
		g.stream, g.grpc, g.partial = h2Args(t, v.ev)
		got = append(got, g)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].stream < got[j].stream })
	const path = "/grpc.health.v1.Health/Check"
	var paths, hosts, grpcs int
	for k, g := range got {
		i := before + k
		if g.stream != int64(2*i+1) || g.method != "POST" || g.code != 200 || !g.partial {
			t.Errorf("call %d: %+v, want stream %d, POST, 200, partial", i, g, 2*i+1)
		}
		if g.path != "" && g.path != path || g.host != "" && g.host != addr || g.grpc != -1 && g.grpc != wantStatus(i) {
			t.Errorf("call %d: a wrong value: %+v (path %s, host %s, grpc status %d)", i, g, path, addr, wantStatus(i))
		}
		paths += min(len(g.path), 1)
		hosts += min(len(g.host), 1)
		if g.grpc != -1 {
			grpcs++
		}
	}
	t.Logf("%d calls after the join: method and status %d of %d, path %d, host %d, grpc status %d, partial %d",
		after, after, after, paths, hosts, grpcs, after)
}

// watch joins an HTTP/2 connection midway as trace does: a labelled
// container already serving a connection when watch starts gives one
// partial event per request sent after watch attached.
func TestWatchHTTP2JoinedMidwayGivesPartialEvents(t *testing.T) {
	e := newWatchEnv(t, "")
	d := itest.RequireDocker(t)
	mark := ctrtest.RandomID("h2mid")
	port := itest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c := d.Run(t, itest.RunOpts{Flags: []string{"--label", "boxtap-watch=" + mark}, Args: []string{"serve-h2c", "-addr", addr}})
	if err := c.WaitLog("listening on", containerTimeout); err != nil {
		t.Fatal(err)
	}
	h := dialH2(t, addr)
	for range 2 { // streams 1, 3: before boxtap
		if code := h.get("/h2/ok"); code != 200 {
			t.Fatalf("GET /h2/ok before watching: %d", code)
		}
	}
	dir := filepath.Join(t.TempDir(), "out")
	p := e.startBoxtap(t, "watch", "--label", "boxtap-watch="+mark, "--output-dir", dir)
	if err := p.WaitStderr(fmt.Sprintf("tracing %s (%s)\n", c.Name, itest.ShortID(c.ID)), traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/h2/ok", "/h2/status/404"} { // 5, 7
		h.get(path)
	}
	file := filepath.Join(dir, c.ID+".json")
	waitFileEvents(t, file, 2, 30*time.Second)
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(traceExitTimeout); err != nil {
		t.Fatalf("watch did not exit cleanly: %v\n%s", err, p.Stderr())
	}
	type ev struct {
		stream  int64
		code    int
		path    string
		host    string
		partial bool
	}
	var got []ev
	for _, v := range viewEvents(t, fileEvents(t, file)) {
		g := ev{code: v.resp.StatusCode}
		if v.req != nil {
			g.path, g.host = v.req.URIPath, v.req.Host
		}
		g.stream, _, g.partial = h2Args(t, v.ev)
		got = append(got, g)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].stream < got[j].stream })
	want := []ev{{5, 200, "", "", true}, {7, 404, "/h2/status/404", "", true}}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// h2Args is an event's stream_id and grpc_status (-1 for those it lacks)
// and its partial flag.
func h2Args(t *testing.T, ev trace.Event) (stream, grpc int64, partial bool) {
	t.Helper()
	stream, grpc = -1, -1
	for _, a := range ev.Args {
		switch a.Name {
		case "stream_id":
			stream = argInt(t, a)
		case "grpc_status":
			grpc = argInt(t, a)
		case "partial":
			partial, _ = a.Value.(bool)
		}
	}
	return stream, grpc, partial
}
