package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aquasecurity/tracee/types/trace"
	"github.com/boxtap/boxtap/internal/itest"
)

// Timeouts of the integration tests. They bound waits; none is asserted as a duration.
const (
	traceStartTimeout = 60 * time.Second // boxtap loading its programs and printing "tracing"
	traceExitTimeout  = 30 * time.Second // boxtap exiting after a signal or its container's end
	containerTimeout  = 30 * time.Second // a test container becoming ready
	traceRunTimeout   = 3 * time.Minute  // hard cap on one boxtap process
)

// traceEnv is what every `boxtap trace` integration test needs: root, eBPF, Docker, the
// boxtap and testapp binaries and the test image.
type traceEnv struct {
	docker  *itest.Docker
	boxtap  string
	testapp string
	image   string
	cgroup2 string // cgroup v2 mount point
}

func newTraceEnv(t *testing.T) *traceEnv {
	t.Helper()
	mount := itest.RequireBPF(t)
	d := itest.RequireDocker(t)
	return &traceEnv{
		docker:  d,
		boxtap:  itest.BuildBoxtap(t),
		testapp: itest.BuildTestApp(t),
		image:   d.TestImage(t),
		cgroup2: mount,
	}
}

// startContainer runs the test image with args on the host network and waits for readyLog
// in its log (skipped when empty).
func (e *traceEnv) startContainer(t *testing.T, readyLog string, args ...string) *itest.Container {
	t.Helper()
	c := e.docker.Run(t, itest.RunOpts{Image: e.image, Network: "host", Args: args})
	if readyLog != "" {
		if err := c.WaitLog(readyLog, containerTimeout); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// startServer runs `testapp serve -addr ADDR` in a container and waits until it listens.
func (e *traceEnv) startServer(t *testing.T, addr string) *itest.Container {
	t.Helper()
	return e.startContainer(t, "listening on", "serve", "-addr", addr)
}

// startTrace runs `boxtap trace CONTAINER... ARGS...` and waits until it traces every
// container. The process is killed when the test ends.
func (e *traceEnv) startTrace(t *testing.T, cs []*itest.Container, args ...string) *itest.Proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), traceRunTimeout)
	t.Cleanup(cancel)
	argv := []string{"trace"}
	for _, c := range cs {
		argv = append(argv, c.Name)
	}
	argv = append(argv, args...)
	p := itest.StartProc(t, ctx, e.boxtap, argv...)
	for _, c := range cs {
		if err := p.WaitStderr(fmt.Sprintf("tracing %s (%s)\n", c.Name, itest.ShortID(c.ID)), traceStartTimeout); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// traceExit is how a boxtap process ended.
type traceExit struct {
	code   int
	stderr string
	events []trace.Event
}

// stopTrace sends sig (nil: none, the process is expected to exit by itself), waits for the
// exit and decodes every stdout line as a Tracee event.
func stopTrace(t *testing.T, p *itest.Proc, sig os.Signal) traceExit {
	t.Helper()
	if sig != nil {
		if err := p.Signal(sig); err != nil {
			t.Fatal(err)
		}
	}
	err := p.Wait(traceExitTimeout)
	x := traceExit{stderr: p.Stderr()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("boxtap did not exit: %v", err)
		}
		x.code = ee.ExitCode()
	}
	if strings.Contains(x.stderr, "WARNING: DATA RACE") {
		t.Fatalf("boxtap has a data race (built with -race):\n%s", x.stderr)
	}
	if strings.Contains(x.stderr, "panic:") || strings.Contains(x.stderr, "goroutine ") {
		t.Fatalf("boxtap panicked:\n%s", x.stderr)
	}
	x.events = decodeEvents(t, p.Lines())
	return x
}

// stopTraceOK is stopTrace for a run that must end with exit status 0 and the counts line.
func stopTraceOK(t *testing.T, p *itest.Proc, sig os.Signal) []trace.Event {
	t.Helper()
	x := stopTrace(t, p, sig)
	if x.code != 0 {
		t.Fatalf("boxtap exited with status %d; stderr:\n%s", x.code, x.stderr)
	}
	checkCountsLine(t, x.stderr, len(x.events))
	return x.events
}

// stopTraceN waits for n event lines, stops boxtap with SIGINT and checks
// that it exited with status 0 having written exactly n events, as its
// counts line says.
func stopTraceN(t *testing.T, p *itest.Proc, n int) traceExit {
	t.Helper()
	if _, err := p.WaitLines(n, traceExitTimeout); err != nil {
		t.Fatal(err)
	}
	x := stopTrace(t, p, syscall.SIGINT)
	if x.code != 0 {
		t.Fatalf("boxtap exited with status %d; stderr:\n%s", x.code, x.stderr)
	}
	checkCountsLine(t, x.stderr, n)
	if len(x.events) != n {
		t.Fatalf("%d events, want %d", len(x.events), n)
	}
	return x
}

// checkCountsLine checks the summary boxtap prints on exit against the events it wrote.
func checkCountsLine(t *testing.T, stderr string, events int) {
	t.Helper()
	want := fmt.Sprintf("boxtap: %d events, ", events)
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr has no counts line %q:\n%s", want, stderr)
	}
}

// decodeEvents decodes JSON Lines with Tracee's own types; every line must be an event.
func decodeEvents(t *testing.T, lines []string) []trace.Event {
	t.Helper()
	events := make([]trace.Event, 0, len(lines))
	for i, line := range lines {
		var ev trace.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("stdout line %d is not a Tracee event: %v\n%s", i+1, err, line)
		}
		events = append(events, ev)
	}
	return events
}

// eventView is the typed content of one net_packet_http_response event.
type eventView struct {
	ev        trace.Event
	meta      trace.PktMeta
	resp      trace.ProtoHTTPResponse
	req       *trace.ProtoHTTPRequest
	direction string
	truncated bool
}

// viewEvent checks the schema of one event (eventId 2011, typed args) and returns its args.
func viewEvent(t *testing.T, ev trace.Event) eventView {
	t.Helper()
	v := eventView{ev: ev}
	if ev.EventID != 2011 || ev.EventName != "net_packet_http_response" {
		t.Fatalf("event id %d name %q, want 2011 net_packet_http_response", ev.EventID, ev.EventName)
	}
	if ev.ArgsNum != len(ev.Args) {
		t.Errorf("argsNum %d but %d args", ev.ArgsNum, len(ev.Args))
	}
	var haveMeta, haveResp, haveDir, haveTrunc, tls bool
	for _, a := range ev.Args {
		var ok bool
		switch a.Name {
		case "metadata":
			v.meta, ok = a.Value.(trace.PktMeta)
			haveMeta = ok
		case "http_response":
			v.resp, ok = a.Value.(trace.ProtoHTTPResponse)
			haveResp = ok
		case "http_request":
			var r trace.ProtoHTTPRequest
			r, ok = a.Value.(trace.ProtoHTTPRequest)
			v.req = &r
		case "direction":
			v.direction, ok = a.Value.(string)
			haveDir = ok
		case "truncated":
			v.truncated, ok = a.Value.(bool)
			haveTrunc = ok
		case "tls":
			tls, ok = a.Value.(bool)
		default:
			ok = true
		}
		if !ok {
			t.Fatalf("arg %q (type %q) decoded to %T", a.Name, a.Type, a.Value)
		}
	}
	if len(ev.Args) < 2 || ev.Args[0].Name != "metadata" || ev.Args[1].Name != "http_response" {
		t.Errorf("the first two args must be metadata and http_response like Tracee's, got %v", argNames(ev))
	}
	if !haveMeta || !haveResp || !haveDir || !haveTrunc {
		t.Fatalf("event lacks metadata, http_response, direction or truncated: args %v", argNames(ev))
	}
	// Plaintext read from a TLS library has no interface (README).
	if v.meta.Protocol != 6 || v.meta.PacketLen == 0 || (v.meta.Iface == "") != tls {
		t.Errorf("metadata protocol %d packet_len %d iface %q (tls %v), want 6, > 0, set unless tls", v.meta.Protocol, v.meta.PacketLen, v.meta.Iface, tls)
	}
	return v
}

func argNames(ev trace.Event) []string {
	names := make([]string, len(ev.Args))
	for i, a := range ev.Args {
		names[i] = a.Name
	}
	return names
}

// viewEvents applies viewEvent to each event.
func viewEvents(t *testing.T, events []trace.Event) []eventView {
	t.Helper()
	vs := make([]eventView, len(events))
	for i, ev := range events {
		vs[i] = viewEvent(t, ev)
	}
	return vs
}

// proc is a process as an event must name it.
type proc struct {
	hostPID int // in the host's pid namespace
	nsPID   int // in its own pid namespace
	comm    string
	exe     string // executable.path: the path inside the container
}

// exited tells whether the process is gone (its pid no longer exists).
func (p proc) exited() bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(p.hostPID)))
	return os.IsNotExist(err)
}

// containerInit returns the container's init process (testapp) as events must name it.
func containerInit(t *testing.T, c *itest.Container) proc {
	t.Helper()
	pid := c.PID()
	if pid == 0 {
		t.Fatalf("container %s is not running", c.Name)
	}
	// The test image's only file is /testapp, its entrypoint (itest.TestImage).
	return proc{hostPID: pid, nsPID: nsPID(t, pid), comm: "testapp", exe: "/testapp"}
}

// nsPID returns the innermost pid of a process from the NSpid line of /proc/PID/status.
func nsPID(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatalf("read status of pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				t.Fatalf("pid %d: bad NSpid line %q", pid, line)
			}
			return n
		}
	}
	t.Fatalf("pid %d: no NSpid line in /proc/%d/status", pid, pid)
	return 0
}

// checkOrigin checks that an event names the container and the process.
func checkOrigin(t *testing.T, i int, v eventView, c *itest.Container, image string, p proc) {
	t.Helper()
	ev := v.ev
	if ev.Container.ID != c.ID || ev.ContainerID != c.ID || ev.Container.Name != c.Name || ev.Container.ImageName != image {
		t.Errorf("event %d: container {id %q name %q image %q} containerId %q, want {%q %q %q}",
			i, ev.Container.ID, ev.Container.Name, ev.Container.ImageName, ev.ContainerID, c.ID, c.Name, image)
	}
	if ev.HostProcessID != p.hostPID || ev.ProcessID != p.nsPID || ev.ProcessName != p.comm {
		t.Errorf("event %d: hostProcessId %d processId %d processName %q, want %d %d %q",
			i, ev.HostProcessID, ev.ProcessID, ev.ProcessName, p.hostPID, p.nsPID, p.comm)
	}
	if ev.HostThreadID == 0 || ev.ThreadID == 0 || ev.CgroupID == 0 || ev.PIDNS == 0 || ev.MountNS == 0 {
		t.Errorf("event %d: hostThreadId %d threadId %d cgroupId %d pidNamespace %d mountNamespace %d, want all set",
			i, ev.HostThreadID, ev.ThreadID, ev.CgroupID, ev.PIDNS, ev.MountNS)
	}
	if !ev.ContextFlags.ContainerStarted {
		t.Errorf("event %d: contextFlags.containerStarted false", i)
	}
	// README's limit: the path is empty when the process had exited before the event was
	// written (a client container that is gone by now). A running process must be named.
	if ev.Executable.Path != p.exe && !(ev.Executable.Path == "" && p.exited()) {
		t.Errorf("event %d: executable.path %q, want %q", i, ev.Executable.Path, p.exe)
	}
}

// checkEndpoints checks an event's addresses and ports (a zero port is not checked), and
// that traffic between loopback addresses names the loopback interface.
func checkEndpoints(t *testing.T, i int, v eventView, srcIP string, srcPort uint16, dstIP string, dstPort uint16) {
	t.Helper()
	m := v.meta
	if m.SrcIP != srcIP || m.DstIP != dstIP || (srcPort != 0 && m.SrcPort != srcPort) || (dstPort != 0 && m.DstPort != dstPort) {
		t.Errorf("event %d: %s:%d -> %s:%d, want %s:%d -> %s:%d", i, m.SrcIP, m.SrcPort, m.DstIP, m.DstPort, srcIP, srcPort, dstIP, dstPort)
	}
	src, err1 := netip.ParseAddr(srcIP)
	dst, err2 := netip.ParseAddr(dstIP)
	if err1 == nil && err2 == nil && src.Unmap().IsLoopback() && dst.Unmap().IsLoopback() && m.Iface != "lo" {
		t.Errorf("event %d: iface %q for loopback traffic %s -> %s, want lo", i, m.Iface, srcIP, dstIP)
	}
}

// checkHeaders compares an event's headers with want, exactly.
func checkHeaders(t *testing.T, i int, got, want http.Header) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("event %d: headers\n got %s\nwant %s", i, headerString(got), headerString(want))
	}
}

func headerString(h http.Header) string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v := strings.Join(h[k], "|")
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		fmt.Fprintf(&b, "%s=%q ", k, v)
	}
	return b.String()
}

// requireCount fails the test unless there are exactly n events, listing them otherwise.
func requireCount(t *testing.T, vs []eventView, n int) {
	t.Helper()
	if len(vs) == n {
		return
	}
	var b strings.Builder
	for i, v := range vs {
		fmt.Fprintf(&b, "  %d: %s %s:%d->%s:%d %s\n", i, v.resp.Status, v.meta.SrcIP, v.meta.SrcPort, v.meta.DstIP, v.meta.DstPort, v.direction)
	}
	t.Fatalf("got %d events, want exactly %d:\n%s", len(vs), n, b.String())
}

// docker runs the docker CLI with a bound; the test fails when it fails.
func dockerCmd(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// signalContainer sends SIGUSR1 to a container's init (testapp waiting in wait_signal).
func signalContainer(t *testing.T, c *itest.Container) {
	t.Helper()
	dockerCmd(t, "kill", "--signal", "USR1", c.Name)
}

// waitContainerExit waits until the container has stopped and returns its exit code.
func waitContainerExit(t *testing.T, c *itest.Container) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "wait", c.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("docker wait %s: %v: %s", c.Name, err, out)
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("docker wait %s: unexpected output %q", c.Name, out)
	}
	return code
}

// cgroupDirOf returns the cgroup v2 directory of a running process.
func (e *traceEnv) cgroupDirOf(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		t.Fatalf("read cgroup of pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(e.cgroup2, rest)
		}
	}
	t.Fatalf("pid %d has no cgroup v2 line in /proc/%d/cgroup:\n%s", pid, pid, data)
	return ""
}

// bpftool runs bpftool with a bound and returns its output.
func bpftool(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("bpftool")
	itest.Require(t, err == nil, "needs bpftool on PATH (apt-get install bpftool)")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("bpftool %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// checkDetached checks that no program is attached to the cgroup directory.
func checkDetached(t *testing.T, cgroupDir string) {
	t.Helper()
	if out := strings.TrimSpace(bpftool(t, "cgroup", "show", cgroupDir)); out != "" {
		t.Errorf("programs still attached to %s after boxtap exited:\n%s", cgroupDir, out)
	}
}

// orphanBoxtapLinks lists the links of boxtap's programs (capture_egress,
// capture_ingress, on any cgroup) that no live process holds. Links are
// released with their last file descriptor, so such a link could only be one
// that boxtap pinned or leaked; links of boxtap processes that still run
// (other tests, other people) are held and not listed.
func orphanBoxtapLinks(t *testing.T) []string {
	t.Helper()
	links, names := hxLinks(t)
	held := heldLinkIDs()
	var orphans []string
	for _, l := range links {
		if boxtapProgNames[names[l.ProgID]] && !held[l.ID] {
			orphans = append(orphans, fmt.Sprintf("link %d (%s, program %s, cgroup %d)", l.ID, l.Type, names[l.ProgID], l.CgroupID))
		}
	}
	return orphans
}

// heldLinkIDs returns the ids of every bpf link some process has a file descriptor for.
func heldLinkIDs() map[int]bool { return fdinfoIDs("/proc/[0-9]*/fdinfo/*", "link_id:") }

// fdinfoIDs collects the numbers after key in the fdinfo files matching
// pattern: the ids of the bpf links ("link_id:") or programs ("prog_id:")
// that processes hold.
func fdinfoIDs(pattern, key string) map[int]bool {
	ids := map[int]bool{}
	infos, _ := filepath.Glob(pattern)
	for _, f := range infos {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // the process or descriptor went away
		}
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, key); ok {
				if id, err := strconv.Atoi(strings.TrimSpace(rest)); err == nil {
					ids[id] = true
				}
			}
		}
	}
	return ids
}

// checkNoOrphanLinks checks that boxtap left no link of its programs behind.
func checkNoOrphanLinks(t *testing.T) {
	t.Helper()
	if orphans := orphanBoxtapLinks(t); len(orphans) > 0 {
		t.Errorf("boxtap program links left with no process holding them: %v", orphans)
	}
}
