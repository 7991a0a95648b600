package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/hook"
	"github.com/boxtap/boxtap/internal/itest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestHookTracerMemoryIsLimited: the tracer that the hook leaves running outside the
// container's own cgroup gets --memory-budget as its cgroup's memory limit (memory.max in
// cgroup v2, or memory.limit_in_bytes of a v1 memory cgroup on a hybrid host), and leaves
// no cgroup behind when it ends. In both --tracer modes: the host tracer's limit covers
// all its containers.
func TestHookTracerMemoryIsLimited(t *testing.T) {
	for _, mode := range []string{tracerHost, tracerPerContainer} {
		t.Run(mode, func(t *testing.T) { hookTracerMemoryIsLimited(t, mode) })
	}
}

func hookTracerMemoryIsLimited(t *testing.T, mode string) {
	e := newHookEnv(t)
	port := itest.FreePort(t)
	id := e.prefix + "memlim"
	const budget = 96 << 20
	args := e.hookArgs(fmt.Sprintf("--memory-budget=%dMiB", budget>>20), "--tracer="+mode)
	hooks := &specs.Hooks{
		CreateRuntime: []specs.Hook{{Path: e.boxtap, Args: append([]string{"boxtap", "hook", "createRuntime"}, args...)}},
		Poststop:      []specs.Hook{{Path: e.boxtap, Args: append([]string{"boxtap", "hook", "poststop"}, args...)}},
	}
	b := e.bundle(t, id, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	if err := e.start(t, id, b); err != nil {
		t.Fatal(err)
	}
	pids := tracerPIDs(id)
	if len(pids) != 1 {
		t.Fatalf("want one tracer for %s, have %v\nhook log:\n%s", id, pids, e.hookLog())
	}
	pid := strconv.Itoa(pids[0])

	// A per-container tracer's cgroup is named after the container, the host
	// tracer's is given on its command line.
	name := id
	if mode == tracerHost {
		name = cmdlineFlag(t, pids[0], "--cgroup-name=")
	}
	v2 := filepath.Join(e.mount, "boxtap", name)
	v1 := hook.MemoryV1Dir(name)
	if v1 != "" {
		// The boxtap/ level below this process's own memory cgroup: removed when empty.
		t.Cleanup(func() { os.Remove(filepath.Dir(v1)) })
	}
	var limitFile string
	switch {
	case memFileExists(filepath.Join(v2, "memory.max")):
		limitFile = filepath.Join(v2, "memory.max")
		if procs, _ := os.ReadFile(filepath.Join(v2, "cgroup.procs")); !memContainsLine(string(procs), pid) {
			t.Errorf("the tracer %s is not in its cgroup %s: %q", pid, v2, procs)
		}
	case v1 != "":
		limitFile = filepath.Join(v1, "memory.limit_in_bytes")
		if procs, err := os.ReadFile(filepath.Join(v1, "cgroup.procs")); err != nil || !memContainsLine(string(procs), pid) {
			t.Errorf("the tracer %s is not in its v1 memory cgroup %s: %q %v", pid, v1, procs, err)
		}
	default:
		t.Fatal("neither cgroup v2 nor v1 offers a memory controller here")
	}
	got, err := os.ReadFile(limitFile)
	if err != nil {
		t.Fatalf("the tracer's cgroup has no memory limit: %v\nhook log:\n%s", err, e.hookLog())
	}
	if strings.TrimSpace(string(got)) != strconv.Itoa(budget) {
		t.Errorf("%s = %q, want %d (--memory-budget)", limitFile, strings.TrimSpace(string(got)), budget)
	}

	e.kill(t, id)
	e.delete(t, id)
	waitNoTracer(t, id, 10*time.Second)
	for _, dir := range []string{v2, v1} {
		if dir == "" {
			continue
		}
		if !hxWaitUntil(5*time.Second, func() bool { return !memFileExists(dir) }) {
			t.Errorf("the tracer's cgroup %s is left behind", dir)
		}
	}
}

func memFileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func memContainsLine(s, line string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

// cmdlineFlag is the value of the flag prefix (e.g. "--cgroup-name=") on the command
// line of process pid.
func cmdlineFlag(t *testing.T, pid int, prefix string) string {
	t.Helper()
	args := procArgs(pid)
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, prefix); ok {
			return v
		}
	}
	t.Fatalf("process %d has no %s on its command line %q", pid, prefix, args)
	return ""
}
