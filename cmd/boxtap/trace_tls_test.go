//go:build amd64

// TLS capture is built for amd64 only (see bpf/tls_other.go).

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aquasecurity/tracee/types/trace"
	"github.com/boxtap/boxtap/internal/itest"
)

// tlsTestDir writes a self-signed certificate for 127.0.0.1 (Go crypto)
// and an nginx configuration into a fresh directory: nginx listens on port
// with the listen parameters given ("ssl", "ssl http2", "http2" for h2c
// with prior knowledge). Every response has X-Boxtap-Tls; /h2/missing is
// answered 404, anything else 201.
func tlsTestDir(t *testing.T, port int, listen string) (dir, conf string) {
	t.Helper()
	dir = t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "boxtap-tls-test"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		"nginx.conf": []byte(fmt.Sprintf(`daemon off;
master_process off;
user root;
error_log stderr warn;
pid %[1]s/nginx-%[2]d.pid;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body-%[2]d;
	proxy_temp_path %[1]s/proxy-%[2]d;
	fastcgi_temp_path %[1]s/fastcgi-%[2]d;
	uwsgi_temp_path %[1]s/uwsgi-%[2]d;
	scgi_temp_path %[1]s/scgi-%[2]d;
	server {
		listen 127.0.0.1:%[2]d %[3]s;
		ssl_certificate %[1]s/cert.pem;
		ssl_certificate_key %[1]s/key.pem;
		add_header X-Boxtap-Tls "port %[2]d" always;
		location / { return 201 "created\n"; }
		location = /h2/missing { return 404; }
	}
}
`, dir, port, listen)),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, filepath.Join(dir, "nginx.conf")
}

// startHostNginx runs Debian's nginx of the host in a container of the
// test image, with the host's /usr, /lib and /lib64 mounted read-only: the
// container maps the very libssl.so.3 file the host uses. listen is as for
// tlsTestDir.
func (e *traceEnv) startHostNginx(t *testing.T, port int, listen string) *itest.Container {
	t.Helper()
	_, err := os.Stat("/usr/sbin/nginx")
	itest.Require(t, err == nil, "needs Debian's nginx (apt-get install nginx): %v", err)
	dir, conf := tlsTestDir(t, port, listen)
	c := e.docker.Run(t, itest.RunOpts{Image: e.image, Network: "host",
		Flags: []string{"--entrypoint", "/usr/sbin/nginx",
			"-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro",
			"-v", "/etc/passwd:/etc/passwd:ro", "-v", "/etc/group:/etc/group:ro", "-v", dir + ":" + dir},
		Args: []string{"-c", conf, "-p", dir, "-e", "stderr"}})
	deadline := time.Now().Add(containerTimeout)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			conn.Close()
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx in container %s does not listen on %d: %v; log: %s", c.Name, port, err, c.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpsGets sends n GET requests for prefix0, prefix1, ... on one keep-alive
// connection with Python's ssl module (the host's libssl.so.3), each
// answered with status want, and returns the client's local port.
func httpsGets(t *testing.T, port, n int, prefix string, want int) int {
	t.Helper()
	_, err := os.Stat("/usr/bin/python3")
	itest.Require(t, err == nil, "needs Debian's python3: %v", err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", "-c", `
import http.client, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=30)
c.connect()
print(c.sock.getsockname()[1], flush=True)
for i in range(int(sys.argv[2])):
    c.request("GET", "%s%d" % (sys.argv[4], i)); r = c.getresponse(); r.read()
    if r.status != int(sys.argv[3]): sys.exit("status %d" % r.status)
`, strconv.Itoa(port), strconv.Itoa(n), strconv.Itoa(want), prefix).Output()
	if err != nil {
		t.Fatalf("python https client: %v", err)
	}
	lport, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("python client printed %q", out)
	}
	return lport
}

// TestIntegrationTraceTLSReportsOnlyTheTracedContainersHTTPS runs `boxtap
// trace --tls` on one of two containers whose nginx maps the same
// libssl.so.3 file (the host's, which the untraced client uses too): every
// HTTPS response of the traced container is one event with tls=true and the
// test's own status, header, path, ports and process; the other container
// and the client yield none.
func TestIntegrationTraceTLSReportsOnlyTheTracedContainersHTTPS(t *testing.T) {
	e := newTraceEnv(t)
	tracedPort, otherPort := itest.FreePort(t), itest.FreePort(t)
	traced := e.startHostNginx(t, tracedPort, "ssl")
	e.startHostNginx(t, otherPort, "ssl")
	p := e.startTrace(t, []*itest.Container{traced}, "--tls", "--format", "json")
	const n = 20
	lport := httpsGets(t, tracedPort, n, "/tls/", 201)
	httpsGets(t, otherPort, 7, "/tls/", 201)
	events := stopTraceN(t, p, n).events
	for i, ev := range events {
		meta, resp, req, tls := tlsArgs(ev)
		if ev.ArgsNum != len(ev.Args) {
			t.Errorf("event %d: argsNum %d, %d args", i, ev.ArgsNum, len(ev.Args))
		}
		got := fmt.Sprint(tls, resp.StatusCode, resp.Headers.Get("X-Boxtap-Tls"), req.URIPath, meta.SrcIP, meta.SrcPort, meta.DstIP, meta.DstPort, ev.ProcessName, ev.Container.Name)
		want := fmt.Sprint(true, 201, fmt.Sprintf("port %d", tracedPort), fmt.Sprintf("/tls/%d", i), "127.0.0.1", tracedPort, "127.0.0.1", lport, "nginx", traced.Name)
		if got != want {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// tlsArgs is an event's packet metadata, HTTP response and request, and tls
// flag (zero values for those it lacks).
func tlsArgs(ev trace.Event) (meta trace.PktMeta, resp trace.ProtoHTTPResponse, req trace.ProtoHTTPRequest, tls bool) {
	for _, a := range ev.Args {
		switch a.Name {
		case "metadata":
			meta, _ = a.Value.(trace.PktMeta)
		case "http_response":
			resp, _ = a.Value.(trace.ProtoHTTPResponse)
		case "http_request":
			req, _ = a.Value.(trace.ProtoHTTPRequest)
		case "tls":
			tls, _ = a.Value.(bool)
		}
	}
	return meta, resp, req, tls
}
