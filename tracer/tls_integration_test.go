//go:build amd64

// TLS capture is built for amd64 only (see bpf/tls_other.go).

package tracer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/internal/tlssource"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/cgroup"
	"github.com/boxtap/boxtap/runtime/container"
)

// tlsSeen is what a test checks of one TLS event.
type tlsSeen struct {
	dir           output.Direction
	status        int
	uri           string
	header        string // X-Boxtap-Tls
	contentLength int64
	sport, dport  uint16
	comm          string
	tls           bool
	hostPID       uint32
	src, dst      string
}

type tlsRecordingSink struct {
	mu   sync.Mutex
	seen []tlsSeen
}

func (s *tlsRecordingSink) Write(e *output.Event) error {
	v := tlsSeen{dir: e.Direction, status: e.Response.StatusCode, contentLength: e.Response.ContentLength,
		sport: e.Meta.SrcPort, dport: e.Meta.DstPort, comm: e.ProcessName, tls: e.TLS, hostPID: e.HostProcessID,
		src: e.Meta.SrcIP.String(), dst: e.Meta.DstIP.String()}
	if e.Request != nil {
		v.uri = strings.Clone(e.Request.URIPath)
	}
	for _, h := range e.Response.Headers {
		if h.Name == "X-Boxtap-Tls" {
			v.header = strings.Clone(h.Value)
		}
	}
	s.mu.Lock()
	s.seen = append(s.seen, v)
	s.mu.Unlock()
	return nil
}
func (s *tlsRecordingSink) Flush() error { return nil }
func (s *tlsRecordingSink) Close() error { return nil }

// snapshot copies the events recorded so far.
func (s *tlsRecordingSink) snapshot() []tlsSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tlsSeen(nil), s.seen...)
}

// tlsTracing is a tracer with a TLS source tracing one cgroup into a
// recording sink, as the TLS integration tests set it up.
type tlsTracing struct {
	tr   *Tracer
	src  *tlssource.Source
	tg   *Target
	sink *tlsRecordingSink

	mu       sync.Mutex
	warnings []error
}

// startTLSTracing loads the programs, opens a TLS source (watching for new
// mappings and processes if watch) and adds tracedDir as info. The source
// and the programs are closed at cleanup.
func startTLSTracing(t *testing.T, tracedDir string, info container.Info, watch bool) *tlsTracing {
	t.Helper()
	coll, err := bpf.Load(bpf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { coll.Close() })
	src, err := tlssource.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	x := &tlsTracing{src: src, sink: &tlsRecordingSink{}}
	if watch {
		go src.Watch(x.warn)
	}
	x.tr = New(coll, Options{TLS: src, OnError: x.warn})
	id, err := cgroup.ID(tracedDir)
	if err != nil {
		t.Fatal(err)
	}
	x.tg, err = x.tr.Add(info, tracedDir, id, x.sink)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func (x *tlsTracing) warn(err error) {
	x.mu.Lock()
	x.warnings = append(x.warnings, err)
	x.mu.Unlock()
}

// warningsSoFar copies the errors reported so far.
func (x *tlsTracing) warningsSoFar() []error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]error(nil), x.warnings...)
}

// drained waits until the tracer has handled what the kernel sent so far
// and returns the events recorded, failing unless there are exactly n.
func (x *tlsTracing) drained(t *testing.T, n int) []tlsSeen {
	t.Helper()
	x.tr.drain(context.Background())
	seen := x.sink.snapshot()
	if len(seen) != n {
		t.Fatalf("got %d events, want %d; warnings: %v", len(seen), n, x.warningsSoFar())
	}
	return seen
}

// run runs the tracer until the function it returns is called.
func (x *tlsTracing) run(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- x.tr.Run(ctx) }()
	return func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Error(err)
		}
	}
}

// writeSelfSigned writes a fresh self-signed certificate for 127.0.0.1 and
// its key, made with Go's crypto, into dir.
func writeSelfSigned(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "boxtap-tls-test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// testCgroup creates a cgroup of the test's own and returns its directory
// and an open fd for starting processes in it.
func testCgroup(t *testing.T, mount, name string) (string, *os.File) {
	t.Helper()
	dir := filepath.Join(mount, fmt.Sprintf("boxtap-tls-%s-%d", name, os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("creating cgroup %s: %v", dir, err)
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
		deadline := time.Now().Add(5 * time.Second)
		for os.Remove(dir) != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	})
	return dir, f
}

// startNginxTLS starts Debian's nginx, one process, serving HTTPS on a free
// loopback port in the cgroup cg, and waits until it accepts.
func startNginxTLS(t *testing.T, cg *os.File) (port int, pid int) {
	t.Helper()
	return startNginxTLSMode(t, cg, "off")
}

// startNginxTLSMode is startNginxTLS with master_process set to master:
// "on" makes nginx fork a worker that serves the requests.
func startNginxTLSMode(t *testing.T, cg *os.File, master string) (port int, pid int) {
	t.Helper()
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		nginx = "/usr/sbin/nginx"
	}
	_, err = os.Stat(nginx)
	itest.Require(t, err == nil, "needs nginx (apt-get install nginx-light or nginx): %v", err)
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	port = itest.FreePort(t)
	conf := fmt.Sprintf(`daemon off;
master_process %[5]s;
worker_processes 1;
error_log stderr warn;
pid %[1]s/nginx.pid;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:%[2]d ssl;
		ssl_certificate %[3]s;
		ssl_certificate_key %[4]s;
		location /big { default_type application/octet-stream; add_header X-Boxtap-Tls big always; alias %[1]s/big; }
		location / { add_header X-Boxtap-Tls small always; return 200 "hello over tls\n"; }
	}
}
`, dir, port, cert, key, master)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-c", confPath, "-p", dir, "-e", "stderr")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on port %d: %v; stderr: %s", port, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return port, cmd.Process.Pid
}

// pythonTLSClient sends n GET requests for path on one keep-alive HTTPS
// connection with Python's ssl module, in cgroup cg, and returns the local
// port it used.
func pythonTLSClient(t *testing.T, cg *os.File, port, n int, path string) int {
	t.Helper()
	py := "/usr/bin/python3"
	_, err := os.Stat(py)
	itest.Require(t, err == nil, "needs Debian's python3 (apt-get install python3): %v", err)
	script := `
import http.client, ssl, sys
port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
c.connect()
print(c.sock.getsockname()[1], flush=True)
for i in range(n):
    c.request("GET", path + ("" if path.startswith("/big") else str(i)))
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit("status %d" % r.status)
c.close()
`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", script, strconv.Itoa(port), strconv.Itoa(n), path)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("python client: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("python client: %v", err)
	}
	lport, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("python client printed %q, not its port", out)
	}
	return lport
}

// TestIntegrationTLSNginxResponsesFromTracedCgroupOnly traces nginx with
// ssl (HTTP/1.1) in one cgroup while a Python ssl client in an untraced
// cgroup, using the same libssl.so.3 file, calls it: every response is one
// egress event of nginx with tls=true and the test's own status, header,
// ports and process; the untraced client's SSL_read calls yield nothing.
// It covers 1,000 requests on one keep-alive connection and 1 MiB responses.
func TestIntegrationTLSNginxResponsesFromTracedCgroupOnly(t *testing.T) {
	mount := itest.RequireBPF(t)
	tracedDir, tracedFD := testCgroup(t, mount, "traced")
	_, untracedFD := testCgroup(t, mount, "untraced")
	port, nginxPID := startNginxTLS(t, tracedFD)

	x := startTLSTracing(t, tracedDir, container.Info{ID: "tlstest", Name: "boxtap-tls-test"}, false)
	if x.src.Instrumented() != 1 {
		t.Fatalf("instrumented %d (process, library) pairs for nginx, want 1 (libssl.so.3); warnings: %v", x.src.Instrumented(), x.warningsSoFar())
	}
	defer x.run(t)()

	for _, tc := range []struct {
		name         string
		n            int
		path, header string
		length       int64
	}{
		{"1000 requests on one keep-alive connection", 1000, "/r", "small", 15},
		{"1 MiB responses", 5, "/big", "big", 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x.sink.mu.Lock()
			x.sink.seen = nil
			x.sink.mu.Unlock()
			lport := pythonTLSClient(t, untracedFD, port, tc.n, tc.path)
			x.tr.drain(context.Background())
			seen := x.sink.snapshot()
			if len(seen) != tc.n {
				t.Fatalf("got %d events, want %d (one per response, from nginx only); warnings: %v", len(seen), tc.n, x.warningsSoFar())
			}
			for i, v := range seen {
				wantURI := tc.path
				if tc.path != "/big" {
					wantURI = tc.path + strconv.Itoa(i)
				}
				want := tlsSeen{dir: output.DirectionEgress, status: 200, uri: wantURI, header: tc.header, contentLength: tc.length,
					sport: uint16(port), dport: uint16(lport), comm: "nginx", tls: true, hostPID: uint32(nginxPID),
					src: "127.0.0.1", dst: "127.0.0.1"}
				if v != want {
					t.Fatalf("event %d:\n got %+v\nwant %+v", i, v, want)
				}
			}
		})
	}
	if lost, err := x.src.Lost(); err != nil || lost != 0 {
		t.Errorf("TLS records lost: %d (%v)", lost, err)
	}
	if err := x.tr.Remove(context.Background(), x.tg); err != nil {
		t.Error(err)
	}
}

// TestIntegrationTLSClientStartedAfterAttachIsInstrumented traces an empty
// cgroup, then starts a Python ssl client in it (against nginx in an
// untraced cgroup): the library it loads is instrumented from the notice
// of its dynamic loader's uprobe, set at its exec, and each response it reads (SSL_read_ex) is one ingress
// event of python3 with tls=true.
func TestIntegrationTLSClientStartedAfterAttachIsInstrumented(t *testing.T) {
	mount := itest.RequireBPF(t)
	tracedDir, tracedFD := testCgroup(t, mount, "client-traced")
	_, untracedFD := testCgroup(t, mount, "server-untraced")
	port, _ := startNginxTLS(t, untracedFD)

	x := startTLSTracing(t, tracedDir, container.Info{ID: "tlsclient", Name: "boxtap-tls-client"}, true)
	if x.src.Instrumented() != 0 {
		t.Fatalf("%d (process, library) pairs instrumented in an empty cgroup", x.src.Instrumented())
	}
	defer x.run(t)()

	// The client loads ssl, then waits for a line on stdin before its
	// first connection: the test sends it once the library is instrumented.
	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer ccancel()
	const n = 50
	cmd := exec.CommandContext(cctx, "/usr/bin/python3", "-c", `
import http.client, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
sys.stdin.readline()
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=30)
c.connect()
print(c.sock.getsockname()[1], flush=True)
for i in range(int(sys.argv[2])):
    c.request("GET", "/c%d" % i); r = c.getresponse(); r.read()
    if r.status != 200: sys.exit("status %d" % r.status)
`, strconv.Itoa(port), strconv.Itoa(n))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(tracedFD.Fd())}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for x.src.Instrumented() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the client's libssl was not instrumented after it started; warnings: %v", x.warningsSoFar())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python client: %v", err)
	}
	lport, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("client printed %q", out.String())
	}
	x.wantPythonClientEvents(t, n, "/c", port, lport, cmd.Process.Pid)
}

// TestIntegrationTLSRunningProcessLoadingSSLLaterIsInstrumented: a Python
// process already running in the cgroup when it is traced, without libssl,
// imports ssl afterwards (dlopen): no exec, fork or new process tells
// boxtap, only the uprobe set on the process's dynamic loader when it was
// first scanned. The library is instrumented and each response the client
// reads is one ingress event of that process.
func TestIntegrationTLSRunningProcessLoadingSSLLaterIsInstrumented(t *testing.T) {
	mount := itest.RequireBPF(t)
	tracedDir, tracedFD := testCgroup(t, mount, "dlopen-traced")
	_, untracedFD := testCgroup(t, mount, "dlopen-untraced")
	port, _ := startNginxTLS(t, untracedFD)

	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer ccancel()
	const n = 20
	cmd := exec.CommandContext(cctx, "/usr/bin/python3", "-c", `
import sys
print("running", flush=True)
sys.stdin.readline()
import http.client, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
print("loaded", flush=True)
sys.stdin.readline()
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=30)
c.connect()
print(c.sock.getsockname()[1], flush=True)
for i in range(int(sys.argv[2])):
    c.request("GET", "/d%d" % i); r = c.getresponse(); r.read()
    if r.status != 200: sys.exit("status %d" % r.status)
`, strconv.Itoa(port), strconv.Itoa(n))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(tracedFD.Fd())}
	stdin, out, stderr := itest.StartPiped(t, cmd)
	line := func(want string) string {
		t.Helper()
		if !out.Scan() || (want != "" && out.Text() != want) {
			t.Fatalf("python client printed %q, want %q: %v; stderr: %s", out.Text(), want, out.Err(), stderr.String())
		}
		return out.Text()
	}
	line("running")
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if libs, err := tlssource.OpenSSLPaths(bytes.NewReader(maps)); err != nil || len(libs) != 0 {
		t.Fatalf("python3 mapped %q before importing ssl (%v)", libs, err)
	}

	x := startTLSTracing(t, tracedDir, container.Info{ID: "tlsdlopen", Name: "boxtap-tls-dlopen"}, true)
	if x.src.Instrumented() != 0 {
		t.Fatalf("%d (process, library) pairs instrumented before python3 loaded ssl", x.src.Instrumented())
	}
	defer x.run(t)()
	if _, err := stdin.Write([]byte("import\n")); err != nil {
		t.Fatal(err)
	}
	line("loaded")
	deadline := time.Now().Add(30 * time.Second)
	for x.src.Instrumented() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d (process, library) pairs instrumented after python3 loaded ssl, want 1; warnings: %v", x.src.Instrumented(), x.warningsSoFar())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	lport, err := strconv.Atoi(line(""))
	if err != nil {
		t.Fatalf("python client printed %q, not its port", out.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python client: %v; stderr: %s", err, stderr.String())
	}
	x.wantPythonClientEvents(t, n, "/d", port, lport, cmd.Process.Pid)
}

// TestIntegrationTLSForkedWorkerStartedAfterAttachIsInstrumented starts
// nginx with a master process in a cgroup already traced: the master is
// instrumented when it maps libssl, the worker it forks when the kernel
// reports the fork, and each response the worker sends is one event.
func TestIntegrationTLSForkedWorkerStartedAfterAttachIsInstrumented(t *testing.T) {
	mount := itest.RequireBPF(t)
	tracedDir, tracedFD := testCgroup(t, mount, "fork-traced")
	_, untracedFD := testCgroup(t, mount, "fork-untraced")
	x := startTLSTracing(t, tracedDir, container.Info{ID: "tlsfork", Name: "boxtap-tls-fork"}, true)
	defer x.run(t)()
	port, masterPID := startNginxTLSMode(t, tracedFD, "on")
	// The master and its worker: two processes mapping libssl.so.3.
	deadline := time.Now().Add(30 * time.Second)
	for x.src.Instrumented() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d (process, library) pairs instrumented, want 2 (nginx master and worker); warnings: %v", x.src.Instrumented(), x.warningsSoFar())
		}
		time.Sleep(5 * time.Millisecond)
	}
	const n = 30
	lport := pythonTLSClient(t, untracedFD, port, n, "/w")
	seen := x.drained(t, n)
	for i, v := range seen {
		if v.hostPID == uint32(masterPID) {
			t.Fatalf("event %d names the master (pid %d), not the worker", i, masterPID)
		}
		v.hostPID = 0
		want := tlsSeen{dir: output.DirectionEgress, status: 200, uri: "/w" + strconv.Itoa(i), header: "small", contentLength: 15,
			sport: uint16(port), dport: uint16(lport), comm: "nginx", tls: true, src: "127.0.0.1", dst: "127.0.0.1"}
		if v != want {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, v, want)
		}
	}
	if err := x.tr.Remove(context.Background(), x.tg); err != nil {
		t.Error(err)
	}
}

// wantPythonClientEvents requires the n events a python3 client (pid) made
// on one connection from lport to the nginx on port, GET prefix0 to
// prefix<n-1>, each an ingress TLS event of that process, then stops
// tracing the cgroup.
func (x *tlsTracing) wantPythonClientEvents(t *testing.T, n int, prefix string, port, lport, pid int) {
	t.Helper()
	for i, v := range x.drained(t, n) {
		want := tlsSeen{dir: output.DirectionIngress, status: 200, uri: prefix + strconv.Itoa(i), header: "small", contentLength: 15,
			sport: uint16(port), dport: uint16(lport), comm: "python3", tls: true, hostPID: uint32(pid),
			src: "127.0.0.1", dst: "127.0.0.1"}
		if v != want {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, v, want)
		}
	}
	if err := x.tr.Remove(context.Background(), x.tg); err != nil {
		t.Error(err)
	}
}
