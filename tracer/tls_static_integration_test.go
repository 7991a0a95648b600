//go:build amd64

package tracer

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
)

// buildStaticTLSServer compiles testdata/tls_static_server.c with gcc,
// linked statically against Debian's libssl.a and libcrypto.a.
func buildStaticTLSServer(t *testing.T) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	itest.Require(t, err == nil, "needs gcc (apt-get install gcc)")
	_, err = os.Stat("/usr/lib/x86_64-linux-gnu/libssl.a")
	itest.Require(t, err == nil, "needs OpenSSL's static libraries (apt-get install libssl-dev): %v", err)
	bin := filepath.Join(t.TempDir(), "tls_static_server")
	out, err := exec.Command(gcc, "-O2", "-static", "-o", bin, "testdata/tls_static_server.c", "-lssl", "-lcrypto").CombinedOutput()
	if err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

// TestIntegrationTLSStaticOpenSSLServer traces a server whose OpenSSL is
// linked into its executable (no libssl.so mapped): the executable is
// instrumented by its own SSL_read and SSL_write symbols, and each of the
// 20 responses a Python client (untraced, the shared libssl.so.3) reads on
// one keep-alive connection is one egress event of the server, tls=true,
// with the test's ports and paths. The server runs before boxtap attaches
// (found by the scan at attach), or is started after it in the traced
// cgroup (found at its exec: it maps no library, so no mmap notice names it).
func TestIntegrationTLSStaticOpenSSLServer(t *testing.T) {
	mount := itest.RequireBPF(t)
	bin := buildStaticTLSServer(t)
	for _, later := range []bool{false, true} {
		name := "running-at-attach"
		if later {
			name = "started-after-attach"
		}
		t.Run(name, func(t *testing.T) { staticOpenSSLServer(t, mount, bin, later) })
	}
}

func staticOpenSSLServer(t *testing.T, mount, bin string, later bool) {
	tracedDir, tracedFD := testCgroup(t, mount, "static-traced")
	_, untracedFD := testCgroup(t, mount, "static-untraced")
	cert, key := writeSelfSigned(t, t.TempDir())
	port := itest.FreePort(t)
	srv := exec.Command(bin, strconv.Itoa(port), cert, key)
	srv.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(tracedFD.Fd())}
	var stderr strings.Builder
	srv.Stderr = &stderr
	var x *tlsTracing
	if later {
		x = startTLSTracing(t, tracedDir, container.Info{ID: "tlsstatic", Name: "boxtap-tls-static"}, true)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the static server does not listen on %d: %v; stderr: %s", port, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	if !later {
		x = startTLSTracing(t, tracedDir, container.Info{ID: "tlsstatic", Name: "boxtap-tls-static"}, false)
	}
	if later { // its exec notice is handled on Watch's goroutine: wait for it, bounded
		for deadline := time.Now().Add(10 * time.Second); x.src.Instrumented() == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if x.src.Instrumented() != 1 {
		t.Fatalf("instrumented %d (process, file) pairs for the static server, want 1 (its executable); warnings: %v", x.src.Instrumented(), x.warningsSoFar())
	}
	defer x.run(t)()
	const n = 20
	lport := pythonTLSClient(t, untracedFD, port, n, "/s")
	seen := x.drained(t, n)
	for i, v := range seen {
		want := tlsSeen{dir: output.DirectionEgress, status: 200, uri: "/s" + strconv.Itoa(i), header: "static", contentLength: 15,
			sport: uint16(port), dport: uint16(lport), comm: "tls_static_serv", tls: true, hostPID: uint32(srv.Process.Pid),
			src: "127.0.0.1", dst: "127.0.0.1"}
		if v != want {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, v, want)
		}
	}
	if err := x.tr.Remove(context.Background(), x.tg); err != nil {
		t.Error(err)
	}
}
