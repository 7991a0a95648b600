//go:build amd64

// HTTP/2 from Debian's nginx, inside TLS and in clear text. These tests run
// the host's nginx (startHostNginx, amd64 only).

package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// nginxH2Event is what the nginx HTTP/2 tests compare of an event.
type nginxH2Event struct {
	clientPort int
	stream     int64
	code       int
	method     string
	path       string
}

// nginxH2Events checks what every event must share (protocol HTTP/2.0, the
// tls arg as wanted, nginx's port, header and process, the container) and
// returns the rest, sorted by client port and stream.
func nginxH2Events(t *testing.T, x traceExit, c *itest.Container, port int, wantTLS bool) []nginxH2Event {
	t.Helper()
	var out []nginxH2Event
	for i, v := range viewEvents(t, x.events) {
		e := nginxH2Event{clientPort: int(v.meta.DstPort), stream: -1, code: v.resp.StatusCode}
		if v.req != nil {
			e.method, e.path = v.req.Method, v.req.URIPath
		}
		tlsArg := false
		for _, a := range v.ev.Args {
			switch a.Name {
			case "stream_id":
				e.stream = argInt(t, a)
			case "tls":
				tlsArg, _ = a.Value.(bool)
			case "partial":
				t.Errorf("event %d: marked partial: the connection was seen from its start", i)
			}
		}
		got := fmt.Sprint(v.resp.Protocol, tlsArg, v.meta.SrcIP, v.meta.SrcPort, v.meta.DstIP, v.resp.Headers.Get("X-Boxtap-Tls"), v.ev.ProcessName, v.ev.Container.Name)
		want := fmt.Sprint("HTTP/2.0", wantTLS, "127.0.0.1", port, "127.0.0.1", fmt.Sprintf("port %d", port), "nginx", c.Name)
		if got != want {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want)
		}
		out = append(out, e)
	}
	sortNginxH2(out)
	return out
}

// curlH2 fetches paths with curl on one connection (args choose the
// HTTP/2 route) and returns the events they must give: streams 1, 3, 5, ...
// in order. It fails unless every response was HTTP/2 on one local port.
func curlH2(t *testing.T, curl, base string, paths []string, args ...string) []nginxH2Event {
	t.Helper()
	argv := append([]string{"-sS", "--max-time", "20", "-w", "%{http_version} %{http_code} %{local_port}\n"}, args...)
	for _, p := range paths {
		argv = append(argv, "-o", "/dev/null", base+p)
	}
	out, err := exec.Command(curl, argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(paths) {
		t.Fatalf("curl wrote %q for %d URLs", out, len(paths))
	}
	var want []nginxH2Event
	lport := ""
	for i, l := range lines {
		f := strings.Fields(l)
		code := nginxCode(paths[i])
		if len(f) != 3 || f[0] != "2" || f[1] != strconv.Itoa(code) || (lport != "" && f[2] != lport) {
			t.Fatalf("curl response %d: %q, want HTTP/2, %d, one connection", i, l, code)
		}
		lport = f[2]
		port, _ := strconv.Atoi(lport)
		want = append(want, nginxH2Event{clientPort: port, stream: int64(2*i + 1), code: code, method: "GET", path: paths[i]})
	}
	return want
}

// nginxCode is nginx's answer to path (tlsTestDir's configuration).
func nginxCode(path string) int {
	if path == "/h2/missing" {
		return 404
	}
	return 201
}

// goH2Requests sends a POST and then n concurrent GETs over one HTTP/2
// connection of Go's net/http client (TLS with ALPN h2, or prior
// knowledge when h2c) and returns that connection's local port. Their
// stream ids are the transport's choice: the events must carry n+1 distinct
// ones.
func goH2Requests(t *testing.T, base string, n int, h2c bool) int {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}
	if h2c {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var mu sync.Mutex
	ports := map[int]bool{}
	do := func(method, path string, body io.Reader) error {
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
			mu.Lock()
			defer mu.Unlock()
			if a, ok := ci.Conn.LocalAddr().(*net.TCPAddr); ok {
				ports[a.Port] = true
			}
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), method, base+path, body)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.ProtoMajor != 2 || resp.StatusCode != nginxCode(path) {
			return fmt.Errorf("%s %s: %s %d", method, path, resp.Proto, resp.StatusCode)
		}
		return nil
	}
	if err := do("POST", "/h2/go/post", strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/h2/go/%d", i)
			if i%10 == 9 {
				path = "/h2/missing"
			}
			errs[i] = do("GET", path, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if len(ports) != 1 {
		t.Fatalf("the Go client used %d connections, want 1: %v", len(ports), ports)
	}
	for p := range ports {
		return p
	}
	return 0
}

// checkGoH2Events checks the events of goH2Requests' connection: the POST
// first (stream 1), then n GETs on distinct odd streams, each path once.
func checkGoH2Events(t *testing.T, got []nginxH2Event, port, n int) {
	t.Helper()
	if len(got) != n+1 {
		t.Fatalf("%d events of the Go client's connection, want %d: %v", len(got), n+1, got)
	}
	if want := (nginxH2Event{clientPort: port, stream: 1, code: 201, method: "POST", path: "/h2/go/post"}); got[0] != want {
		t.Errorf("first event %v, want %v", got[0], want)
	}
	paths := map[string]int{}
	for i := range n {
		if i%10 == 9 {
			paths["/h2/missing"]++
		} else {
			paths[fmt.Sprintf("/h2/go/%d", i)]++
		}
	}
	seen := map[int64]bool{1: true}
	for _, e := range got[1:] {
		if e.stream < 3 || e.stream%2 == 0 || seen[e.stream] || e.method != "GET" || paths[e.path] == 0 || e.code != nginxCode(e.path) {
			t.Errorf("event %v: unexpected, or its stream or path repeated", e)
		}
		seen[e.stream] = true
		paths[e.path]--
	}
}

// TestTraceTLSHTTP2FromNginxToCurlAndGoClient: Debian's nginx with `ssl
// http2` (ALPN h2) traced with --tls. curl --http2 fetches four URLs on one
// connection (streams 1, 3, 5, 7), Go's net/http client a POST and then
// forty concurrent GETs on one connection: one event per response stream,
// tls=true, protocol HTTP/2.0, with its stream, status, method and path.
func TestTraceTLSHTTP2FromNginxToCurlAndGoClient(t *testing.T) {
	e := newTraceEnv(t)
	curl := requireCurlHTTP2(t)
	port := itest.FreePort(t)
	c := e.startHostNginx(t, port, "ssl http2")
	p := e.startTrace(t, []*itest.Container{c}, "--tls", "--format", "json")

	const n = 40
	base := "https://127.0.0.1:" + strconv.Itoa(port)
	want := curlH2(t, curl, base, []string{"/h2/curl/a", "/h2/missing", "/h2/curl/c", "/h2/curl/d"}, "-k", "--http2")
	goPort := goH2Requests(t, base, n, false)
	stopAndCheckNginxH2(t, p, c, port, true, want, goPort, n)
}

// stopAndCheckNginxH2 waits for curl's events (want), the Go client's n and the
// one of its POST, stops boxtap and checks them all.
func stopAndCheckNginxH2(t *testing.T, p *itest.Proc, c *itest.Container, port int, tls bool, want []nginxH2Event, goPort, n int) {
	t.Helper()
	if _, err := p.WaitLines(len(want)+n+1, traceExitTimeout); err != nil {
		t.Fatal(err)
	}
	x := stopTrace(t, p, syscall.SIGINT)
	if x.code != 0 {
		t.Fatalf("boxtap exited %d:\n%s", x.code, x.stderr)
	}
	checkCountsLine(t, x.stderr, len(x.events))
	checkExitCounters(t, x.stderr, 0)
	checkNginxH2(t, nginxH2Events(t, x, c, port, tls), want, goPort, n)
}

// sortNginxH2 orders events by client port, then stream.
func sortNginxH2(evs []nginxH2Event) {
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].clientPort != evs[j].clientPort {
			return evs[i].clientPort < evs[j].clientPort
		}
		return evs[i].stream < evs[j].stream
	})
}

// checkNginxH2 splits the events into those of the Go client's connection
// and the others, curl's, which must be want, and checks both.
func checkNginxH2(t *testing.T, got, want []nginxH2Event, goPort, n int) {
	t.Helper()
	var curlGot, goGot []nginxH2Event
	for _, e := range got {
		if e.clientPort == goPort {
			goGot = append(goGot, e)
		} else {
			curlGot = append(curlGot, e)
		}
	}
	sortNginxH2(want) // as nginxH2Events sorts
	if fmt.Sprint(curlGot) != fmt.Sprint(want) {
		t.Errorf("curl's connection:\n got %v\nwant %v", curlGot, want)
	}
	checkGoH2Events(t, goGot, goPort, n)
}

// TestTraceHTTP2PriorKnowledgeFromNginxCleartext: Debian's nginx with
// `listen PORT http2` (h2c, prior knowledge only), traced from its packets
// (no --tls). curl --http2-prior-knowledge fetches four URLs, one per
// connection (curl 7.88 fails the second stream of a prior-knowledge
// connection, with or without boxtap: "Error in the HTTP2 framing layer"),
// Go's net/http client (unencrypted HTTP/2) a POST and then forty
// concurrent GETs on one connection: one event per response stream,
// protocol HTTP/2.0, no tls arg.
func TestTraceHTTP2PriorKnowledgeFromNginxCleartext(t *testing.T) {
	e := newTraceEnv(t)
	curl := requireCurlHTTP2(t)
	port := itest.FreePort(t)
	c := e.startHostNginx(t, port, "http2")
	p := e.startTrace(t, []*itest.Container{c}, "--format", "json")

	const n = 40
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	var want []nginxH2Event
	for _, path := range []string{"/h2/curl/a", "/h2/missing", "/h2/curl/c", "/h2/curl/d"} {
		want = append(want, curlH2(t, curl, base, []string{path}, "--http2-prior-knowledge")...)
	}
	goPort := goH2Requests(t, base, n, true)
	stopAndCheckNginxH2(t, p, c, port, false, want, goPort, n)
}
