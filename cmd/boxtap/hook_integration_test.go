package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A server container is called as soon as it listens; its first response
// is in its file, and after "runc delete" (poststop) nothing is left. The
// hooks are those of examples/containerd-hook/boxtap-base-spec.json.
func TestHookRuncServerFirstResponse(t *testing.T) {
	e := newHookEnv(t)
	port := itest.FreePort(t)
	id := e.prefix + "srv"
	b := e.bundle(t, id, e.exampleHooks(t), "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	start := time.Now()
	if err := e.start(t, id, b); err != nil {
		t.Fatal(err)
	}
	first := firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/203", port), start)
	t.Logf("first response %s after runc run returned", first)
	cgDir, cgID := cgroupOf(t, e.mount, e.initPID(t, id))
	pids := tracerPIDs(id)
	if len(pids) != 1 || len(perContainerTracerPIDs(id)) != 0 {
		t.Fatalf("want the host tracer (the default) alone for %s, have %v", id, pids)
	}
	ownCgroup := filepath.Join(e.mount, "boxtap", cmdlineFlag(t, pids[0], "--cgroup-name="))
	// The poststop hook (in runc delete) stops the tracer and waits for the
	// flush. Stop the container without letting its cgroup empty first is
	// not possible with runc, so either path may end the tracer; both must
	// leave the file whole.
	t0 := time.Now()
	e.kill(t, id)
	t1 := time.Now()
	e.delete(t, id)
	t2 := time.Now()
	waitNoTracer(t, id, 10*time.Second)
	waitHostTracers(t, e.run, 0, 10*time.Second) // it ends with its last container
	t.Logf("kill %s, delete (poststop) %s, tracer gone %s later", t1.Sub(t0), t2.Sub(t1), time.Since(t2))
	checkNothingAttached(t, cgDir, cgID)
	evs := readHookEvents(t, filepath.Join(e.out, id+".json"))
	if len(evs) == 0 || evs[0].URIPath != "/status/203" || evs[0].Status != 203 || evs[0].Direction != "egress" || evs[0].SrcPort != port {
		t.Fatalf("the first event is not the first response: %+v\nhook log:\n%s", evs, e.hookLog())
	}
	for _, ev := range evs {
		if ev.ContainerID != id {
			t.Errorf("event of another container: %+v", ev)
		}
	}
	if _, err := os.Stat(ownCgroup); !os.IsNotExist(err) {
		t.Errorf("the tracer's cgroup is left behind: %v", err)
	}
}

// A container that makes one call at start-up and exits: the response it
// received is in its file, and the tracer ends on its own when the cgroup
// empties, before any poststop hook runs.
func TestHookRuncClientAtStartNoPoststop(t *testing.T) {
	e := newHookEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, "hello from the host")
	}))
	defer srv.Close()
	id := e.prefix + "cli"
	hooks := &specs.Hooks{CreateRuntime: []specs.Hook{{Path: e.boxtap, Args: append([]string{"boxtap", "hook", "createRuntime"}, e.hookArgs()...)}}}
	b := e.bundle(t, id, hooks, "get", "-url", srv.URL+"/startup-call")
	if err := e.start(t, id, b); err != nil {
		t.Fatal(err)
	}
	e.waitStopped(t, id)
	// No poststop hook is configured: the tracer must notice the empty cgroup.
	waitNoTracer(t, id, 30*time.Second)
	evs := readHookEvents(t, filepath.Join(e.out, id+".json"))
	e.delete(t, id)
	found := false
	for _, ev := range evs {
		found = found || (ev.URIPath == "/startup-call" && ev.Status == http.StatusAccepted && ev.Direction == "ingress")
	}
	if !found {
		t.Fatalf("the start-up call's response is not in the file: %+v\nhook log:\n%s", evs, e.hookLog())
	}
}

// 50 containers start at once, each with the hook: every one is traced,
// each file holds only its own events, and no tracer is left.
func TestHookRuncFiftyConcurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 50 containers")
	}
	e := newHookEnv(t)
	const n = 50
	type ctr struct {
		id    string
		port  int
		cgDir string
		cgID  uint64
	}
	ctrs := make([]ctr, n)
	for i := range ctrs {
		ctrs[i] = ctr{id: fmt.Sprintf("%sc%02d", e.prefix, i), port: itest.FreePort(t)}
	}
	hooks := e.exampleHooks(t)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range ctrs {
		b := e.bundle(t, ctrs[i].id, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", ctrs[i].port))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.start(t, ctrs[i].id, b)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("container %d: %v", i, err)
		}
	}
	if log := e.hookLog(); strings.Contains(log, ": error: ") {
		t.Fatalf("the hook logged errors:\n%s", log)
	}
	for i := range ctrs {
		firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/%d", ctrs[i].port, 200+i), time.Now())
		ctrs[i].cgDir, ctrs[i].cgID = cgroupOf(t, e.mount, e.initPID(t, ctrs[i].id))
	}
	for i := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.remove(ctrs[i].id)
		}()
	}
	wg.Wait()
	for i, c := range ctrs {
		waitNoTracer(t, c.id, 30*time.Second)
		checkNothingAttached(t, c.cgDir, c.cgID)
		evs := readHookEvents(t, filepath.Join(e.out, c.id+".json"))
		if len(evs) == 0 {
			t.Errorf("%s: no event", c.id)
		}
		for _, ev := range evs {
			if ev.ContainerID != c.id || ev.Status != 200+i || ev.SrcPort != c.port {
				t.Errorf("%s holds an event that is not its own: %+v", c.id, ev)
			}
		}
	}
}

// foreignDir is an output directory owned by another user, which the
// hardened sink refuses.
func foreignDir(t *testing.T, e *hookEnv) string {
	t.Helper()
	dir := filepath.Join(e.dir, "foreign")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	return dir
}

// By default a broken setup (an output directory of another user) is logged
// and the container still starts.
func TestHookFailsOpen(t *testing.T) {
	e := newHookEnv(t)
	missing := foreignDir(t, e)
	port := itest.FreePort(t)
	id := e.prefix + "open"
	args := append([]string{"boxtap", "hook", "createRuntime"}, e.hookArgs("--output-dir="+missing)...)
	hooks := &specs.Hooks{CreateRuntime: []specs.Hook{{Path: e.boxtap, Args: args}}}
	b := e.bundle(t, id, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	if err := e.start(t, id, b); err != nil {
		t.Fatalf("the container did not start although the hook fails open: %v", err)
	}
	firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/", port), time.Now())
	if pids := tracerPIDs(id); len(pids) != 0 {
		t.Fatalf("a tracer runs although the setup is broken: %v", pids)
	}
	e.kill(t, id)
	e.delete(t, id)
}

// --fail-closed turns the same broken setup into a failed start, with the
// cause in runc's error.
func TestHookFailsClosed(t *testing.T) {
	e := newHookEnv(t)
	missing := foreignDir(t, e)
	id := e.prefix + "closed"
	args := append([]string{"boxtap", "hook", "createRuntime"}, e.hookArgs("--output-dir="+missing, "--fail-closed")...)
	hooks := &specs.Hooks{CreateRuntime: []specs.Hook{{Path: e.boxtap, Args: args}}}
	b := e.bundle(t, id, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t)))
	err := e.start(t, id, b)
	if err == nil {
		t.Fatal("the container started although the hook fails closed")
	}
	if !strings.Contains(err.Error(), "output directory "+missing+" is owned by uid 65534") {
		t.Fatalf("runc's error does not carry the hook's one-line cause: %v", err)
	}
	if pids := tracerPIDs(id); len(pids) != 0 {
		t.Fatalf("a tracer was left: %v", pids)
	}
}

// boxtap runc adds the hooks on create and passes everything through, so
// that runc's own command line drives a traced container.
func TestRuncWrapperAddsHooks(t *testing.T) {
	e := newHookEnv(t)
	port := itest.FreePort(t)
	id := e.prefix + "wrap"
	b := e.bundle(t, id, nil, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	wrapper := append([]string{"runc", "--runtime-path=" + mustLookPath(t, "runc")}, e.hookArgs()...)
	// runc's global flags first, then the command and --bundle, as Docker's shim does.
	cmdArgs := append(wrapper, "--root", e.root, "--log-format", "json", "create", "--bundle", b, id)
	if out, err := runBoxtap(e.boxtap, cmdArgs...); err != nil {
		t.Fatalf("boxtap runc create: %v\n%s", err, out)
	}
	t.Cleanup(func() { e.remove(id) })
	if out, err := runBoxtap(e.boxtap, append(wrapper, "--root", e.root, "start", id)...); err != nil {
		t.Fatalf("boxtap runc start: %v\n%s", err, out)
	}
	firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/202", port), time.Now())
	var spec specs.Spec
	data, err := os.ReadFile(filepath.Join(b, "config.json"))
	if err == nil {
		err = json.Unmarshal(data, &spec)
	}
	if err != nil || spec.Hooks == nil || len(spec.Hooks.CreateRuntime) != 1 || len(spec.Hooks.Poststop) != 1 || spec.Hooks.CreateRuntime[0].Path != e.boxtap {
		t.Fatalf("config.json after create: %v\n%s", err, data)
	}
	e.kill(t, id)
	if out, err := runBoxtap(e.boxtap, append(wrapper, "--root", e.root, "delete", id)...); err != nil {
		t.Fatalf("boxtap runc delete: %v\n%s", err, out)
	}
	waitNoTracer(t, id, 10*time.Second)
	evs := readHookEvents(t, filepath.Join(e.out, id+".json"))
	if len(evs) == 0 || evs[0].Status != 202 {
		t.Fatalf("events: %+v\nhook log:\n%s", evs, e.hookLog())
	}
}

func mustLookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
