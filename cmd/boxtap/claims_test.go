package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aquasecurity/tracee/types/trace"
	"golang.org/x/sys/unix"

	"github.com/boxtap/boxtap/internal/itest"
)

// Tests of README claims that no other test covers: connections that predate tracing,
// receive-only connections, non-HTTP traffic, `boxtap version`, --max-header-bytes and
// --pretty.

// scriptedExchanges returns the server and client steps of exchanges from..to (1-based) of
// overflowExchange's strict request/response pairs, one segment each.
func scriptedExchanges(from, to int) (server, client []map[string]any) {
	for i := from; i <= to; i++ {
		req, resp := overflowExchange(i)
		server = append(server, step("recv_request", 1), step("send", resp))
		client = append(client, step("send", req), step("recv_bytes", len(resp)))
	}
	return server, client
}

// TestTraceConnectionAcceptedBeforeTracingIsFramedAndAttributed: the container's server
// accepted a keep-alive connection and answered on it before boxtap started. boxtap then
// attaches, and the next exchange on that connection is an event like any other: paired
// with its request and naming the server's process (the README: "accepted sockets and
// connections opened before boxtap started are attributed on their next send or receive").
func TestTraceConnectionAcceptedBeforeTracingIsFramedAndAttributed(t *testing.T) {
	e := newTraceEnv(t)
	server, client := scriptedExchanges(1, 2)
	client = append(client[:2:2], append([]map[string]any{step("wait_signal", true)}, client[2:]...)...)
	server = append(server, step("recv_until_close", true))
	client = append(client, step("close", true))

	addr := fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
	c := e.hxRun(t, "before", "host", "listening on", nil, "script-serve", "-addr", addr, "-script", scriptJSON(t, server))
	owner := containerInit(t, c) // read now: the container exits after its one connection
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := itest.StartProc(t, ctx, e.testapp, "script-client", "-addr", addr, "-script", scriptJSON(t, client))
	if err := cl.WaitStderr("waiting for SIGUSR1", containerTimeout); err != nil {
		t.Fatal(err)
	}
	// The first exchange is over and the connection stays open: now start tracing.
	p := e.startTrace(t, []*itest.Container{c})
	if err := cl.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if err := cl.Wait(time.Minute); err != nil {
		t.Fatalf("script-client: %v\n%s", err, cl.Stderr())
	}
	vs := viewEvents(t, stopTraceOK(t, p, nil)) // the server serves one connection, then exits
	requireCount(t, vs, 1)
	v := vs[0]
	if got := v.resp.Headers.Get("X-Seq"); got != "002" || v.direction != "egress" {
		t.Errorf("event X-Seq %q direction %q, want the second exchange's response (002), egress", got, v.direction)
	}
	if v.req == nil || v.req.URIPath != "/seq/002" {
		t.Errorf("event paired with %+v, want GET /seq/002", v.req)
	}
	checkOrigin(t, 0, v, c, e.image, owner)
}

// TestTraceReceiveOnlyConnectionHasNoOwner: a connection on which the container only ever
// receives (here an HTTP response it never asked for) yields an event that names the
// container but no process, as the README's limits say: the owner is read when the
// container sends.
func TestTraceReceiveOnlyConnectionHasNoOwner(t *testing.T) {
	e := newTraceEnv(t)
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Case: receive-only\r\n\r\nok"
	addr := fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
	c := e.hxRun(t, "recvonly", "host", "listening on", nil, "script-serve", "-addr", addr,
		"-script", scriptJSON(t, []map[string]any{step("recv_until_close", true)}))
	p := e.startTrace(t, []*itest.Container{c})
	runHostScriptClient(t, e, addr, []map[string]any{step("send", resp), step("close", true)})
	vs := viewEvents(t, stopTraceOK(t, p, nil)) // the server exits after its one connection
	requireCount(t, vs, 1)
	v, ev := vs[0], vs[0].ev
	if v.direction != "ingress" || v.resp.Headers.Get("X-Case") != "receive-only" {
		t.Errorf("event direction %q X-Case %q, want ingress, receive-only", v.direction, v.resp.Headers.Get("X-Case"))
	}
	if ev.ContainerID != c.ID || ev.Container.Name != c.Name {
		t.Errorf("event names container %q (%q), want %q (%q)", ev.ContainerID, ev.Container.Name, c.ID, c.Name)
	}
	if ev.ProcessName != "" || ev.HostProcessID != 0 || ev.ProcessID != 0 || ev.HostThreadID != 0 {
		t.Errorf("event names process %q (host pid %d, pid %d, host tid %d); a receive-only connection has no owner",
			ev.ProcessName, ev.HostProcessID, ev.ProcessID, ev.HostThreadID)
	}
}

// tlsRecord returns a TLS record header of the given content type and version followed by
// body. The bytes are all below 0x80 so that they pass through a script's JSON unchanged.
func tlsRecord(contentType byte, body string) string {
	return string([]byte{contentType, 0x03, 0x03, byte(len(body) >> 8), byte(len(body))}) + body
}

// TestTraceNonHTTPConnectionsProduceNoEvents: a connection whose first bytes are not HTTP
// (TLS-shaped records here) is never decoded: no event, not even for a record that carries
// an HTTP response in clear, nor for a later segment that starts with "HTTP/1.1". A plain
// HTTP server traced by the same boxtap shows that tracing works meanwhile.
func TestTraceNonHTTPConnectionsProduceNoEvents(t *testing.T) {
	e := newTraceEnv(t)
	const lookAlike = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	hello := tlsRecord(0x16, "\x01\x00\x00\x2b\x03\x03client-random-bytes-client-random\x00\x00\x02\x13\x01")
	serverHello := tlsRecord(0x16, "\x02\x00\x00\x26\x03\x03server-random-bytes-server-random\x00\x13\x01\x00")
	appData := tlsRecord(0x17, "GET / HTTP/1.1\r\nHost: tls.test\r\n\r\n")
	server := cat(
		[]map[string]any{step("recv_bytes", len(hello))}, sends(serverHello),
		[]map[string]any{step("recv_bytes", len(appData))}, sends(tlsRecord(0x17, lookAlike), lookAlike),
		[]map[string]any{step("close", true)})
	client := []map[string]any{step("send", hello), step("recv_bytes", len(serverHello)), step("send", appData), step("recv_until_close", true)}

	addr := fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
	tlsLike := e.hxRun(t, "nonhttp", "host", "listening on", nil, "script-serve", "-addr", addr, "-loop", "-script", scriptJSON(t, server))
	plain, url := e.hxServer(t, "nonhttp-control")
	p := e.startTrace(t, []*itest.Container{tlsLike, plain})
	runHostScriptClient(t, e, addr, client)
	checkOneSegmentPerSend(t, tlsLike, server) // the look-alike started a segment of its own
	e.hxGet(t, url+"/status/201", 1, 201)
	if _, err := p.WaitLines(1, traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	vs := viewEvents(t, stopTraceOK(t, p, syscall.SIGINT))
	for i, v := range vs {
		if v.ev.ContainerID == tlsLike.ID {
			t.Errorf("event %d from the non-HTTP connection: %s %s", i, v.direction, v.resp.Status)
		}
	}
	requireCount(t, vs, 1)
	if vs[0].ev.ContainerID != plain.ID || vs[0].resp.StatusCode != 201 {
		t.Errorf("the one event is %d from %s, want 201 from the control server %s", vs[0].resp.StatusCode, vs[0].ev.ContainerID, plain.ID)
	}
}

// cat joins script steps.
func cat(parts ...[]map[string]any) []map[string]any {
	var out []map[string]any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// TestVersionReportsBuildKernelAndFeatures: `boxtap version` prints the version set at
// build time, the running kernel's release, and whether the kernel (and the privilege
// boxtap runs with) has everything; it exits 0 either way.
func TestVersionReportsBuildKernelAndFeatures(t *testing.T) {
	itest.RequireBPF(t) // the "ok" case needs a capable kernel and root
	root, err := itest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	goBin, err := itest.GoBinary()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir() + "/boxtap"
	const ver = "9.8.7-itest"
	build := exec.Command(goBin, "build", "-trimpath", "-ldflags", "-X main.version="+ver, "-o", bin, "./cmd/boxtap")
	build.Dir = root
	build.Env = append(build.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build with a version: %v\n%s", err, out)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	kernel := "kernel: Linux " + unix.ByteSliceToString(u.Release[:])
	cases := []struct {
		name     string
		argv     []string
		features *regexp.Regexp
	}{
		{"root", []string{bin, "version"},
			regexp.MustCompile(`^kernel features: ok \(BTF, ring buffer, socket storage, cgroup_skb, bpf_cast_to_kern_ctx\)$`)},
		{"no privilege", []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "version"},
			regexp.MustCompile(`^kernel features: not usable: missing privilege: CAP_BPF .*CAP_PERFMON .*CAP_NET_ADMIN .*; run boxtap as root or grant it CAP_BPF\+CAP_PERFMON\+CAP_NET_ADMIN$`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, tc.argv[0], tc.argv[1:]...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("boxtap version: %v\n%s%s", err, out, stderr.String())
			}
			lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if len(lines) != 3 || lines[0] != "boxtap "+ver || lines[1] != kernel || !tc.features.MatchString(lines[2]) {
				t.Errorf("boxtap version printed\n%s\nwant the lines %q, %q and one matching %s", out, "boxtap "+ver, kernel, tc.features)
			}
			if stderr.Len() != 0 {
				t.Errorf("boxtap version wrote to stderr: %s", stderr.String())
			}
		})
	}
}

// TestTraceMaxHeaderBytesCutsLongerHeaderBlocks: with --max-header-bytes 1024 a header
// block of about 680 bytes is kept whole, one of about 1,330 bytes yields an event marked
// truncated with the header lines that fit, and the response after it on the same
// connection is framed as usual (its Content-Length was honoured). The default limit
// (16 KiB) keeps the same block whole.
func TestTraceMaxHeaderBytesCutsLongerHeaderBlocks(t *testing.T) {
	e := newTraceEnv(t)
	small, large := bigHead(3, 200), bigHead(6, 200)
	if len(small) >= 1024 || len(large) <= 1024 {
		t.Fatalf("header blocks of %d and %d bytes do not straddle the limit", len(small), len(large))
	}
	accepted := "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nX-Case: after\r\n\r\n"
	heads := []string{small, large, accepted}
	bodies := []string{"ok", "ok", ""}
	var server, client []map[string]any
	for i, h := range heads {
		path := fmt.Sprintf("/h%d", i+1)
		server = append(server, step("recv_request", 1))
		server = append(server, sends(h+bodies[i])...)
		client = append(client, step("send", request("GET", path)), step("recv_bytes", len(h)+len(bodies[i])))
	}
	server = append(server, step("recv_until_close", true))
	client = append(client, step("close", true))

	for _, tc := range []struct {
		name      string
		args      []string
		truncated []bool
	}{
		{"1024", []string{"--max-header-bytes", "1024"}, []bool{false, true, false}},
		{"default", nil, []bool{false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
			c := e.hxRun(t, "maxhdr", "host", "listening on", nil, "script-serve", "-addr", addr, "-script", scriptJSON(t, server))
			p := e.startTrace(t, []*itest.Container{c}, tc.args...)
			runHostScriptClient(t, e, addr, client)
			x := stopTrace(t, p, nil) // the server exits after its one connection
			if x.code != 0 {
				t.Fatalf("boxtap exited with status %d:\n%s", x.code, x.stderr)
			}
			vs := viewEvents(t, x.events)
			requireCount(t, vs, len(heads))
			cut := 0
			for i, v := range vs {
				want := parseScriptedResponse(t, heads[i])
				if v.req == nil || v.req.URIPath != fmt.Sprintf("/h%d", i+1) {
					t.Errorf("event %d paired with %+v, want /h%d", i, v.req, i+1)
				}
				if !tc.truncated[i] {
					checkScripted(t, i, v, want)
					continue
				}
				cut++
				checkTruncated(t, i, v, want)
				kept := len(want.proto) + 1 + len(want.status) + 2
				for name, values := range v.resp.Headers {
					for _, val := range values {
						kept += len(name) + 2 + len(val) + 2
					}
				}
				if kept > 1024 {
					t.Errorf("event %d: the status line and kept header lines take %d bytes, over --max-header-bytes 1024", i, kept)
				}
			}
			if sum := hxParseSummary(t, x.stderr); sum.truncated != uint64(cut) {
				t.Errorf("counts line: %d truncated header blocks, want %d", sum.truncated, cut)
			}
		})
	}
}

// TestTracePrettyPrintsIndentedEvents: --pretty writes each event as indented JSON, which
// still decodes as a stream of the same Tracee events.
func TestTracePrettyPrintsIndentedEvents(t *testing.T) {
	e := newTraceEnv(t)
	c, url := e.hxServer(t, "pretty")
	p := e.startTrace(t, []*itest.Container{c}, "--pretty")
	e.hxGet(t, url+"/status/404", 2, 404)
	// Not stopTrace: the lines are not events one by one; the stream is decoded below.
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(traceExitTimeout); err != nil {
		t.Fatalf("boxtap: %v\n%s", err, p.Stderr())
	}
	out := strings.Join(p.Lines(), "\n")
	dec := json.NewDecoder(strings.NewReader(out))
	var evs []trace.Event
	for {
		var ev trace.Event
		err := dec.Decode(&ev)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("--pretty output is not a stream of JSON events: %v\n%s", err, out)
		}
		evs = append(evs, ev)
	}
	vs := viewEvents(t, evs)
	requireCount(t, vs, 2)
	for i, v := range vs {
		if v.resp.StatusCode != 404 || v.req == nil || v.req.URIPath != "/status/404" {
			t.Errorf("event %d: status %d request %+v, want 404 for /status/404", i, v.resp.StatusCode, v.req)
		}
	}
	checkCountsLine(t, p.Stderr(), 2)
	// Indented as the README shows: one field per line, two spaces per level.
	for _, want := range []string{"{", `  "timestamp": `, `  "args": [`, `      "name": "metadata",`, "}"} {
		if !containsLine(p.Lines(), want) {
			t.Errorf("--pretty output has no line starting %q:\n%s", want, out)
		}
	}
	if n := len(p.Lines()); n < 40*len(evs) {
		t.Errorf("--pretty wrote %d lines for %d events; indented events take dozens of lines each", n, len(evs))
	}
}

// containsLine reports whether a line starts with prefix.
func containsLine(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// TestTraceMaxHeaderBytesRejectsNonPositive: a limit of 0 or less is bad input (one line,
// non-zero exit), not a silent fallback to the default.
func TestTraceMaxHeaderBytesRejectsNonPositive(t *testing.T) {
	e := newTraceEnv(t)
	c := e.startContainer(t, "sleeping", "sleep")
	for _, n := range []string{"0", "-5"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		runFailing(t, exec.CommandContext(ctx, e.boxtap, "trace", c.Name, "--max-header-bytes="+n), "--max-header-bytes "+n, "positive")
		cancel()
	}
}
