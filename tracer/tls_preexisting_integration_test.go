//go:build amd64

package tracer

import (
	"context"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
)

// TestIntegrationTLSConnectionOpenedBeforeTracing: a client (untraced)
// opens an HTTPS connection to nginx and makes 7 requests before nginx's
// cgroup is traced, then 30 more on the same connection: the connection is
// attributed from nginx's next SSL call on (its socket found from that
// call's system call), and exactly the 30 later responses are events, with
// the connection's ports; none of the 7 earlier ones.
func TestIntegrationTLSConnectionOpenedBeforeTracing(t *testing.T) {
	mount := itest.RequireBPF(t)
	tracedDir, tracedFD := testCgroup(t, mount, "pre-traced")
	_, untracedFD := testCgroup(t, mount, "pre-untraced")
	port, nginxPID := startNginxTLS(t, tracedFD)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const before, after = 7, 30
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "-c", `
import http.client, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=30)
def get(i):
    c.request("GET", "/pre%d" % i); r = c.getresponse(); r.read()
    if r.status != 200: sys.exit("status %d" % r.status)
c.connect()
for i in range(int(sys.argv[2])): get(i)
print(c.sock.getsockname()[1], flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3])): get(i)
`, strconv.Itoa(port), strconv.Itoa(before), strconv.Itoa(after))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(untracedFD.Fd())}
	stdin, out, stderr := itest.StartPiped(t, cmd)
	if !out.Scan() {
		t.Fatalf("python client printed no port: %v; stderr: %s", out.Err(), stderr.String())
	}
	lport, err := strconv.Atoi(out.Text())
	if err != nil {
		t.Fatalf("python client printed %q", out.Text())
	}

	x := startTLSTracing(t, tracedDir, container.Info{ID: "tlspre", Name: "boxtap-tls-pre"}, false)
	if x.src.Instrumented() != 1 {
		t.Fatalf("instrumented %d (process, library) pairs for nginx, want 1; warnings: %v", x.src.Instrumented(), x.warningsSoFar())
	}
	stop := x.run(t)
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python client: %v; stderr: %s", err, stderr.String())
	}
	x.tr.drain(context.Background())
	stop()
	seen := x.sink.snapshot()
	if len(seen) != after {
		t.Fatalf("got %d events, want %d (the responses after tracing began); warnings: %v", len(seen), after, x.warningsSoFar())
	}
	for i, v := range seen {
		want := tlsSeen{dir: output.DirectionEgress, status: 200, uri: "/pre" + strconv.Itoa(before+i), header: "small", contentLength: 15,
			sport: uint16(port), dport: uint16(lport), comm: "nginx", tls: true, hostPID: uint32(nginxPID),
			src: "127.0.0.1", dst: "127.0.0.1"}
		if v != want {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, v, want)
		}
	}
	if err := x.tr.Remove(context.Background(), x.tg); err != nil {
		t.Error(err)
	}
}
