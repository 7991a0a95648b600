package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/runtime/containerd/ctrtest"
)

// gapLine is watch's --debug line for an attachment after a start event.
var gapLine = regexp.MustCompile(`debug: attached \S+ \(([0-9a-z-]+)\) (\S+) after its start`)

// TestWatchHundredContainers: one watch process, with one eBPF collection,
// traces 100 containers running at once: every one is attached, and every
// one's response to a request of its own lands in its own file. The first
// 20 are started one by one to measure the start-to-attach gap (logged, not
// asserted).
func TestWatchHundredContainers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 100 containers")
	}
	e := newWatchEnv(t, "")
	ns := e.namespace(t)
	out := filepath.Join(t.TempDir(), "out")
	p := e.startBoxtap(t, "watch", "--runtime", "containerd", "--namespace", ns, "--debug", "--output-dir", out)
	if err := p.WaitStderr("debug: connected to containerd", traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	e.ctrd.TestImage(t, ns) // import before measuring

	const total, measured = 100, 20
	tasks := make([]*ctrtest.Task, 0, total)
	ports := make([]int, 0, total)
	var gaps []time.Duration
	for i := range total {
		port := itest.FreePort(t)
		tk := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns, ID: fmt.Sprintf("bxw-%03d-%s", i, ctrtest.RandomID("c")),
			Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}})
		ports = append(ports, port)
		tasks = append(tasks, tk)
		if i >= measured {
			continue
		}
		if err := p.WaitStderr("("+itest.ShortID(tk.ID)+") ", traceStartTimeout); err != nil {
			t.Fatal(err)
		}
		for _, m := range gapLine.FindAllStringSubmatch(p.Stderr(), -1) {
			if m[1] == itest.ShortID(tk.ID) {
				d, err := time.ParseDuration(m[2])
				if err != nil {
					t.Fatalf("gap %q: %v", m[2], err)
				}
				gaps = append(gaps, d)
			}
		}
	}
	if len(gaps) != measured {
		t.Fatalf("%d gap lines for %d measured starts:\n%s", len(gaps), measured, p.Stderr())
	}
	slices.Sort(gaps)
	t.Logf("start-to-attach gap over %d starts: median %s, worst %s (best %s)", measured, gaps[measured/2], gaps[measured-1], gaps[0])

	deadline := time.Now().Add(2 * time.Minute)
	for {
		n := strings.Count(p.Stderr(), "tracing bxw-")
		if n == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d containers traced:\n%s", n, total, p.Stderr())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// One collection: the programs the process holds do not grow with the
	// number of containers (each container only adds links).
	progs := heldProgIDs(t, p.PID())
	if len(progs) == 0 || len(progs) > 16 {
		t.Errorf("watch holds %d eBPF programs for %d containers; want one collection's worth", len(progs), total)
	}
	for _, tk := range tasks {
		if out := strings.TrimSpace(bpftool(t, "cgroup", "show", e.cgroupOfPID(t, tk.PID))); !strings.Contains(out, "cgroup_skb") && !strings.Contains(out, "egress") {
			t.Errorf("container %s: nothing attached to its cgroup:\n%s", tk.ID, out)
		}
	}
	// Each container answers one request of its own; its file must hold
	// exactly that response, paired with that request.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i, tk := range tasks {
		waitTaskLog(t, tk, "listening on", containerTimeout)
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/bytes/%d", ports[i], i+1))
		if err != nil {
			t.Fatalf("container %s: %v", tk.ID, err)
		}
		resp.Body.Close()
	}
	for _, tk := range tasks {
		waitFileEvents(t, filepath.Join(out, ns+"@"+tk.ID+".json"), 1, 30*time.Second)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(traceExitTimeout); err != nil {
		t.Fatalf("watch exit: %v", err)
	}
	for i, tk := range tasks {
		evs := fileEvents(t, filepath.Join(out, ns+"@"+tk.ID+".json"))
		if len(evs) != 1 {
			t.Errorf("container %s: %d events, want exactly 1", tk.ID, len(evs))
			continue
		}
		v := viewEvent(t, evs[0])
		if v.resp.StatusCode != 200 || v.resp.ContentLength != int64(i+1) || v.req == nil || v.req.URIPath != fmt.Sprintf("/bytes/%d", i+1) ||
			evs[0].ContainerID != tk.ID || v.meta.SrcPort != uint16(ports[i]) {
			t.Errorf("container %s: event status %d length %d request %+v container %q src port %d; want 200, %d, /bytes/%d, its own id, %d",
				tk.ID, v.resp.StatusCode, v.resp.ContentLength, v.req, evs[0].ContainerID, v.meta.SrcPort, i+1, i+1, ports[i])
		}
	}
	for _, tk := range tasks {
		checkDetached(t, e.cgroupOfPID(t, tk.PID))
	}
}

// waitTaskLog waits until a containerd task's log holds substr.
func waitTaskLog(t *testing.T, tk *ctrtest.Task, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(tk.Log)
		if err == nil && strings.Contains(string(b), substr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: no %q in its log after %s (%v):\n%s", tk.ID, substr, timeout, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// heldProgIDs returns the distinct eBPF program ids process pid holds.
func heldProgIDs(t *testing.T, pid int) map[int]bool {
	t.Helper()
	return fdinfoIDs(fmt.Sprintf("/proc/%d/fdinfo/*", pid), "prog_id:")
}

// TestWatchSurvivesContainerdRestart runs a private containerd (own socket,
// root and state), restarts it under a running watch, and checks that the
// container traced before stays traced once, and that one started after
// the restart is traced too.
func TestWatchSurvivesContainerdRestart(t *testing.T) {
	itest.RequireBPF(t)
	bin, err := lookContainerd()
	itest.Require(t, err == nil, "needs the containerd binary: %v", err)
	base := t.TempDir()
	sock := filepath.Join(base, "c.sock")
	cfg := filepath.Join(base, "config.toml")
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = %q
`, filepath.Join(base, "root"), filepath.Join(base, "state"), sock, sock+".ttrpc", filepath.Join(base, "d.sock"))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon := func() *itest.Proc {
		d := itest.StartProc(t, t.Context(), bin, "--config", cfg)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := os.Stat(sock); err == nil {
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("private containerd did not create %s:\n%s", sock, d.Stderr())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	d1 := startDaemon()
	e := newWatchEnv(t, sock)
	ns := "boxtap-restart"
	dir := filepath.Join(base, "out")
	p := e.startBoxtap(t, "watch", "--runtime", "containerd", "--containerd-address", sock, "--output-dir", dir)

	portA, portB := itest.FreePort(t), itest.FreePort(t)
	a := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns, ID: "before", Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", portA)}})
	if err := p.WaitStderr("tracing before (before)", traceStartTimeout); err != nil {
		t.Fatal(err)
	}

	if err := d1.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = d1.Wait(30 * time.Second)
	if err := p.WaitStderr("boxtap: lost containerd at "+sock, traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	d2 := startDaemon()
	_ = d2
	if err := p.WaitStderr("boxtap: reconnected to containerd at "+sock, traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	// The test's own client reconnects by itself (gRPC).
	b := e.ctrd.Run(t, ctrtest.RunOpts{Namespace: ns, ID: "after", Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", portB)}})
	if err := p.WaitStderr("tracing after (after)", traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	getN(t, fmt.Sprintf("http://127.0.0.1:%d/a", portA), 2)
	getN(t, fmt.Sprintf("http://127.0.0.1:%d/b", portB), 2)
	waitFileEvents(t, filepath.Join(dir, ns+"@before.json"), 2, 30*time.Second)
	waitFileEvents(t, filepath.Join(dir, ns+"@after.json"), 2, 30*time.Second)
	if n := strings.Count(p.Stderr(), "tracing before (before)"); n != 1 {
		t.Errorf("container traced before the restart was attached %d times", n)
	}
	// Remove the containers while this daemon still runs (cleanups run in
	// reverse order and the daemon's would come first).
	b.Remove(t)
	a.Remove(t)
	e.ctrd.RemoveNamespace(t, ns)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(traceExitTimeout); err != nil {
		t.Fatalf("watch exit: %v", err)
	}
	_ = d2.Signal(syscall.SIGTERM)
	_ = d2.Wait(30 * time.Second)
}

func lookContainerd() (string, error) {
	for _, p := range []string{"/usr/bin/containerd", "/usr/local/bin/containerd", "/usr/sbin/containerd"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no containerd in /usr/bin, /usr/local/bin or /usr/sbin (apt-get install containerd)")
}
