//go:build amd64

// TLS capture is built for amd64 only (see bpf/tls_other.go).

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aquasecurity/tracee/types/trace"
	"github.com/boxtap/boxtap/internal/itest"
)

// tlsEvent is what the TLS tests check of one event, in one line.
func tlsEvent(ev trace.Event) string {
	meta, resp, req, tls := tlsArgs(ev)
	return fmt.Sprint("tls=", tls, " status=", resp.StatusCode, " header=", resp.Headers.Get("X-Boxtap-Tls"), " path=", req.URIPath,
		" src=", meta.SrcIP, ":", meta.SrcPort, " dst=", meta.DstIP, ":", meta.DstPort, " process=", ev.ProcessName, " container=", ev.Container.Name)
}

// goTLSImage is the image of internal/tlsapp built static and stripped
// (CGO_ENABLED=0, -ldflags='-s -w'): Go crypto/tls with no symbol table.
// toolchain "" is the installed Go.
func (e *traceEnv) goTLSImage(t *testing.T, toolchain string) string {
	t.Helper()
	return e.docker.FileImage(t, itest.BuildGoStatic(t, "./internal/tlsapp", "-s -w", toolchain))
}

// goHTTPSRequests sends n GETs to path/i on one keep-alive HTTP/1.1
// connection with Go's crypto/tls (the test process, not traced) and
// returns the client's local port.
func goHTTPSRequests(t *testing.T, port, n int, path string) int {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	lport, conns := 0, 0
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			conns++
			lport = info.Conn.LocalAddr().(*net.TCPAddr).Port
		}
	}}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	for i := range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d%s/%d", port, path, i), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("GET %s: status %d, %v", req.URL, resp.StatusCode, err)
		}
	}
	if conns != 1 {
		t.Fatalf("%d connections for %d requests, want one kept alive", conns, n)
	}
	return lport
}

// TestIntegrationTraceTLSGoStrippedServer runs `boxtap trace --tls` on a
// container whose only process is a static, stripped Go HTTPS server: every
// response on one keep-alive connection is one event with tls=true and the
// server's own status, header, path, ports and process. Nothing else is
// reported (the packets are ciphertext; no "cannot read" line).
//
// It runs once per Go toolchain under test: the installed one and those
// BOXTAP_TEST_GO_TOOLCHAINS lists (see TESTING.md).
func TestIntegrationTraceTLSGoStrippedServer(t *testing.T) {
	e := newTraceEnv(t)
	for _, tc := range itest.GoToolchains() {
		name := tc
		if name == "" {
			name = "installed"
		}
		t.Run(name, func(t *testing.T) { e.testGoStrippedServer(t, tc) })
	}
}

func (e *traceEnv) testGoStrippedServer(t *testing.T, toolchain string) {
	port := itest.FreePort(t)
	srv := e.docker.Run(t, itest.RunOpts{Image: e.goTLSImage(t, toolchain), Network: "host",
		Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}})
	if err := srv.WaitLog("listening on", containerTimeout); err != nil {
		t.Fatal(err)
	}
	p := e.startTrace(t, []*itest.Container{srv}, "--tls", "--format", "json")
	const n = 25
	lport := goHTTPSRequests(t, port, n, "/gotls")
	x := stopTraceN(t, p, n)
	for i, ev := range x.events {
		got := tlsEvent(ev)
		want := fmt.Sprint("tls=true status=201 header=go /gotls/", i, " path=/gotls/", i,
			" src=127.0.0.1:", port, " dst=127.0.0.1:", lport, " process=tlsapp container=", srv.Name)
		if got != want {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
	if strings.Contains(x.stderr, "cannot read") || strings.Contains(x.stderr, "warning") {
		t.Fatalf("unexpected stderr:\n%s", x.stderr)
	}
}

// TestIntegrationTraceTLSGoServerHTTP2 runs the stripped Go HTTPS server with
// HTTP/2 offered by ALPN (net/http's default) and sends it n concurrent
// requests on one HTTP/2 connection: each response stream is one event,
// tls=true, protocol HTTP/2.0, on a stream of its own, with the server's
// status, header and path.
func TestIntegrationTraceTLSGoServerHTTP2(t *testing.T) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	srv := e.docker.Run(t, itest.RunOpts{Image: e.goTLSImage(t, ""), Network: "host",
		Args: []string{"serve", "-h2", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}})
	if err := srv.WaitLog("listening on", containerTimeout); err != nil {
		t.Fatal(err)
	}
	p := e.startTrace(t, []*itest.Container{srv}, "--tls", "--format", "json")
	const n = 30
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/goh2/%d", port, i))
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.ProtoMajor != 2 || resp.StatusCode != http.StatusCreated {
				errs[i] = fmt.Errorf("request %d: %s %d %v", i, resp.Proto, resp.StatusCode, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	x := stopTraceN(t, p, n)
	paths, streams := map[string]bool{}, map[int64]bool{}
	for i, ev := range x.events {
		var path, proto string
		var stream int64
		for _, a := range ev.Args {
			switch a.Name {
			case "http_request":
				path = a.Value.(trace.ProtoHTTPRequest).URIPath
			case "http_response":
				proto = a.Value.(trace.ProtoHTTPResponse).Protocol
			case "stream_id":
				stream = argInt(t, a)
			}
		}
		got := tlsEvent(ev)
		want := fmt.Sprint("tls=true status=201 header=go ", path, " path=", path, " src=127.0.0.1:", port)
		if !strings.HasPrefix(got, want) || !strings.HasSuffix(got, " process=tlsapp container="+srv.Name) ||
			proto != "HTTP/2.0" || paths[path] || !strings.HasPrefix(path, "/goh2/") || stream < 1 || stream%2 != 1 || streams[stream] {
			t.Errorf("event %d: %s protocol %s stream %v: want an HTTP/2.0 response of its own stream and path", i, got, proto, stream)
		}
		paths[path], streams[stream] = true, true
	}
}

// TestIntegrationTraceTLSGoClientInContainer traces a static, stripped Go
// HTTPS client in a container calling a server on the host: each response
// it reads on its keep-alive connection is one event (tls=true) from the
// server's address to the client's, with the client's process.
func TestIntegrationTraceTLSGoClientInContainer(t *testing.T) {
	e := newTraceEnv(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Boxtap-Tls", "host "+r.URL.Path)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "created by the host for %s\n", r.URL.Path)
	}))
	srv.EnableHTTP2 = false
	srv.StartTLS()
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	const n = 12
	cl := e.docker.Run(t, itest.RunOpts{Image: e.goTLSImage(t, ""), Network: "host",
		Args: []string{"get", "-url", fmt.Sprintf("https://127.0.0.1:%d/client", port), "-n", strconv.Itoa(n), "-wait-signal"}})
	if err := cl.WaitLog("waiting", containerTimeout); err != nil {
		t.Fatal(err)
	}
	p := e.startTrace(t, []*itest.Container{cl}, "--tls", "--format", "json")
	e.docker.Command(t, "kill", "--signal", "USR1", cl.Name)
	if err := cl.WaitLog(fmt.Sprintf("done %d", n), containerTimeout); err != nil {
		t.Fatal(err)
	}
	var lport int
	if _, err := fmt.Sscanf(cl.Logs(), "waiting\nlocal port %d\n", &lport); err != nil {
		t.Fatalf("client log %q: %v", cl.Logs(), err)
	}
	// The client exits after its last response: boxtap ends by itself.
	x := stopTrace(t, p, nil)
	if x.code != 0 {
		t.Fatalf("boxtap exited with %d:\n%s", x.code, x.stderr)
	}
	// The connection's packets, ciphertext, are the packet path's one
	// connection that is not HTTP.
	if !strings.Contains(x.stderr, fmt.Sprintf("container %s (%s) stopped: %d events, 1 connections not HTTP\n", cl.Name, itest.ShortID(cl.ID), n)) {
		t.Errorf("no stop line with %d events:\n%s", n, x.stderr)
	}
	if len(x.events) != n {
		t.Fatalf("%d events, want %d:\n%s", len(x.events), n, x.stderr)
	}
	for i, ev := range x.events {
		got := tlsEvent(ev)
		want := fmt.Sprint("tls=true status=201 header=host /client/", i, " path=/client/", i,
			" src=127.0.0.1:", port, " dst=127.0.0.1:", lport, " process=tlsapp container=", cl.Name)
		if got != want {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestIntegrationTraceTLSReportsUnreadableOncePerProcess traces two
// containers running a program with OpenSSL linked in statically: stripped
// (no symbol: TLS boxtap cannot read) and with its symbols (readable, no
// line). The stripped one's process is reported once, and so is the child
// it forks later; the stop and exit lines count both.
func TestIntegrationTraceTLSReportsUnreadableOncePerProcess(t *testing.T) {
	e := newTraceEnv(t)
	root, err := itest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, "internal", "tlssource", "testdata", "sslidle.c")
	stripped := e.docker.Run(t, itest.RunOpts{Image: e.docker.FileImage(t, itest.BuildStaticOpenSSL(t, src, true)), Network: "none"})
	symbols := e.docker.Run(t, itest.RunOpts{Image: e.docker.FileImage(t, itest.BuildStaticOpenSSL(t, src, false)), Network: "none"})
	for _, c := range []*itest.Container{stripped, symbols} {
		if err := c.WaitLog("ready", containerTimeout); err != nil {
			t.Fatal(err)
		}
	}
	line := func(pid int) string {
		return fmt.Sprintf("%s (%s): pid %d (sslidle) uses TLS that boxtap cannot read (statically linked OpenSSL without symbols)\n", stripped.Name, itest.ShortID(stripped.ID), pid)
	}
	p := e.startTrace(t, []*itest.Container{stripped, symbols}, "--tls")
	parent := stripped.PID()
	if err := p.WaitStderr(line(parent), traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	// SIGUSR1: the parent forks; the kernel's notice names the child.
	e.docker.Command(t, "kill", "--signal", "USR1", stripped.Name)
	if err := stripped.WaitLog("child ready", containerTimeout); err != nil {
		t.Fatal(err)
	}
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", parent, parent))
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(kids)))
	if err != nil {
		t.Fatalf("children of %d: %q", parent, kids)
	}
	if err := p.WaitStderr(line(child), traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	stripped.Stop()
	if err := p.WaitStderr(fmt.Sprintf("container %s (%s) stopped: 0 events, 2 processes with TLS boxtap cannot read\n", stripped.Name, itest.ShortID(stripped.ID)), traceExitTimeout); err != nil {
		t.Fatal(err)
	}
	x := stopTrace(t, p, syscall.SIGINT)
	if x.code != 0 {
		t.Fatalf("boxtap exited with %d:\n%s", x.code, x.stderr)
	}
	if n := strings.Count(x.stderr, "uses TLS that boxtap cannot read"); n != 2 {
		t.Fatalf("%d cannot-read lines, want 2 (parent and child, once each):\n%s", n, x.stderr)
	}
	if strings.Contains(x.stderr, itest.ShortID(symbols.ID)+"): pid") {
		t.Fatalf("the program with symbols was reported:\n%s", x.stderr)
	}
	if !strings.Contains(x.stderr, "boxtap: 0 events, ") || !strings.Contains(x.stderr, ", 2 processes with TLS boxtap cannot read") {
		t.Fatalf("exit line does not count 2 processes:\n%s", x.stderr)
	}
}

// TestIntegrationTraceTLSGoProgramStartedLater starts a second Go HTTPS
// server in a container boxtap already traces (docker exec): boxtap sees
// its exec (a static Go program maps no library), instruments it, and each
// of its responses is one event.
func TestIntegrationTraceTLSGoProgramStartedLater(t *testing.T) {
	e := newTraceEnv(t)
	first, later := itest.FreePort(t), itest.FreePort(t)
	c := e.docker.Run(t, itest.RunOpts{Image: e.goTLSImage(t, ""), Network: "host",
		Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", first)}})
	if err := c.WaitLog("listening on", containerTimeout); err != nil {
		t.Fatal(err)
	}
	p := e.startTrace(t, []*itest.Container{c}, "--tls", "--format", "json")
	e.docker.Command(t, "exec", "-d", c.Name, "/tlsapp", "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", later))
	// Wait, bounded, for the new process and for boxtap's uprobes on its
	// executable (bpftool lists them by the path boxtap opened).
	procs := filepath.Join(e.cgroupDirOf(t, c.PID()), "cgroup.procs")
	deadline := time.Now().Add(containerTimeout)
	for pid := 0; ; time.Sleep(50 * time.Millisecond) {
		if pid == 0 {
			b, err := os.ReadFile(procs)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range strings.Fields(string(b)) {
				if n, _ := strconv.Atoi(f); n != c.PID() {
					pid = n
				}
			}
		}
		if pid != 0 && strings.Contains(bpftool(t, "perf", "show"), fmt.Sprintf("filename /proc/%d/exe ", pid)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no uprobe on the executable of the process started later (pid %d) in %v; boxtap stderr:\n%s", pid, containerTimeout, p.Stderr())
		}
	}
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", later), time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server started later does not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	const n = 7
	lport := goHTTPSRequests(t, later, n, "/later")
	events := stopTraceN(t, p, n).events
	for i, ev := range events {
		got := tlsEvent(ev)
		want := fmt.Sprint("tls=true status=201 header=go /later/", i, " path=/later/", i,
			" src=127.0.0.1:", later, " dst=127.0.0.1:", lport, " process=tlsapp container=", c.Name)
		if got != want {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}
