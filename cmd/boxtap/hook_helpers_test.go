package main

// Helpers for the OCI hook integration tests: a private runc root, bundles
// built around the static testapp, the per-container output files, and
// checks, through the kernel and /proc, that nothing is left behind.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/runtime/cgroup"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hookEnv is one test's runc root, rootfs, output and run directories.
type hookEnv struct {
	boxtap  string
	testapp string
	dir     string // everything the test creates
	root    string // runc --root
	rootfs  string // shared read-only rootfs with /testapp
	out     string // --output-dir
	run     string // --run-dir
	prefix  string // container id prefix
	mount   string
}

func newHookEnv(t testing.TB) *hookEnv {
	t.Helper()
	mount := itest.RequireBPF(t)
	_, err := exec.LookPath("runc")
	itest.Require(t, err == nil, "needs runc on PATH (apt-get install runc)")
	_, err = exec.LookPath("bpftool")
	itest.Require(t, err == nil, "needs bpftool on PATH (apt-get install bpftool)")
	// Short paths: runc's state and console sockets must fit in sun_path.
	dir, err := os.MkdirTemp("", "bxh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &hookEnv{
		boxtap:  itest.BuildBoxtap(t),
		testapp: itest.BuildTestApp(t),
		dir:     dir,
		root:    filepath.Join(dir, "runc"),
		rootfs:  filepath.Join(dir, "rootfs"),
		out:     filepath.Join(dir, "out"),
		run:     filepath.Join(dir, "run"),
		prefix:  fmt.Sprintf("bxhk%d-", os.Getpid()),
		mount:   mount,
	}
	for _, d := range []string{e.root, e.rootfs, e.out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(e.testapp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.rootfs, "testapp"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	// The default --tracer=host leaves a host tracer while a container runs.
	killHostTracersOnCleanup(t, e)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hook log (%s):\n%s", hookLogName, e.hookLog())
		}
	})
	return e
}

// hookArgs are the hook options every test passes.
func (e *hookEnv) hookArgs(extra ...string) []string {
	return append([]string{"--output-dir=" + e.out, "--run-dir=" + e.run, "--timeout=30s"}, extra...)
}

// exampleHooks reads the hooks of examples/containerd-hook/boxtap-base-spec.json
// and points them at this test's boxtap binary and directories.
func (e *hookEnv) exampleHooks(t testing.TB) *specs.Hooks {
	t.Helper()
	root, err := itest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	var base specs.Spec
	data, err := os.ReadFile(filepath.Join(root, "examples/containerd-hook/boxtap-base-spec.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &base); err != nil {
		t.Fatalf("examples/containerd-hook/boxtap-base-spec.json: %v", err)
	}
	if base.Hooks == nil || len(base.Hooks.CreateRuntime) != 1 || len(base.Hooks.Poststop) != 1 {
		t.Fatalf("the example base spec does not carry one createRuntime and one poststop hook: %+v", base.Hooks)
	}
	fix := func(h specs.Hook) specs.Hook {
		h.Path = e.boxtap
		args := []string{}
		for _, a := range h.Args {
			switch {
			case strings.HasPrefix(a, "--output-dir="), strings.HasPrefix(a, "--timeout="):
				continue // replaced by this test's
			}
			args = append(args, a)
		}
		h.Args = append(args, e.hookArgs()...)
		return h
	}
	return &specs.Hooks{CreateRuntime: []specs.Hook{fix(base.Hooks.CreateRuntime[0])}, Poststop: []specs.Hook{fix(base.Hooks.Poststop[0])}}
}

// bundle writes a bundle for container id that runs /testapp args on the
// host network, with hooks (nil: none).
func (e *hookEnv) bundle(t testing.TB, id string, hooks *specs.Hooks, args ...string) string {
	t.Helper()
	dir := filepath.Join(e.dir, "b-"+id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("runc", "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	var spec specs.Spec
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Root = &specs.Root{Path: e.rootfs, Readonly: true}
	spec.Process.Terminal = false
	spec.Process.Args = append([]string{"/testapp"}, args...)
	spec.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 4096}}
	var ns []specs.LinuxNamespace
	for _, n := range spec.Linux.Namespaces {
		if n.Type != specs.NetworkNamespace {
			ns = append(ns, n)
		}
	}
	spec.Linux.Namespaces = ns
	spec.Linux.CgroupsPath = "/" + id
	spec.Hooks = hooks
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	data, err = json.MarshalIndent(&spec, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runc runs runc with the test's root.
func (e *hookEnv) runc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runc", append([]string{"--root", e.root}, args...)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// start runs "runc run -d" for a bundle; the container's stdio goes to a
// log file. It returns when runc does: after the hooks attached.
func (e *hookEnv) start(t testing.TB, id, bundle string) error {
	t.Helper()
	log, err := os.Create(filepath.Join(e.dir, id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runc", "--root", e.root, "run", "-d", "--bundle", bundle, id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, log, log
	t.Cleanup(func() { e.remove(id) })
	if err := cmd.Run(); err != nil {
		data, _ := os.ReadFile(log.Name())
		return fmt.Errorf("runc run %s: %v: %s", id, err, data)
	}
	return nil
}

// remove kills and deletes a container (poststop hooks run in delete).
func (e *hookEnv) remove(id string) {
	_, _ = e.runc("kill", id, "KILL")
	for i := 0; i < 100; i++ {
		if out, _ := e.runc("state", id); !strings.Contains(out, `"running"`) && !strings.Contains(out, `"created"`) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, _ = e.runc("delete", "--force", id)
}

// delete deletes a stopped container, failing the test on error.
func (e *hookEnv) delete(t testing.TB, id string) {
	t.Helper()
	if out, err := e.runc("delete", id); err != nil {
		t.Fatalf("runc delete %s: %v\n%s", id, err, out)
	}
}

// kill sends SIGKILL and waits for the container to stop.
func (e *hookEnv) kill(t testing.TB, id string) {
	t.Helper()
	if out, err := e.runc("kill", id, "KILL"); err != nil {
		t.Fatalf("runc kill %s: %v\n%s", id, err, out)
	}
	e.waitStopped(t, id)
}

func (e *hookEnv) waitStopped(t testing.TB, id string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		out, err := e.runc("state", id)
		if err != nil || strings.Contains(out, `"stopped"`) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("container %s did not stop within a minute", id)
}

// initPID is the container's init PID on the host.
func (e *hookEnv) initPID(t *testing.T, id string) int {
	t.Helper()
	out, err := e.runc("state", id)
	if err != nil {
		t.Fatalf("runc state %s: %v\n%s", id, err, out)
	}
	var st struct{ Pid int }
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("runc state %s: %v\n%s", id, err, out)
	}
	return st.Pid
}

// cgroupOf returns the cgroup directory and id of a process.
func cgroupOf(t *testing.T, mount string, pid int) (string, uint64) {
	t.Helper()
	rel, err := cgroup.PathOfPID(pid)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := cgroup.Dir(mount, rel)
	if err != nil {
		t.Fatal(err)
	}
	id, err := cgroup.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, id
}

// firstResponse calls url until the server answers (connection refused
// while it starts), and returns how long after start that took.
func firstResponse(t *testing.T, url string, start time.Time) time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return time.Since(start)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
	return 0
}

// hookEvent is what the tests check in one event.
type hookEvent struct {
	ContainerID string
	Direction   string
	URIPath     string
	Status      int
	SrcPort     int
	DstPort     int
	Stream      int  // HTTP/2 stream_id, 0 without
	Partial     bool // the "partial" arg (HTTP/2 joined midway)
	TLS         bool
}

// readHookEvents reads a per-container output file: JSON lines, each a
// whole line.
func readHookEvents(t *testing.T, path string) []hookEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the output: %v", err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("%s does not end in a whole line: ...%q", path, data[max(0, len(data)-80):])
	}
	var evs []hookEvent
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var raw struct {
			ContainerID string `json:"containerId"`
			Args        []struct {
				Name  string          `json:"name"`
				Value json.RawMessage `json:"value"`
			} `json:"args"`
		}
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("%s: a line is not JSON (%v): %s", path, err, sc.Text())
		}
		ev := hookEvent{ContainerID: raw.ContainerID}
		for _, a := range raw.Args {
			switch a.Name {
			case "metadata":
				var m struct {
					Src int `json:"src_port"`
					Dst int `json:"dst_port"`
				}
				_ = json.Unmarshal(a.Value, &m)
				ev.SrcPort, ev.DstPort = m.Src, m.Dst
			case "http_response":
				var r struct {
					Code int `json:"status_code"`
				}
				_ = json.Unmarshal(a.Value, &r)
				ev.Status = r.Code
			case "http_request":
				var r struct {
					Path string `json:"uri_path"`
				}
				_ = json.Unmarshal(a.Value, &r)
				ev.URIPath = r.Path
			case "direction":
				_ = json.Unmarshal(a.Value, &ev.Direction)
			case "stream_id":
				_ = json.Unmarshal(a.Value, &ev.Stream)
			case "partial":
				_ = json.Unmarshal(a.Value, &ev.Partial)
			case "tls":
				_ = json.Unmarshal(a.Value, &ev.TLS)
			}
		}
		evs = append(evs, ev)
	}
	return evs
}

// tracerPIDs lists the live boxtap tracers of a container, found in /proc
// (not through boxtap's pid files): its own hook-tracer (--tracer=per-container),
// or a host tracer (hook-host, the default) whose run directory holds the
// container's state file, which the host tracer removes only after it has
// detached the container and closed its file.
func tracerPIDs(id string) []int { return procTracers(id, true) }

// perContainerTracerPIDs lists only the container's own hook-tracer processes.
func perContainerTracerPIDs(id string) []int { return procTracers(id, false) }

func procTracers(id string, withHost bool) []int {
	return procsWhere(func(args []string) bool {
		return slices.Contains(args, "hook-tracer") && slices.Contains(args, "--id="+id) ||
			withHost && slices.Contains(args, hostSubcommand) && hostTracerHolds(args, id)
	})
}

// procsWhere lists the live processes whose command line (its arguments)
// match says yes to, found in /proc.
func procsWhere(match func(args []string) bool) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, en := range entries {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		if args := procArgs(pid); args != nil && match(args) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procArgs is the command line of process pid (nil once it has exited).
func procArgs(pid int) []string {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || len(cmdline) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
}

// hostTracerHolds reports whether the host tracer run with args has the
// state file of container id (its key is the id, or <namespace>@<id>).
func hostTracerHolds(args []string, id string) bool {
	for _, a := range args {
		runDir, ok := strings.CutPrefix(a, "--run-dir=")
		if !ok {
			continue
		}
		keys, _ := filepath.Glob(filepath.Join(runDir, hostStateDir, "*.json"))
		for _, k := range keys {
			key := strings.TrimSuffix(filepath.Base(k), ".json")
			if key == id || strings.HasSuffix(key, "@"+id) {
				return true
			}
		}
	}
	return false
}

// waitNoTracer waits until no tracer for id is left.
func waitNoTracer(t testing.TB, id string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if len(tracerPIDs(id)) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("tracer of %s still running after %s: pids %v", id, within, tracerPIDs(id))
}

// checkNothingAttached asks the kernel (bpftool) whether any link is still
// attached to the cgroup with this id, and, if the directory still exists,
// whether any program is attached to it.
func checkNothingAttached(t *testing.T, dir string, cgID uint64) {
	t.Helper()
	out, err := exec.Command("bpftool", "-j", "link", "show").Output()
	if err != nil {
		t.Fatalf("bpftool link show: %v", err)
	}
	var links []struct {
		ID       int    `json:"id"`
		Type     string `json:"type"`
		CgroupID uint64 `json:"cgroup_id"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatalf("bpftool link show: %v\n%s", err, out)
	}
	for _, l := range links {
		if l.Type == "cgroup" && l.CgroupID == cgID {
			t.Errorf("link %d is still attached to cgroup %d (%s)", l.ID, cgID, dir)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		out, err := exec.Command("bpftool", "-j", "cgroup", "show", dir).Output()
		if err != nil {
			t.Fatalf("bpftool cgroup show %s: %v", dir, err)
		}
		if s := strings.TrimSpace(string(out)); s != "" && s != "[]" {
			t.Errorf("programs still attached to %s: %s", dir, s)
		}
	}
}

// hookLog returns the hook log written next to the output (no syslog here).
func (e *hookEnv) hookLog() string {
	data, _ := os.ReadFile(filepath.Join(e.out, hookLogName))
	return string(data)
}

// runBoxtap runs the boxtap binary and returns its output. The output goes
// through a file, not a pipe: a container created by "boxtap runc create"
// inherits runc's stdio and would hold a pipe open.
func runBoxtap(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, err := os.CreateTemp("", "bxh-out")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile(f.Name())
	return string(out), err
}
