package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// serverCalls is a mix of responses testapp serve gives: bodies with Content-Length,
// chunked bodies, no body (204, HEAD), big header blocks, error statuses.
func serverCalls() []httpCall {
	return []httpCall{
		{method: "GET", path: "/status/200"},
		{method: "GET", path: "/status/404"},
		{method: "GET", path: "/bytes/3000"},
		{method: "GET", path: "/chunked/2500"},
		{method: "GET", path: "/status/204"},
		{method: "HEAD", path: "/bytes/77"},
		{method: "GET", path: "/headers/3000"},
		{method: "GET", path: "/echo"},
		{method: "GET", path: "/status/503"},
	}
}

func TestTraceServerInContainerAnswersHostEgress(t *testing.T) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	c := e.startServer(t, "127.0.0.1:"+strconv.Itoa(port))
	server := containerInit(t, c)
	p := e.startTrace(t, []*itest.Container{c})

	host := "127.0.0.1:" + strconv.Itoa(port)
	var calls []httpCall
	calls = append(calls, doCalls(t, "http://"+host, true, serverCalls())...)  // one connection
	calls = append(calls, doCalls(t, "http://"+host, false, serverCalls())...) // a connection each
	vs := viewEvents(t, stopTraceOK(t, p, syscall.SIGINT))

	requireCount(t, vs, len(calls))
	for i, v := range vs {
		checkOrigin(t, i, v, c, e.image, server)
		if v.direction != "egress" || v.truncated {
			t.Errorf("event %d: direction %q truncated %v, want egress false", i, v.direction, v.truncated)
		}
		checkEndpoints(t, i, v, "127.0.0.1", uint16(port), "127.0.0.1", calls[i].localPort)
		checkCallEvent(t, i, v, calls[i], host)
	}
}

// hostServer is an HTTP server the test runs on the host; it answers every request with
// headers it chooses itself (including Date), so that the expected header map is exact.
type hostServer struct {
	srv *httptest.Server
	mu  sync.Mutex
	// remotePorts are the client ports of the requests, in arrival order.
	remotePorts []uint16
}

func startHostServer(t *testing.T, network, addr string) *hostServer {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	hs := &hostServer{}
	hs.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs.mu.Lock()
		n := len(hs.remotePorts)
		if a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
			hs.remotePorts = append(hs.remotePorts, uint16(a.Port))
		}
		hs.mu.Unlock()
		for k, v := range hostServerHeader(n, r.Close) {
			w.Header()[k] = v
		}
		w.WriteHeader(hostServerStatus(n))
		fmt.Fprintf(w, "reply %03d\n", n)
	}))
	hs.srv.Listener.Close()
	hs.srv.Listener = l
	hs.srv.Start()
	t.Cleanup(hs.srv.Close)
	return hs
}

// hostServerStatus and hostServerHeader say what the host server answers to its nth request.
func hostServerStatus(n int) int { return []int{200, 201, 404, 500}[n%4] }

// With closing set (the request said "Connection: close") it says so too, as net/http would.
func hostServerHeader(n int, closing bool) http.Header {
	h := http.Header{
		"Content-Type":   {"text/plain"},
		"Content-Length": {strconv.Itoa(len(fmt.Sprintf("reply %03d\n", n)))},
		"Date":           {"Mon, 02 Jan 2006 15:04:05 GMT"},
		"X-Reply":        {strconv.Itoa(n)},
		"X-Boxtap-Test":  {"set-by-the-host-server"},
	}
	if closing {
		h.Set("Connection", "close")
	}
	return h
}

func (hs *hostServer) ports() []uint16 {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return append([]uint16(nil), hs.remotePorts...)
}

func TestTraceClientInContainerReceivesFromHostIngress(t *testing.T) {
	e := newTraceEnv(t)
	const n = 6
	for _, keepAlive := range []bool{true, false} {
		t.Run("keepalive="+strconv.FormatBool(keepAlive), func(t *testing.T) {
			hs := startHostServer(t, "tcp4", "127.0.0.1:0")
			port := hs.srv.Listener.Addr().(*net.TCPAddr).Port
			url := fmt.Sprintf("http://127.0.0.1:%d/from/container", port)
			c := e.startContainer(t, "waiting for SIGUSR1", "get", "-url", url, "-n", strconv.Itoa(n),
				"-keepalive="+strconv.FormatBool(keepAlive), "-wait-signal")
			client := containerInit(t, c)
			p := e.startTrace(t, []*itest.Container{c})
			signalContainer(t, c)
			if code := waitContainerExit(t, c); code != 0 {
				t.Fatalf("client container exited with %d; log:\n%s", code, c.Logs())
			}
			// The container is gone, so boxtap ends by itself.
			x := stopTrace(t, p, nil)
			if x.code != 0 {
				t.Fatalf("boxtap exited with %d after its container stopped; stderr:\n%s", x.code, x.stderr)
			}
			checkCountsLine(t, x.stderr, len(x.events))
			vs := viewEvents(t, x.events)
			requireCount(t, vs, n)
			ports := hs.ports()
			for i, v := range vs {
				checkOrigin(t, i, v, c, e.image, client)
				if v.direction != "ingress" || v.truncated {
					t.Errorf("event %d: direction %q truncated %v, want ingress false", i, v.direction, v.truncated)
				}
				checkEndpoints(t, i, v, "127.0.0.1", uint16(port), "127.0.0.1", ports[i])
				r := v.resp
				want := hostServerStatus(i)
				if r.StatusCode != want || r.Status != fmt.Sprintf("%d %s", want, http.StatusText(want)) || r.Protocol != "HTTP/1.1" {
					t.Errorf("event %d: %s %q, want %d", i, r.Protocol, r.Status, want)
				}
				checkHeaders(t, i, r.Headers, hostServerHeader(i, !keepAlive))
				if r.ContentLength != 10 {
					t.Errorf("event %d: content_length %d, want 10", i, r.ContentLength)
				}
				if v.req == nil || v.req.Method != "GET" || v.req.URIPath != "/from/container" || v.req.Host != fmt.Sprintf("127.0.0.1:%d", port) {
					t.Errorf("event %d: request %+v, want GET /from/container to 127.0.0.1:%d", i, v.req, port)
				}
			}
		})
	}
}

func TestTraceIgnoresUntracedContainerServingConcurrently(t *testing.T) {
	e := newTraceEnv(t)
	tracedPort, otherPort := itest.FreePort(t), itest.FreePort(t)
	traced := e.startServer(t, "127.0.0.1:"+strconv.Itoa(tracedPort))
	other := e.startServer(t, "127.0.0.1:"+strconv.Itoa(otherPort))
	server := containerInit(t, traced)
	p := e.startTrace(t, []*itest.Container{traced})

	const rounds = 3
	var wg sync.WaitGroup
	tracedCalls := make([][]httpCall, rounds)
	for r := 0; r < rounds; r++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			tracedCalls[r] = doCalls(t, "http://127.0.0.1:"+strconv.Itoa(tracedPort), r%2 == 0, serverCalls()[:4])
		}()
		go func() {
			defer wg.Done()
			doCalls(t, "http://127.0.0.1:"+strconv.Itoa(otherPort), r%2 == 0, serverCalls())
		}()
	}
	wg.Wait()
	vs := viewEvents(t, stopTraceOK(t, p, syscall.SIGTERM))

	requireCount(t, vs, rounds*4)
	ports := map[uint16]bool{}
	for _, cs := range tracedCalls {
		for _, c := range cs {
			ports[c.localPort] = true
		}
	}
	for i, v := range vs {
		checkOrigin(t, i, v, traced, e.image, server)
		checkEndpoints(t, i, v, "127.0.0.1", uint16(tracedPort), "127.0.0.1", 0)
		if !ports[v.meta.DstPort] {
			t.Errorf("event %d: destination port %d is not one of the traced container's clients", i, v.meta.DstPort)
		}
		if v.ev.Container.ID == other.ID {
			t.Errorf("event %d comes from the untraced container", i)
		}
	}
}

func TestTraceReportsIPv6AndV4MappedAddresses(t *testing.T) {
	e := newTraceEnv(t)
	tests := []struct {
		name       string
		listen     string // server -addr, %d is the port
		dial       string // client host:port, %d is the port
		wantIP     string // src_ip and dst_ip of every event
		wantPrefix string // host in the request's Host header
	}{
		{name: "ipv6 loopback", listen: "[::1]:%d", dial: "[::1]:%d", wantIP: "::1"},
		{name: "dual-stack server called over IPv4", listen: "[::]:%d", dial: "127.0.0.1:%d", wantIP: "127.0.0.1"},
		{name: "dual-stack server called over IPv6", listen: "[::]:%d", dial: "[::1]:%d", wantIP: "::1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			port := itest.FreePort(t)
			c := e.startServer(t, fmt.Sprintf(tc.listen, port))
			server := containerInit(t, c)
			p := e.startTrace(t, []*itest.Container{c})
			host := fmt.Sprintf(tc.dial, port)
			var calls []httpCall
			// The first request after tracing started is on a fresh connection.
			calls = append(calls, doCalls(t, "http://"+host, false, serverCalls()[:3])...)
			calls = append(calls, doCalls(t, "http://"+host, true, serverCalls()[:3])...)
			vs := viewEvents(t, stopTraceOK(t, p, syscall.SIGINT))
			requireCount(t, vs, len(calls))
			for i, v := range vs {
				checkOrigin(t, i, v, c, e.image, server)
				checkEndpoints(t, i, v, tc.wantIP, uint16(port), tc.wantIP, calls[i].localPort)
				checkCallEvent(t, i, v, calls[i], host)
			}
		})
	}
}

func TestTraceKeepAliveConnectionOpenedBeforeTracingStarted(t *testing.T) {
	e := newTraceEnv(t)
	responses := []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Exchange: 1\r\n\r\nfirst\n",
		"HTTP/1.1 201 Created\r\nContent-Length: 7\r\nX-Exchange: 2\r\n\r\nsecond\n",
		"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\nX-Exchange: 3\r\n\r\n6\r\nthird\n\r\n0\r\n\r\n",
		"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX-Exchange: 4\r\n\r\n",
	}
	var server, client []map[string]any
	for i, resp := range responses {
		server = append(server, step("recv_request", 1), step("send", resp))
		client = append(client, step("send", fmt.Sprintf("GET /x/%d HTTP/1.1\r\nHost: boxtap\r\nX-Exchange: %d\r\n\r\n", i+1, i+1)),
			step("recv_bytes", len(resp)))
		if i == 0 {
			client = append(client, step("wait_signal", true))
		}
	}
	server = append(server, step("recv_until_close", true))
	client = append(client, step("close", true))

	hostServer := startHostScriptServer(t, e, "127.0.0.1:0", server)
	c := e.startContainer(t, "waiting for SIGUSR1", "script-client", "-addr", hostServer, "-script", scriptJSON(t, client), "-timeout", "60s")
	clientProc := containerInit(t, c)
	p := e.startTrace(t, []*itest.Container{c})
	signalContainer(t, c)
	if code := waitContainerExit(t, c); code != 0 {
		t.Fatalf("client container exited with %d; log:\n%s", code, c.Logs())
	}
	x := stopTrace(t, p, nil)
	if x.code != 0 {
		t.Fatalf("boxtap exited with %d; stderr:\n%s", x.code, x.stderr)
	}
	vs := viewEvents(t, x.events)
	requireCount(t, vs, len(responses)-1)
	_, serverPort, _ := net.SplitHostPort(hostServer)
	sp, _ := strconv.Atoi(serverPort)
	for i, v := range vs {
		exchange := i + 2
		checkOrigin(t, i, v, c, e.image, clientProc)
		checkEndpoints(t, i, v, "127.0.0.1", uint16(sp), "127.0.0.1", 0)
		if v.direction != "ingress" {
			t.Errorf("event %d: direction %q, want ingress", i, v.direction)
		}
		want := parseScriptedResponse(t, responses[exchange-1])
		checkScripted(t, i, v, want)
		// The connection predates tracing, but each traced exchange's request was sent
		// after it started: every response must be paired.
		if v.req == nil || v.req.URIPath != fmt.Sprintf("/x/%d", exchange) {
			t.Errorf("event %d: paired with request %+v, want /x/%d", i, v.req, exchange)
		}
	}
	if len(vs) > 1 && vs[0].meta.DstPort != vs[1].meta.DstPort {
		t.Errorf("events came on different client ports %d and %d; the script used one connection", vs[0].meta.DstPort, vs[1].meta.DstPort)
	}
}

// startHostScriptServer runs `testapp script-serve` on the host (outside any traced cgroup)
// and returns its address.
func startHostScriptServer(t *testing.T, e *traceEnv, addr string, script []map[string]any) string {
	t.Helper()
	p := itest.StartProc(t, t.Context(), e.testapp, "script-serve", "-addr", addr, "-loop", "-timeout", "60s", "-script", scriptJSON(t, script))
	line, err := p.WaitLine("listening on ", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return line[len("listening on "):]
}
