//go:build amd64

// TLS capture is built for amd64 only (see bpf/tls_other.go).

package main

import (
	"context"
	"encoding/json"
	"fmt"
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

// startNginxOnHost runs Debian's nginx (one process, HTTPS on port, the
// configuration of tlsTestDir) as a plain host process of the test,
// untraced, and waits until it accepts.
func startNginxOnHost(t *testing.T, port int) {
	t.Helper()
	_, err := os.Stat("/usr/sbin/nginx")
	itest.Require(t, err == nil, "needs Debian's nginx (apt-get install nginx): %v", err)
	dir, conf := tlsTestDir(t, port, "ssl")
	srv := exec.Command("/usr/sbin/nginx", "-c", conf, "-p", dir, "-e", "stderr")
	log, err := os.Create(filepath.Join(dir, "nginx.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	srv.Stdout, srv.Stderr = log, log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	waitListening(t, port, func() string { b, _ := os.ReadFile(log.Name()); return "nginx: " + string(b) })
}

// uprobesOf counts the uprobe and uretprobe perf events that process owner
// holds on the libssl files of process pid (boxtap attaches through
// /proc/PID/root/...), as the kernel lists them (bpftool perf show); the
// one on the process's dynamic loader is not counted.
func uprobesOf(t *testing.T, owner, pid int) int {
	t.Helper()
	out, err := exec.Command("bpftool", "-j", "perf", "show").Output()
	if err != nil {
		t.Fatalf("bpftool perf show: %v", err)
	}
	var evs []struct {
		PID      int    `json:"pid"`
		FDType   string `json:"fd_type"`
		Filename string `json:"filename"`
	}
	if err := json.Unmarshal(out, &evs); err != nil {
		t.Fatalf("bpftool perf show: %v\n%s", err, out)
	}
	n := 0
	for _, ev := range evs {
		if ev.PID == owner && strings.HasPrefix(ev.FDType, "uprobe") || ev.PID == owner && strings.HasPrefix(ev.FDType, "uretprobe") {
			if strings.HasPrefix(ev.Filename, fmt.Sprintf("/proc/%d/root/", pid)) && strings.HasPrefix(filepath.Base(ev.Filename), "libssl.so") {
				n++
			}
		}
	}
	return n
}

// hostPIDOf finds the host pid of the process named comm in the cgroup of
// container pid ctrPID, other than ctrPID itself.
func hostPIDOf(t *testing.T, ctrPID int, comm string) int {
	t.Helper()
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", ctrPID))
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir("/proc")
	for _, en := range entries {
		pid, err := strconv.Atoi(en.Name())
		if err != nil || pid == ctrPID {
			continue
		}
		c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		g, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if strings.TrimSpace(string(c)) == comm && string(g) == string(cg) {
			return pid
		}
	}
	t.Fatalf("no %s process in the cgroup of %d", comm, ctrPID)
	return 0
}

// TestIntegrationTraceTLSDockerExecClient traces a running container with
// --tls, then runs an HTTPS client in it with "docker exec" (Python's ssl,
// the host's libssl.so.3 through the container's /usr) against the test's
// own nginx on the host: the new process is instrumented when it maps
// libssl (the client waits, after loading ssl, until the kernel lists
// boxtap's uprobes for it), and each of its 50 responses on one keep-alive
// connection is one ingress event of python3 in that container, with
// tls=true; the container's own nginx, unused, yields none.
func TestIntegrationTraceTLSDockerExecClient(t *testing.T) {
	_, err := exec.LookPath("bpftool")
	itest.Require(t, err == nil, "needs bpftool on PATH (apt-get install bpftool)")
	e := newTraceEnv(t)
	srvPort, ctrPort := itest.FreePort(t), itest.FreePort(t)
	startNginxOnHost(t, srvPort)
	traced := e.startHostNginx(t, ctrPort, "ssl")
	p := e.startTrace(t, []*itest.Container{traced}, "--tls", "--format", "json")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 50
	cmd := exec.CommandContext(ctx, "docker", "exec", "-i", traced.Name, "/usr/bin/python3", "-c", `
import http.client, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
print("ready", flush=True)
sys.stdin.readline()
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=30)
c.connect()
print(c.sock.getsockname()[1], flush=True)
for i in range(int(sys.argv[2])):
    c.request("GET", "/exec/%d" % i); r = c.getresponse(); r.read()
    if r.status != 201: sys.exit("status %d" % r.status)
`, strconv.Itoa(srvPort), strconv.Itoa(n))
	stdin, out, stderr := itest.StartPiped(t, cmd)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("docker exec python3: %q, %v; stderr: %s", out.Text(), out.Err(), stderr.String())
	}
	py := hostPIDOf(t, traced.PID(), "python3")
	for got := uprobesOf(t, p.PID(), py); got != 9; got = uprobesOf(t, p.PID(), py) {
		// SSL_write, SSL_read and their _ex forms, entry and return, and SSL_free.
		if ctx.Err() != nil || got > 9 {
			t.Fatalf("%d uprobes of boxtap on python3 (%d), want 9; stderr: %s", got, py, p.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	if !out.Scan() {
		t.Fatalf("docker exec python3 printed no port: %v; stderr: %s", out.Err(), stderr.String())
	}
	lport, err := strconv.Atoi(out.Text())
	if err != nil {
		t.Fatalf("docker exec python3 printed %q", out.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("docker exec python3: %v; stderr: %s", err, stderr.String())
	}
	events := stopTraceN(t, p, n).events
	for i, ev := range events {
		got := fmt.Sprint(tlsSummary(ev), ev.ProcessName, ev.HostProcessID, ev.Container.Name)
		want := fmt.Sprint(fmt.Sprintf("tls=true 201 /exec/%d 127.0.0.1:%d -> 127.0.0.1:%d", i, srvPort, lport), "python3", py, traced.Name)
		if got != want {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// tlsSummary is an event's tls flag, status, path and addresses.
func tlsSummary(ev trace.Event) string {
	meta, resp, req, tls := tlsArgs(ev)
	return fmt.Sprintf("tls=%t %d %s %s:%d -> %s:%d", tls, resp.StatusCode, req.URIPath, meta.SrcIP, meta.SrcPort, meta.DstIP, meta.DstPort)
}
