package itest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// recordingTB records Skipf/Fatalf instead of stopping the test.
type recordingTB struct {
	testing.TB
	skipped, fatal string
}

func (r *recordingTB) Skipf(format string, args ...any)  { r.skipped = fmt.Sprintf(format, args...) }
func (r *recordingTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func TestRequireSkipsLocallyAndFailsInCI(t *testing.T) {
	tests := []struct {
		ci, wantSkip, wantFatal bool
		cond                    bool
	}{
		{ci: false, cond: true},
		{ci: true, cond: true},
		{ci: false, cond: false, wantSkip: true},
		{ci: true, cond: false, wantFatal: true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("ci=%v/cond=%v", tc.ci, tc.cond), func(t *testing.T) {
			t.Setenv("CI", strconv.FormatBool(tc.ci))
			rec := &recordingTB{TB: t}
			Require(rec, tc.cond, "needs %s", "a widget")
			if got := rec.skipped != ""; got != tc.wantSkip {
				t.Errorf("skipped = %q, want skip %v", rec.skipped, tc.wantSkip)
			}
			if got := rec.fatal != ""; got != tc.wantFatal {
				t.Errorf("fatal = %q, want fatal %v", rec.fatal, tc.wantFatal)
			}
			for _, msg := range []string{rec.skipped, rec.fatal} {
				if msg != "" && !strings.Contains(msg, "needs a widget") {
					t.Errorf("message %q does not carry the reason", msg)
				}
			}
		})
	}
}

func TestFindCgroup2Mount(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hybrid := write("hybrid", ""+
		"25 1 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"+
		"26 25 0:24 / /sys/fs/cgroup/cpu rw shared:7 - cgroup cgroup rw,cpu\n"+
		"27 25 0:25 / /sys/fs/cgroup/my\\040unified rw shared:8 - cgroup2 cgroup2 rw\n")
	if got, err := findCgroup2Mount(hybrid); err != nil || got != "/sys/fs/cgroup/my unified" {
		t.Errorf("hybrid: got %q, %v; want %q", got, err, "/sys/fs/cgroup/my unified")
	}
	v1 := write("v1", "26 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
	if _, err := findCgroup2Mount(v1); err == nil || !strings.Contains(err.Error(), "mount -t cgroup2") {
		t.Errorf("v1 only: err = %v, want advice to mount cgroup2", err)
	}
	if _, err := findCgroup2Mount(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: want an error")
	}
}

func TestFreePortIsBindable(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port %d not bindable on 127.0.0.1: %v", port, err)
	}
	defer l.Close()
	if hasIPv6Loopback() {
		l6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d not bindable on ::1: %v", port, err)
		}
		l6.Close()
	}
}

func TestProcCollectsOutputAndSignals(t *testing.T) {
	sh := "/bin/sh"
	p := StartProc(t, context.Background(), sh, "-c", `trap 'echo got-term; exit 3' TERM; echo one; echo two >&2; printf 'three\npart'; while :; do sleep 0.05; done`)
	line, err := p.WaitLine("thr", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if line != "three" {
		t.Errorf("WaitLine = %q, want %q", line, "three")
	}
	if err := p.WaitStderr("two", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := p.Lines(); !reflect.DeepEqual(got, []string{"one", "three"}) {
		t.Errorf("Lines = %q, want [one three] (the unterminated %q stays pending)", got, "part")
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = p.Wait(10 * time.Second)
	var exitErr interface{ ExitCode() int }
	if !asExit(err, &exitErr) || exitErr.ExitCode() != 3 {
		t.Fatalf("Wait = %v, want exit status 3 from the TERM trap", err)
	}
	// The pending partial line is flushed at exit.
	if got := p.Lines(); !reflect.DeepEqual(got, []string{"one", "three", "partgot-term"}) {
		t.Errorf("Lines after exit = %q", got)
	}
}

func asExit(err error, target *interface{ ExitCode() int }) bool {
	e, ok := err.(interface{ ExitCode() int })
	if ok {
		*target = e
	}
	return ok
}

func TestProcWaitErrorsAreBoundedAndExplained(t *testing.T) {
	p := StartProc(t, context.Background(), "/bin/sh", "-c", "echo bye >&2; exit 0")
	_, err := p.WaitLine("never", 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "process exited first") || !strings.Contains(err.Error(), "bye") {
		t.Fatalf("WaitLine error = %v, want 'process exited first' with stderr", err)
	}

	slow := StartProc(t, context.Background(), "/bin/sh", "-c", "sleep 30")
	if err := slow.WaitStderr("x", 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not within") {
		t.Fatalf("WaitStderr error = %v, want a timeout", err)
	}
	if err := slow.Wait(50 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("Wait error = %v, want 'still running'", err)
	}
	// Cleanup kills the sleeping shell.
}

func TestProcContextCancelKills(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := StartProc(t, ctx, "/bin/sh", "-c", "sleep 30")
	cancel()
	if err := p.Wait(10 * time.Second); err == nil || strings.Contains(err.Error(), "still running") {
		t.Fatalf("Wait after cancel = %v, want a kill exit", err)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestBuiltTestAppServesOnHost(t *testing.T) {
	b := NewBuilder()
	bin := b.TestApp(t)
	if again := b.TestApp(t); again != bin {
		t.Errorf("second TestApp = %q, want the cached %q", again, bin)
	}
	port := FreePort(t)
	p := StartProc(t, context.Background(), bin, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	if _, err := p.WaitLine("listening", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	status, body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/status/200", port))
	if status != 200 || body != "status 200\n" {
		t.Fatalf("GET /status/200 = %d %q", status, body)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatalf("testapp serve did not exit cleanly on SIGTERM: %v", err)
	}
}

func TestContainerName(t *testing.T) {
	a, b := containerName("TestX/sub case#1"), containerName("TestX/sub case#1")
	if a == b {
		t.Errorf("two names are equal: %q", a)
	}
	if unsafeNameChars.MatchString(a) || !strings.HasPrefix(a, "boxtap-itest-TestX-sub-case-1-") {
		t.Errorf("name %q is not a clean docker name", a)
	}
}

func TestDockerRunsTestAppWithHostNetwork(t *testing.T) {
	d := RequireDocker(t)
	ref := d.TestImage(t)
	if !strings.HasPrefix(ref, TestImagePrefix+":") {
		t.Fatalf("image ref %q lacks the %s prefix", ref, TestImagePrefix)
	}
	if again := d.TestImage(t); again != ref {
		t.Errorf("second TestImage = %q, want %q", again, ref)
	}
	port := FreePort(t)
	c := d.Run(t, RunOpts{Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}})
	if err := c.WaitLog("listening", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if pid := c.PID(); pid <= 0 {
		t.Errorf("PID = %d, want the host pid of the container's init", pid)
	} else if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "testapp" {
		t.Errorf("/proc/%d/comm = %q, %v; want testapp", pid, comm, err)
	}
	status, body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/status/200", port))
	if status != 200 || body != "status 200\n" {
		t.Fatalf("GET /status/200 from the host = %d %q", status, body)
	}
	out, err := c.Exec("/testapp", "get", "-url", fmt.Sprintf("http://127.0.0.1:%d/bytes/42", port), "-n", "2")
	if err != nil || out != "200 42\n200 42\n" {
		t.Fatalf("testapp get inside the container = %q, %v", out, err)
	}
	c.Stop()
	if c.Running() {
		t.Error("container still running after Stop")
	}
}

func TestWaitLogReportsStoppedContainer(t *testing.T) {
	d := RequireDocker(t)
	c := d.Run(t, RunOpts{Args: []string{"no-such-command"}})
	err := c.WaitLog("listening", 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "stopped before logging") || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("WaitLog error = %v, want 'stopped before logging' with the log", err)
	}
}

// TestFreePortNeverRepeats: two servers of one test process must never be
// given the same port, even though each probe socket is closed at once.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for i := 0; i < 200; i++ {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("FreePort returned %d twice", p)
		}
		seen[p] = true
	}
}
