package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A hooked runc container writes through the same hardened sink as
// "trace --output-dir": a missing output directory is created 0700 (it
// used to leave the container untraced, with the reason only in syslog),
// the file is 0600, --max-size/--max-files rotate it, and a symlink planted
// where a container's file goes is never followed (the hook opened it with
// O_CREAT|O_APPEND, 0640, following symlinks).
func TestHookRuncWritesThroughTheHardenedSink(t *testing.T) {
	e := newHookEnv(t)
	out := filepath.Join(e.dir, "missing", "out")
	hookArgs := func(stage string) []string {
		return []string{"boxtap", "hook", stage, "--output-dir=" + out, "--run-dir=" + e.run, "--timeout=30s", "--max-size=2K", "--max-files=1"}
	}
	hooks := &specs.Hooks{
		CreateRuntime: []specs.Hook{{Path: e.boxtap, Args: hookArgs("createRuntime")}},
		Poststop:      []specs.Hook{{Path: e.boxtap, Args: hookArgs("poststop")}},
	}

	port := itest.FreePort(t)
	id := e.prefix + "sink"
	if err := e.start(t, id, e.bundle(t, id, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))); err != nil {
		t.Fatal(err)
	}
	firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/200", port), time.Now())
	for i := range 20 {
		firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/%d", port, 200+i%5), time.Now())
	}
	e.kill(t, id)
	e.delete(t, id)
	waitNoTracer(t, id, 10*time.Second)
	file := filepath.Join(out, id+".json")
	for path, mode := range map[string]os.FileMode{out: 0o700, file: 0o600, file + ".1": 0o600} {
		st, err := os.Lstat(path)
		if err != nil || st.Mode().Perm() != mode || st.Mode()&os.ModeSymlink != 0 {
			t.Errorf("%s: %v, %v; want mode %04o", path, st, err, mode)
		}
	}
	if _, err := os.Stat(file + ".2"); !os.IsNotExist(err) {
		t.Errorf("--max-files=1 kept a second rotated file: %v", err)
	}
	for _, f := range []string{file, file + ".1"} {
		if st, err := os.Stat(f); err == nil && st.Size() > 2048 {
			t.Errorf("%s is %d bytes, over --max-size=2K", f, st.Size())
		}
		readHookEvents(t, f) // whole JSON lines only
	}

	// A symlink where the next container's file goes.
	victim := filepath.Join(e.dir, "victim")
	if err := os.WriteFile(victim, []byte("untouched\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id2 := e.prefix + "link"
	if err := os.Symlink(victim, filepath.Join(out, id2+".json")); err != nil {
		t.Fatal(err)
	}
	port2 := itest.FreePort(t)
	if err := e.start(t, id2, e.bundle(t, id2, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port2))); err != nil {
		t.Fatalf("the container did not start although the hook fails open: %v", err)
	}
	firstResponse(t, fmt.Sprintf("http://127.0.0.1:%d/status/200", port2), time.Now())
	if pids := tracerPIDs(id2); len(pids) != 0 {
		t.Errorf("a tracer writes through the planted symlink: %v", pids)
	}
	e.kill(t, id2)
	e.delete(t, id2)
	if data, _ := os.ReadFile(victim); string(data) != "untouched\n" {
		t.Errorf("the symlink's target was written: %q", data)
	}
	if st, _ := os.Stat(victim); st.Mode().Perm() != 0o644 {
		t.Errorf("the symlink's target changed mode: %04o", st.Mode().Perm())
	}
	log, _ := os.ReadFile(filepath.Join(out, hookLogName))
	if _, err := os.Stat(syslogSocket); err != nil && !strings.Contains(string(log), id2+".json") {
		t.Errorf("the hook log does not say why %s was not traced:\n%s", id2, log)
	}
}
