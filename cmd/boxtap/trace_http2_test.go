package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aquasecurity/tracee/types/trace"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/boxtap/boxtap/internal/itest"
)

// h2Event is what the HTTP/2 tests compare of an event.
type h2Event struct {
	stream     int64 // -1 without a stream_id arg (HTTP/1 events)
	code       int
	proto      string
	method     string
	path       string
	grpcStatus int64 // -1 without a grpc_status arg
	grpcMsg    string
	partial    bool
}

func (e h2Event) String() string {
	return fmt.Sprintf("{stream %d %d %s %s %s grpc %d %q partial %v}", e.stream, e.code, e.proto, e.method, e.path, e.grpcStatus, e.grpcMsg, e.partial)
}

func h2Events(t *testing.T, events []trace.Event) []h2Event {
	t.Helper()
	var out []h2Event
	for _, v := range viewEvents(t, events) {
		e := h2Event{stream: -1, grpcStatus: -1, code: v.resp.StatusCode, proto: v.resp.Protocol}
		if v.req != nil {
			e.method, e.path = v.req.Method, v.req.URIPath
		}
		for _, a := range v.ev.Args {
			switch a.Name {
			case "stream_id":
				e.stream = argInt(t, a)
			case "grpc_status":
				e.grpcStatus = argInt(t, a)
			case "grpc_message":
				e.grpcMsg, _ = a.Value.(string)
			case "partial":
				e.partial, _ = a.Value.(bool)
			}
		}
		out = append(out, e)
	}
	// Streams end in any order; compare them sorted by stream, then status.
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].stream != out[j].stream {
			return out[i].stream < out[j].stream
		}
		return out[i].code < out[j].code
	})
	return out
}

func argInt(t *testing.T, a trace.Argument) int64 {
	switch v := a.Value.(type) {
	case int64:
		return v
	case float64:
		return int64(v)
	case int:
		return int64(v)
	}
	t.Fatalf("arg %s is %T", a.Name, a.Value)
	return 0
}

func checkH2Events(t *testing.T, got, want []h2Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

// checkExitCounters checks the exit line: no resyncs, no body bytes skipped
// by the kernel (it must not skip bytes of an HTTP/2 connection), and the
// number of HTTP/2 streams cut before a response.
func checkExitCounters(t *testing.T, stderr string, cut int) {
	t.Helper()
	if !strings.Contains(stderr, " 0 resyncs,") || !strings.Contains(stderr, " 0 body bytes skipped in the kernel") {
		t.Errorf("exit line reports resyncs or skipped bytes:\n%s", stderr)
	}
	m := regexp.MustCompile(`, (\d+) HTTP/2 streams cut before a response`).FindStringSubmatch(stderr)
	got := 0
	if m != nil {
		got, _ = strconv.Atoi(m[1])
	}
	if got != cut {
		t.Errorf("exit line: %d HTTP/2 streams cut, want %d:\n%s", got, cut, stderr)
	}
}

func requireCurlHTTP2(t *testing.T) string {
	t.Helper()
	curl, err := exec.LookPath("curl")
	itest.Require(t, err == nil, "needs curl (apt-get install curl)")
	out, err := exec.Command(curl, "-V").Output()
	itest.Require(t, err == nil && bytes.Contains(out, []byte("HTTP2")), "needs a curl with HTTP/2 (nghttp2): Debian's curl")
	return curl
}

// curl --http2 on a cleartext URL takes the Upgrade: h2c route: the first
// request is HTTP/1.1 answered by 101, its response comes on stream 1, and
// the next URLs go on streams 3, 5, 7 of the same connection.
func TestTraceHTTP2UpgradeFromCurlGivesOneEventPerStream(t *testing.T) {
	e := newTraceEnv(t)
	curl := requireCurlHTTP2(t)
	port := itest.FreePort(t)
	c := e.startContainer(t, "listening on", "serve-h2c", "-addr", "127.0.0.1:"+strconv.Itoa(port))
	p := e.startTrace(t, []*itest.Container{c})

	base := "http://127.0.0.1:" + strconv.Itoa(port)
	args := []string{"-sS", "--http2", "--max-time", "20", "-w", "%{http_version} %{http_code}\n"}
	for _, path := range []string{"/h2/ok", "/h2/early", "/h2/big", "/h2/status/404"} {
		args = append(args, "-o", "/dev/null", base+path)
	}
	out, err := exec.Command(curl, args...).CombinedOutput()
	if err != nil || string(out) != "2 200\n2 200\n2 200\n2 404\n" {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	x := stopTrace(t, p, syscall.SIGINT)
	if x.code != 0 {
		t.Fatalf("boxtap exited %d:\n%s", x.code, x.stderr)
	}
	checkCountsLine(t, x.stderr, len(x.events))
	checkExitCounters(t, x.stderr, 0)
	h2 := func(stream int64, code int, path string) h2Event {
		return h2Event{stream: stream, code: code, proto: "HTTP/2.0", method: "GET", path: path, grpcStatus: -1}
	}
	checkH2Events(t, h2Events(t, x.events), []h2Event{
		{stream: -1, code: 101, proto: "HTTP/1.1", method: "GET", path: "/h2/ok", grpcStatus: -1},
		h2(1, 200, "/h2/ok"),
		h2(3, 103, "/h2/early"), h2(3, 200, "/h2/early"),
		h2(5, 200, "/h2/big"), // a header block over HEADERS + CONTINUATION
		h2(7, 404, "/h2/status/404"),
	})
}

// A client with prior knowledge writes the frames itself: PADDED and
// PRIORITY flags, a request header block split over CONTINUATION frames, a
// padded DATA frame, a stream the server resets before answering, twenty
// streams open at once, and a GOAWAY at the end. The server is Go's
// net/http with h2c.
func TestTraceHTTP2PriorKnowledgeFramesFromGoH2CServer(t *testing.T) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	c := e.startContainer(t, "listening on", "serve-h2c", "-addr", "127.0.0.1:"+strconv.Itoa(port))
	p := e.startTrace(t, []*itest.Container{c})

	const n = 20
	want := rawH2Client(t, "127.0.0.1:"+strconv.Itoa(port))
	concurrentH2Client(t, "http://127.0.0.1:"+strconv.Itoa(port), n)
	x := stopTrace(t, p, syscall.SIGINT)
	if x.code != 0 {
		t.Fatalf("boxtap exited %d:\n%s", x.code, x.stderr)
	}
	checkCountsLine(t, x.stderr, len(x.events))
	checkExitCounters(t, x.stderr, 1)
	var raw, many []h2Event
	for _, e := range h2Events(t, x.events) {
		if strings.HasPrefix(e.path, "/h2/status/4") {
			many = append(many, e)
		} else {
			raw = append(raw, e)
		}
	}
	checkH2Events(t, raw, want)
	// The transport's stream order is its own: each request must appear
	// once, on one of the connection's first n odd streams.
	if len(many) != n {
		t.Fatalf("%d events of the concurrent connection, want %d: %v", len(many), n, many)
	}
	streams, codes := map[int64]bool{}, map[int]bool{}
	for _, e := range many {
		if e.stream < 1 || e.stream > 2*n || e.stream%2 == 0 || streams[e.stream] || codes[e.code] ||
			e.path != "/h2/status/"+strconv.Itoa(e.code) || e.method != "GET" || e.proto != "HTTP/2.0" {
			t.Errorf("concurrent event %v: unexpected or repeated", e)
		}
		streams[e.stream], codes[e.code] = true, true
	}
}

// rawH2Client runs one prior-knowledge connection written frame by frame
// and returns the events it must give.
func rawH2Client(t *testing.T, addr string) []h2Event {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	block := func(method, path string, extra ...string) []byte {
		hb.Reset()
		kv := append([]string{":method", method, ":scheme", "http", ":path", path, ":authority", addr}, extra...)
		for i := 0; i+1 < len(kv); i += 2 {
			if err := enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}); err != nil {
				t.Fatal(err)
			}
		}
		return bytes.Clone(hb.Bytes())
	}
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, conn)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fr.WriteSettings())
	// 1: padded HEADERS with PRIORITY.
	must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("GET", "/h2/ok"), EndStream: true, EndHeaders: true,
		PadLength: 17, Priority: http2.PriorityParam{StreamDep: 0, Weight: 200}}))
	// 3: a POST whose body is a padded DATA frame.
	must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block("POST", "/h2/echo", "content-length", "5"), EndHeaders: true}))
	must(fr.WriteDataPadded(3, true, []byte("hello"), make([]byte, 30)))
	// 5: a request header block over HEADERS + two CONTINUATION frames.
	big := block("GET", "/h2/status/202", "x-big", strings.Repeat("c", 3000))
	third := len(big) / 3
	must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: big[:third]}))
	must(fr.WriteContinuation(5, false, big[third:2*third]))
	must(fr.WriteContinuation(5, true, big[2*third:]))
	// 7: the server resets it before any response (cut).
	must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: block("GET", "/h2/reset"), EndStream: true, EndHeaders: true}))
	// 9: an interim 103 and the final response.
	must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 9, BlockFragment: block("GET", "/h2/early"), EndStream: true, EndHeaders: true}))
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	open := map[uint32]bool{1: true, 3: true, 5: true, 7: true, 9: true}
	for len(open) > 0 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's frames (open streams %v): %v", open, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				must(fr.WriteSettingsAck())
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				delete(open, f.StreamID)
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				delete(open, f.StreamID)
			}
		case *http2.RSTStreamFrame:
			delete(open, f.StreamID)
		}
		if out.Len() > 0 {
			if _, err := conn.Write(out.Bytes()); err != nil {
				t.Fatal(err)
			}
			out.Reset()
		}
	}
	must(fr.WriteGoAway(0, http2.ErrCodeNo, nil))
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	ev := func(stream int64, code int, method, path string) h2Event {
		return h2Event{stream: stream, code: code, proto: "HTTP/2.0", method: method, path: path, grpcStatus: -1}
	}
	return []h2Event{ev(1, 200, "GET", "/h2/ok"), ev(3, 200, "POST", "/h2/echo"), ev(5, 202, "GET", "/h2/status/202"),
		ev(9, 103, "GET", "/h2/early"), ev(9, 200, "GET", "/h2/early")}
}

// concurrentH2Client makes n requests at once over one prior-knowledge
// connection of x/net's transport (answered 400 to 400+n-1): their frames
// interleave on the wire.
func concurrentH2Client(t *testing.T, base string, n int) {
	t.Helper()
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(fmt.Sprintf("%s/h2/status/%d", base, 400+i))
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.ProtoMajor != 2 {
					err = fmt.Errorf("protocol %s", resp.Proto)
				}
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
}

// grpc-go's client and server on one connection: unary calls that succeed
// and one that fails (NOT_FOUND, trailers-only), a server stream the client
// cancels after its first message (RST_STREAM after the response head: an
// event without grpc_status), and a server stream that fails with
// UNAVAILABLE in its trailers.
func TestTraceGRPCUnaryAndServerStreamingCallsGiveStatusFromTrailers(t *testing.T) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	c := e.startContainer(t, "listening on", "grpc-serve", "-addr", "127.0.0.1:"+strconv.Itoa(port))
	p := e.startTrace(t, []*itest.Container{c})

	grpcCalls(t, "127.0.0.1:"+strconv.Itoa(port))
	x := stopTrace(t, p, syscall.SIGINT)
	if x.code != 0 {
		t.Fatalf("boxtap exited %d:\n%s", x.code, x.stderr)
	}
	checkCountsLine(t, x.stderr, len(x.events))
	checkExitCounters(t, x.stderr, 0)
	const check, watch = "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"
	ev := func(stream int64, path string, status int64, msg string) h2Event {
		return h2Event{stream: stream, code: 200, proto: "HTTP/2.0", method: "POST", path: path, grpcStatus: status, grpcMsg: msg}
	}
	checkH2Events(t, h2Events(t, x.events), []h2Event{
		ev(1, check, 0, ""), ev(3, check, 0, ""), ev(5, check, 5, "unknown service"),
		ev(7, watch, -1, ""), ev(9, watch, 14, "stream failed on purpose"),
	})
}

// grpcCalls makes the calls of the gRPC test, in order, on one connection.
func grpcCalls(t *testing.T, addr string) {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := grpc_health_v1.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, svc := range []string{"", "app"} {
		if r, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: svc}); err != nil || r.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q): %v %v", svc, r, err)
		}
	}
	if _, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "missing"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Check(missing): %v, want NotFound", err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	w, err := hc.Watch(wctx, &grpc_health_v1.HealthCheckRequest{Service: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatalf("Watch(app): %v", err)
	}
	wcancel()
	if _, err := w.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("Watch(app) after cancel: %v", err)
	}
	f, err := hc.Watch(ctx, &grpc_health_v1.HealthCheckRequest{Service: "fail-stream"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Recv(); err != nil {
		t.Fatalf("Watch(fail-stream) first message: %v", err)
	}
	if _, err := f.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("Watch(fail-stream): %v, want Unavailable", err)
	}
}

// curl --http2-prior-knowledge starts each connection with the preface.
// (curl 7.88 fails a second stream on one connection with Go's h2c server,
// with or without boxtap: one URL per connection here; interleaved streams
// are covered by x/net's transport and grpc-go.)
func TestTraceHTTP2PriorKnowledgeFromCurl(t *testing.T) {
	e := newTraceEnv(t)
	curl := requireCurlHTTP2(t)
	port := itest.FreePort(t)
	c := e.startContainer(t, "listening on", "serve-h2c", "-addr", "127.0.0.1:"+strconv.Itoa(port))
	p := e.startTrace(t, []*itest.Container{c})

	base := "http://127.0.0.1:" + strconv.Itoa(port)
	paths := []string{"/h2/ok", "/h2/status/201", "/h2/big", "/h2/status/503"}
	for _, path := range paths {
		out, err := exec.Command(curl, "-sS", "--http2-prior-knowledge", "--max-time", "20", "-o", "/dev/null",
			"-w", "%{http_version}", base+path).CombinedOutput()
		if err != nil || string(out) != "2" {
			t.Fatalf("curl %s: %v\n%s", path, err, out)
		}
	}
	x := stopTrace(t, p, syscall.SIGINT)
	if x.code != 0 {
		t.Fatalf("boxtap exited %d:\n%s", x.code, x.stderr)
	}
	checkCountsLine(t, x.stderr, len(x.events))
	checkExitCounters(t, x.stderr, 0)
	var want []h2Event
	for _, path := range paths {
		code := 200
		if strings.HasPrefix(path, "/h2/status/") {
			code, _ = strconv.Atoi(strings.TrimPrefix(path, "/h2/status/"))
		}
		want = append(want, h2Event{stream: 1, code: code, proto: "HTTP/2.0", method: "GET", path: path, grpcStatus: -1})
	}
	sort.SliceStable(want, func(i, j int) bool { return want[i].code < want[j].code }) // as h2Events sorts
	checkH2Events(t, h2Events(t, x.events), want)
}
