package main

// Integration tests of the host tracer (boxtap hook --tracer=host): one
// process per host that traces every hooked runc container, started by the
// first hook and ended with the last container.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/output"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hostHooks are the example base spec's hooks with --tracer=host, run by
// bin (the test's boxtap when empty).
func (e *hookEnv) hostHooks(t testing.TB, bin string, extra ...string) *specs.Hooks {
	t.Helper()
	return e.tracerHooks(t, bin, tracerHost, extra...)
}

// tracerHooks are the example base spec's hooks with --tracer=mode, run by
// bin (the test's boxtap when empty).
func (e *hookEnv) tracerHooks(t testing.TB, bin, mode string, extra ...string) *specs.Hooks {
	t.Helper()
	h := e.exampleHooks(t)
	for _, list := range [][]specs.Hook{h.CreateRuntime, h.Poststop} {
		for i := range list {
			if bin != "" {
				list[i].Path = bin
			}
			list[i].Args = append(list[i].Args, append([]string{"--tracer=" + mode}, extra...)...)
		}
	}
	return h
}

// hostTracerPIDs lists the live host tracers of run directory runDir, found
// in /proc.
func hostTracerPIDs(runDir string) []int {
	return procsWhere(func(args []string) bool {
		return slices.Contains(args, hostSubcommand) && slices.Contains(args, "--run-dir="+runDir)
	})
}

// waitHostTracers waits until exactly n host tracers of runDir run.
func waitHostTracers(t testing.TB, runDir string, n int, within time.Duration) []int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		pids := hostTracerPIDs(runDir)
		if len(pids) == n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d host tracers, have %v after %s", n, pids, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killHostTracersOnCleanup SIGKILLs whatever host tracer of the test's run
// directory a failing test leaves.
func killHostTracersOnCleanup(t testing.TB, e *hookEnv) {
	t.Cleanup(func() {
		for _, pid := range hostTracerPIDs(e.run) {
			_ = exec.Command("kill", "-9", strconv.Itoa(pid)).Run()
		}
	})
}

// fileLines splits a container's file into events and boxtap notices.
func fileLines(t *testing.T, path string) (evs []hookEvent, notices []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the output: %v", err)
	}
	var events bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var n struct {
			EventName string `json:"eventName"`
			Message   string `json:"message"`
		}
		if err := json.Unmarshal(sc.Bytes(), &n); err != nil {
			t.Fatalf("%s: a line is not JSON (%v): %s", path, err, sc.Text())
		}
		if n.EventName == output.NoticeEventName {
			notices = append(notices, n.Message)
			continue
		}
		events.Write(sc.Bytes())
		events.WriteByte('\n')
	}
	tmp := filepath.Join(t.TempDir(), "events.json")
	if err := os.WriteFile(tmp, events.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return readHookEvents(t, tmp), notices
}

// callOnce makes one GET to a server the test started and checks the status.
func callOnce(t *testing.T, url string, want int) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("GET %s: status %d, want %d", url, resp.StatusCode, want)
	}
}

func hostHasEvent(evs []hookEvent, id, path string, status int) bool {
	for _, ev := range evs {
		if ev.ContainerID == id && ev.URIPath == path && ev.Status == status {
			return true
		}
	}
	return false
}

// waitFileHas waits until the file at path contains substr (the tracer
// flushed it).
func waitFileHas(t *testing.T, path, substr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		data, _ := os.ReadFile(path)
		if bytes.Contains(data, []byte(substr)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not contain %s after %s: %s", path, substr, within, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Three containers share one host tracer; each file holds exactly its own
// events; the tracer ends with the last container and leaves nothing
// attached, no process and no cgroup.
func TestHookHostTracerOneProcessPerContainerFilesEndsWithLastContainer(t *testing.T) {
	e := newHookEnv(t)
	hooks := e.hostHooks(t, "")
	type ctr struct {
		id    string
		port  int
		dir   string
		cgID  uint64
		count int
	}
	var cs []*ctr
	for i := 0; i < 3; i++ {
		c := &ctr{id: fmt.Sprintf("%shost%d", e.prefix, i), port: itest.FreePort(t)}
		b := e.bundle(t, c.id, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", c.port))
		if err := e.start(t, c.id, b); err != nil {
			t.Fatal(err)
		}
		c.dir, c.cgID = cgroupOf(t, e.mount, e.initPID(t, c.id))
		cs = append(cs, c)
	}
	pids := waitHostTracers(t, e.run, 1, 10*time.Second)
	for _, c := range cs {
		if p := perContainerTracerPIDs(c.id); len(p) != 0 {
			t.Fatalf("%s has a per-container tracer %v besides the host tracer", c.id, p)
		}
		firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/201", c.port), time.Now())
		callOnce(t, fmt.Sprintf("http://127.0.0.1:%d/status/%d", c.port, 210+len(c.id)%10), 210+len(c.id)%10)
	}
	if now := hostTracerPIDs(e.run); len(now) != 1 || now[0] != pids[0] {
		t.Fatalf("the host tracer changed while containers ran: %v, then %v", pids, now)
	}
	for i, c := range cs {
		e.kill(t, c.id)
		e.delete(t, c.id)
		if i < len(cs)-1 && len(hostTracerPIDs(e.run)) != 1 {
			t.Fatalf("the host tracer ended while %d containers still ran\nhook log:\n%s", len(cs)-1-i, e.hookLog())
		}
	}
	waitHostTracers(t, e.run, 0, 10*time.Second)
	for _, c := range cs {
		checkNothingAttached(t, c.dir, c.cgID)
		evs, notices := fileLines(t, filepath.Join(e.out, c.id+".json"))
		if len(notices) != 0 {
			t.Errorf("%s: unexpected notices %q", c.id, notices)
		}
		want := 210 + len(c.id)%10
		if !hostHasEvent(evs, c.id, fmt.Sprintf("/status/%d", want), want) {
			t.Errorf("%s: its call is not in its file: %+v\nhook log:\n%s", c.id, evs, e.hookLog())
		}
		for _, ev := range evs {
			if ev.ContainerID != c.id {
				t.Errorf("%s: event of another container: %+v", c.id, ev)
			}
		}
	}
	if m, _ := filepath.Glob(filepath.Join(e.mount, "boxtap", "host-*")); len(m) != 0 {
		t.Errorf("host tracer cgroups left behind: %v", m)
	}
	if _, err := os.Stat(filepath.Join(e.run, hostSocketName)); !os.IsNotExist(err) {
		t.Errorf("the host tracer's socket is left behind: %v", err)
	}
}

// kill -9 of the host tracer: the next hooked start starts a new one,
// which resumes the container the dead one traced and writes a notice into
// its file; both containers are traced afterwards.
func TestHookHostTracerKilledIsRecoveredByNextHook(t *testing.T) {
	e := newHookEnv(t)
	hooks := e.hostHooks(t, "")
	a, b := e.prefix+"ka", e.prefix+"kb"
	pa, pb := itest.FreePort(t), itest.FreePort(t)
	if err := e.start(t, a, e.bundle(t, a, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", pa))); err != nil {
		t.Fatal(err)
	}
	firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/201", pa), time.Now())
	waitFileHas(t, filepath.Join(e.out, a+".json"), `"uri_path":"/status/201"`, 30*time.Second)
	old := waitHostTracers(t, e.run, 1, 10*time.Second)
	if err := exec.Command("kill", "-9", strconv.Itoa(old[0])).Run(); err != nil {
		t.Fatal(err)
	}
	waitHostTracers(t, e.run, 0, 10*time.Second)
	if err := e.start(t, b, e.bundle(t, b, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", pb))); err != nil {
		t.Fatal(err)
	}
	now := waitHostTracers(t, e.run, 1, 10*time.Second)
	if now[0] == old[0] {
		t.Fatalf("the host tracer %d was not replaced", old[0])
	}
	if p := perContainerTracerPIDs(b); len(p) != 0 {
		t.Fatalf("%s went to a per-container tracer %v instead of a new host tracer\nhook log:\n%s", b, p, e.hookLog())
	}
	firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/202", pb), time.Now())
	callOnce(t, fmt.Sprintf("http://127.0.0.1:%d/status/207", pa), 207)
	for _, id := range []string{a, b} {
		e.kill(t, id)
		e.delete(t, id)
	}
	waitHostTracers(t, e.run, 0, 10*time.Second)
	evA, notA := fileLines(t, filepath.Join(e.out, a+".json"))
	evB, notB := fileLines(t, filepath.Join(e.out, b+".json"))
	if len(notA) != 1 || !strings.Contains(notA[0], "ended unexpectedly") || !strings.Contains(notA[0], "resumed") {
		t.Errorf("%s: want one notice of the crash and the resumption, have %q\nhook log:\n%s", a, notA, e.hookLog())
	}
	if len(notB) != 0 {
		t.Errorf("%s: started after the crash, yet has notices %q", b, notB)
	}
	if !hostHasEvent(evA, a, "/status/201", 201) || !hostHasEvent(evA, a, "/status/207", 207) {
		t.Errorf("%s: the calls before and after the crash are not both in its file: %+v", a, evA)
	}
	if !hostHasEvent(evB, b, "/status/202", 202) {
		t.Errorf("%s: its call is not in its file: %+v", b, evB)
	}
}

// A host tracer killed while no hook came afterwards: the container's
// poststop writes the notice into its file.
func TestHookHostTracerKilledNoticeWrittenAtStop(t *testing.T) {
	e := newHookEnv(t)
	id := e.prefix + "kstop"
	port := itest.FreePort(t)
	if err := e.start(t, id, e.bundle(t, id, e.hostHooks(t, ""), "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))); err != nil {
		t.Fatal(err)
	}
	firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/201", port), time.Now())
	old := waitHostTracers(t, e.run, 1, 10*time.Second)
	if err := exec.Command("kill", "-9", strconv.Itoa(old[0])).Run(); err != nil {
		t.Fatal(err)
	}
	waitHostTracers(t, e.run, 0, 10*time.Second)
	e.kill(t, id)
	e.delete(t, id)
	_, notices := fileLines(t, filepath.Join(e.out, id+".json"))
	if len(notices) != 1 || !strings.Contains(notices[0], "ended unexpectedly") {
		t.Fatalf("want one crash notice, have %q\nhook log:\n%s", notices, e.hookLog())
	}
	if _, err := os.Stat(filepath.Join(e.run, hostStateDir, id+".json")); !os.IsNotExist(err) {
		t.Errorf("the container's host state is left behind: %v", err)
	}
}

// An upgrade while containers are traced: a hook of another boxtap binary
// does not hand its container to the running host tracer but starts a
// per-container tracer; both containers are traced, and the old binary's
// host tracer still ends with its last container.
func TestHookHostTracerOfAnotherBuildGivesAPerContainerTracer(t *testing.T) {
	e := newHookEnv(t)
	data, err := os.ReadFile(e.boxtap)
	if err != nil {
		t.Fatal(err)
	}
	upgraded := filepath.Join(e.dir, "boxtap-upgraded")
	if err := os.WriteFile(upgraded, data, 0o755); err != nil {
		t.Fatal(err)
	}
	a, b := e.prefix+"va", e.prefix+"vb"
	pa, pb := itest.FreePort(t), itest.FreePort(t)
	if err := e.start(t, a, e.bundle(t, a, e.hostHooks(t, ""), "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", pa))); err != nil {
		t.Fatal(err)
	}
	host := waitHostTracers(t, e.run, 1, 10*time.Second)
	if err := e.start(t, b, e.bundle(t, b, e.hostHooks(t, upgraded), "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", pb))); err != nil {
		t.Fatal(err)
	}
	if p := perContainerTracerPIDs(b); len(p) != 1 {
		t.Fatalf("the upgraded hook's container has tracers %v, want one per-container tracer\nhook log:\n%s", p, e.hookLog())
	}
	if now := hostTracerPIDs(e.run); len(now) != 1 || now[0] != host[0] {
		t.Fatalf("host tracers %v, want the old one (%d) alone", now, host[0])
	}
	firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/203", pa), time.Now())
	firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/204", pb), time.Now())
	for _, id := range []string{b, a} {
		e.kill(t, id)
		e.delete(t, id)
	}
	waitNoTracer(t, b, 10*time.Second)
	waitHostTracers(t, e.run, 0, 10*time.Second)
	evA, _ := fileLines(t, filepath.Join(e.out, a+".json"))
	evB, _ := fileLines(t, filepath.Join(e.out, b+".json"))
	if !hostHasEvent(evA, a, "/status/203", 203) || !hostHasEvent(evB, b, "/status/204", 204) {
		t.Fatalf("a call is missing: %s %+v; %s %+v\nhook log:\n%s", a, evA, b, evB, e.hookLog())
	}
}

// burnCPUs starts one busy loop per CPU (shell processes the test owns) and
// stops them at cleanup.
func burnCPUs(t *testing.T) {
	for i := 0; i < runtime.NumCPU(); i++ {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
}

// With every CPU busy, hooked starts through the host tracer (the first one
// starts it, the second hands over) still attach within the default
// --timeout (5s): both containers' first responses are in their files and
// the hook did not give up.
func TestHookHostTracerAttachesWithAllCPUsBusy(t *testing.T) {
	e := newHookEnv(t)
	hooks := e.hostHooks(t, "", "--timeout=5s") // the last --timeout wins over hookArgs' 30s
	burnCPUs(t)
	ids := []string{e.prefix + "busy0", e.prefix + "busy1"}
	for i, id := range ids {
		port := itest.FreePort(t)
		if err := e.start(t, id, e.bundle(t, id, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))); err != nil {
			t.Fatal(err)
		}
		firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/%d", port, 221+i), time.Now())
	}
	for _, id := range ids {
		e.kill(t, id)
		e.delete(t, id)
	}
	waitHostTracers(t, e.run, 0, 30*time.Second)
	if log := e.hookLog(); strings.Contains(log, ": error: ") {
		t.Fatalf("the hook reported errors under load:\n%s", log)
	}
	for i, id := range ids {
		evs, _ := fileLines(t, filepath.Join(e.out, id+".json"))
		if !hostHasEvent(evs, id, fmt.Sprintf("/status/%d", 221+i), 221+i) {
			t.Errorf("%s: its first response is not in its file (not attached in time?): %+v\nhook log:\n%s", id, evs, e.hookLog())
		}
	}
}

// Eight hooked containers start at once on an idle host: their hooks race
// to start the host tracer, the lock lets one win, and every container is
// traced by that one host tracer into its own file.
func TestHookHostTracerConcurrentFirstStartsShareOneTracer(t *testing.T) {
	e := newHookEnv(t)
	hooks := e.hostHooks(t, "")
	const n = 8
	ids, ports := make([]string, n), make([]int, n)
	errs := make(chan error, n)
	for i := range ids {
		ids[i], ports[i] = fmt.Sprintf("%sconc%d", e.prefix, i), itest.FreePort(t)
		b := e.bundle(t, ids[i], hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", ports[i]))
		go func(id, b string) { errs <- e.start(t, id, b) }(ids[i], b)
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitHostTracers(t, e.run, 1, 10*time.Second)
	for i, id := range ids {
		if p := perContainerTracerPIDs(id); len(p) != 0 {
			t.Fatalf("%s has a per-container tracer %v\nhook log:\n%s", id, p, e.hookLog())
		}
		firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/%d", ports[i], 230+i), time.Now())
	}
	for _, id := range ids {
		e.kill(t, id)
		e.delete(t, id)
	}
	waitHostTracers(t, e.run, 0, 10*time.Second)
	for i, id := range ids {
		evs, _ := fileLines(t, filepath.Join(e.out, id+".json"))
		if !hostHasEvent(evs, id, fmt.Sprintf("/status/%d", 230+i), 230+i) {
			t.Errorf("%s: its call is not in its file: %+v", id, evs)
		}
		for _, ev := range evs {
			if ev.ContainerID != id {
				t.Errorf("%s: event of another container: %+v", id, ev)
			}
		}
	}
	if log := e.hookLog(); strings.Contains(log, ": error: ") {
		t.Errorf("hook errors:\n%s", log)
	}
}

// Per-container settings stay per container in the host tracer: a
// container whose annotation filters on status=404 gets only its 404s,
// while its neighbour, traced by the same host tracer, gets everything.
func TestHookHostTracerKeepsEachContainersAnnotationFilter(t *testing.T) {
	e := newHookEnv(t)
	hooks := e.hostHooks(t, "")
	filtered, plain := e.prefix+"flt", e.prefix+"all"
	ports := map[string]int{filtered: itest.FreePort(t), plain: itest.FreePort(t)}
	for _, id := range []string{filtered, plain} {
		b := e.bundle(t, id, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", ports[id]))
		if id == filtered {
			setAnnotations(t, b, map[string]string{"io.boxtap.trace": "status=404"})
		}
		if err := e.start(t, id, b); err != nil {
			t.Fatal(err)
		}
	}
	waitHostTracers(t, e.run, 1, 10*time.Second)
	for _, id := range []string{filtered, plain} {
		firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/200", ports[id]), time.Now())
		callOnce(t, fmt.Sprintf("http://127.0.0.1:%d/status/404", ports[id]), 404)
	}
	for _, id := range []string{filtered, plain} {
		e.kill(t, id)
		e.delete(t, id)
	}
	waitHostTracers(t, e.run, 0, 10*time.Second)
	evF, _ := fileLines(t, filepath.Join(e.out, filtered+".json"))
	evP, _ := fileLines(t, filepath.Join(e.out, plain+".json"))
	if len(evF) != 1 || !hostHasEvent(evF, filtered, "/status/404", 404) {
		t.Errorf("%s (status=404): events %+v, want the 404 alone", filtered, evF)
	}
	if !hostHasEvent(evP, plain, "/status/200", 200) || !hostHasEvent(evP, plain, "/status/404", 404) {
		t.Errorf("%s (no filter): events %+v, want the 200 and the 404", plain, evP)
	}
}

// A host tracer that a hook started but that was given no container (its
// attach failed: here the output directory is world-writable, which the
// sink refuses) exits on its own after --timeout. --fail-closed makes runc
// show the hook's error, which proves the host tracer was asked.
func TestHookHostTracerWithNoContainerExits(t *testing.T) {
	e := newHookEnv(t)
	if err := os.Chmod(e.out, 0o777); err != nil {
		t.Fatal(err)
	}
	hooks := e.hostHooks(t, "", "--timeout=3s", "--fail-closed")
	id := e.prefix + "idle"
	err := e.start(t, id, e.bundle(t, id, hooks, "sleep"))
	if err == nil || !strings.Contains(err.Error(), "the host tracer could not trace the container") {
		t.Fatalf("want the start to fail with the host tracer's refusal, have %v", err)
	}
	waitHostTracers(t, e.run, 0, 30*time.Second)
	if _, err := os.Stat(filepath.Join(e.out, id+".json")); !os.IsNotExist(err) {
		t.Errorf("a file was written into the refused directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.run, hostStateDir, id+".json")); !os.IsNotExist(err) {
		t.Errorf("the refused container's host state is left: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(e.mount, "boxtap", "host-*")); len(m) != 0 {
		t.Errorf("host tracer cgroups left behind: %v", m)
	}
}
