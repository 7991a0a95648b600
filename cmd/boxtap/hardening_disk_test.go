package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	"golang.org/x/sys/unix"
)

// jsonLines reads a JSON Lines file and fails the test on a torn or invalid
// line.
func jsonLines(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("%s ends in a torn line: %q", path, data[max(0, len(data)-80):])
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		if !json.Valid([]byte(line)) {
			t.Fatalf("%s holds an invalid line: %.120q", path, line)
		}
		n++
	}
	return n
}

// TestHardeningOutputDiskFull: with --output-dir on a small tmpfs the disk
// fills up. The error is reported once, the file holds whole lines only, and
// events are written to the same file again once space returns.
func TestHardeningOutputDiskFull(t *testing.T) {
	e := newTraceEnv(t)
	c, url := e.hxServer(t, "diskfull")
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	// A filler file takes most of the space, so that a few dozen events fill
	// the rest; removing it gives the space back.
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 160<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(mnt, "out")
	p := e.startTrace(t, []*itest.Container{c}, "--output-dir", out)
	file := filepath.Join(out, c.ID+".json")

	const full = "no space left on device"
	e.hxGet(t, url, 150, 200) // about 2 KB per event: more than the space left
	if !hxWaitUntil(30*time.Second, func() bool { return strings.Contains(p.Stderr(), full) }) {
		t.Fatalf("no %q report on stderr after filling the disk:\n%s", full, p.Stderr())
	}
	// More events while the disk is still full: they fail again, after the report. The
	// file cannot grow meanwhile, so its count is final however far boxtap got with them.
	e.hxGet(t, url, 50, 200)
	before := jsonLines(t, file)
	if before == 0 || before >= 200 {
		t.Fatalf("%d events in the file while the disk was full, want some but not all 200", before)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	e.hxGet(t, url, 20, 200)
	if !hxWaitUntil(30*time.Second, func() bool { return jsonLines(t, file) >= before+20 }) {
		t.Fatalf("tracing did not resume once space returned: %d events before, %d now", before, jsonLines(t, file))
	}
	x := stopTrace(t, p, syscall.SIGTERM)
	if x.code != 0 {
		t.Fatalf("boxtap exited with status %d:\n%s", x.code, x.stderr)
	}
	after := jsonLines(t, file)
	// One failure streak (the disk full until the filler went), one report: counted at
	// the end, when every event has been handled.
	if n := strings.Count(x.stderr, full); n != 1 {
		t.Errorf("the full disk was reported %d times, want once:\n%s", n, x.stderr)
	}
	m := regexp.MustCompile(`boxtap: (\d+) events \((\d+) of them not written: output errors\)`).FindStringSubmatch(x.stderr)
	if m == nil {
		t.Fatalf("the counts line does not say that events were not written:\n%s", x.stderr)
	}
	events, _ := strconv.Atoi(m[1])
	unwritten, _ := strconv.Atoi(m[2])
	if events != 220 || unwritten != events-after {
		t.Errorf("the counts line says %d events, %d of them not written; want 220, and %d (the file holds %d)", events, unwritten, 220-after, after)
	}
	t.Logf("%d events written before the disk filled, %d after space returned; stderr:\n%s", before, after-before, x.stderr)
}
