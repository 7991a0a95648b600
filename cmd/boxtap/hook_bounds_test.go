package main

// The hook's time bound and fail-open guarantees, for the cases a runtime
// or a broken setup can create: stdin held open, SIGTERM, a bad command
// line, a panic, a stalled syslog.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	"golang.org/x/sys/unix"
)

// hookRun is one "boxtap hook" process with a stdin pipe the test holds.
type hookRun struct {
	cmd   *exec.Cmd
	stdin *os.File // write end; nil once closed
	out   bytes.Buffer
	done  chan error
}

// startHookProcess starts boxtap hook with args and a stdin pipe that stays
// open until the test closes it; the output directory is out.
func startHookProcess(t *testing.T, bin string, args ...string) *hookRun {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &hookRun{stdin: w, done: make(chan error, 1)}
	h.cmd = exec.Command(bin, append([]string{"hook"}, args...)...)
	h.cmd.Stdin = r
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.out
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	go func() { h.done <- h.cmd.Wait() }()
	t.Cleanup(func() {
		w.Close()
		if h.cmd.ProcessState == nil {
			h.cmd.Process.Kill()
			<-h.done
		}
	})
	return h
}

// wait returns the exit code, or fails the test if the hook is still
// running after a minute (it hung: the bound under test is far shorter).
func (h *hookRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-h.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(time.Minute):
		h.cmd.Process.Kill()
		<-h.done
		t.Fatalf("the hook still ran after a minute: it is not bounded\n%s", h.out.String())
		return -1
	}
}

// hookBoundsDir is an output directory for one case.
func hookBoundsDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bxhb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "out")
}

// loggedLines returns the lines of the hook's log (or, with a syslog
// socket, its stderr) that contain want.
func loggedLines(out, stderr, want string) []string {
	data, _ := os.ReadFile(filepath.Join(out, hookLogName))
	if _, err := os.Stat(syslogSocket); err == nil {
		data = []byte(stderr) // syslog takes the line; stderr carries it too
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, want) {
			lines = append(lines, l)
		}
	}
	return lines
}

// A runtime that keeps stdin open without writing the state must not hang
// the start: the hook gives up within --timeout, logs why and exits 0 (1
// with --fail-closed). With the state written and stdin still open, the
// hook goes on without waiting for the end of input.
func TestHookStdinHeldOpenFailsOpenWithinTimeout(t *testing.T) {
	bin := itest.BuildBoxtap(t)
	for _, failClosed := range []bool{false, true} {
		out := hookBoundsDir(t)
		args := []string{"createRuntime", "--output-dir=" + out, "--run-dir=" + out + "/run", "--timeout=2s"}
		want := 0
		if failClosed {
			args, want = append(args, "--fail-closed"), 1
		}
		h := startHookProcess(t, bin, args...)
		if code := h.wait(t); code != want {
			t.Errorf("fail-closed %v: exit %d, want %d\n%s", failClosed, code, want, h.out.String())
		}
		if lines := loggedLines(out, h.out.String(), "no complete OCI state on stdin within --timeout"); len(lines) != 1 {
			t.Errorf("fail-closed %v: %d log lines name the cause, want 1\n%s", failClosed, len(lines), h.out.String())
		}
	}

	out := hookBoundsDir(t)
	h := startHookProcess(t, bin, "createRuntime", "--output-dir="+out, "--run-dir="+out+"/run", "--timeout=1m")
	fmt.Fprintf(h.stdin, `{"ociVersion":"1.0.2","id":"bxhb-held","status":"creating","pid":0,"bundle":"%s/no-bundle"}`, out)
	if code := h.wait(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, h.out.String())
	}
	if lines := loggedLines(out, h.out.String(), "bxhb-held: error:"); len(lines) != 1 || strings.Contains(lines[0], "stdin") {
		t.Errorf("want one error about the container's bundle, not about stdin: %q\n%s", lines, h.out.String())
	}
}

// SIGTERM (a runtime giving up on the hook, a node shutting down) ends a
// hook that waits for its stdin at once, logged, failing open.
func TestHookSIGTERMEndsItAndFailsOpen(t *testing.T) {
	bin := itest.BuildBoxtap(t)
	out := hookBoundsDir(t)
	h := startHookProcess(t, bin, "createRuntime", "--output-dir="+out, "--run-dir="+out+"/run", "--timeout=10m")
	// Signal only once the hook reads its stdin (it handles SIGTERM by
	// then; before, the default action would kill it and prove nothing):
	// the start of a state is written, and taken from the pipe.
	if _, err := h.stdin.WriteString(`{"ociVersion":`); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		n, err := unix.IoctlGetInt(int(h.stdin.Fd()), unix.TIOCINQ) // FIONREAD
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if i == 5000 {
			t.Fatalf("the hook never read its stdin\n%s", h.out.String())
		}
		time.Sleep(time.Millisecond)
	}
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := h.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0 (fail open)\n%s", code, h.out.String())
	}
	if lines := loggedLines(out, h.out.String(), "interrupted by a signal"); len(lines) != 1 {
		t.Errorf("%d log lines say the hook was interrupted, want 1\n%s", len(lines), h.out.String())
	}
}

// A bad flag used to exit 80 (kong's usage error), which fails the start
// without --fail-closed. Now it is logged and fails open.
func TestHookBadFlagFailsOpen(t *testing.T) {
	bin := itest.BuildBoxtap(t)
	for _, tc := range []struct {
		flag, want string
	}{
		{"--no-such-flag", "unknown flag --no-such-flag"},
		{"--timeout=soon", "--timeout"},
		{"--max-size=lots", "--max-size"},
	} {
		for _, failClosed := range []bool{false, true} {
			out := hookBoundsDir(t)
			args := []string{"createRuntime", "--output-dir=" + out, tc.flag}
			want := 0
			if failClosed {
				args, want = append(args, "--fail-closed"), 1
			}
			h := startHookProcess(t, bin, args...)
			h.stdin.Close()
			if code := h.wait(t); code != want {
				t.Errorf("%s, fail-closed %v: exit %d, want %d\n%s", tc.flag, failClosed, code, want, h.out.String())
			}
			if lines := loggedLines(out, h.out.String(), "bad command line"); len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("%s: want one log line naming it, have %q\n%s", tc.flag, lines, h.out.String())
			}
		}
	}
}

// A panic in the hook is recovered: logged with its value, and the start
// fails open (closed with --fail-closed).
func TestHookPanicFailsOpenWithTheErrorLogged(t *testing.T) {
	for _, failClosed := range []bool{false, true} {
		out := hookBoundsDir(t)
		c := &hookCmd{Stage: "createRuntime", hookSettings: hookSettings{OutputDir: out, Timeout: time.Minute, FailClosed: failClosed}}
		var stderr bytes.Buffer
		lg := newHookLogger(out, c.Stage, 100*time.Millisecond)
		lg.stderr = &stderr
		code := c.runBounded(context.Background(), time.Now(), nil, lg, func(context.Context, *hookLogger) error {
			var m map[string]int
			m["boom"]++ // a nil-map write panics
			return nil
		})
		want := 0
		if failClosed {
			want = 1
		}
		if code != want {
			t.Errorf("fail-closed %v: code %d, want %d", failClosed, code, want)
		}
		if lines := loggedLines(out, stderr.String(), "panic: \"assignment to entry in nil map\""); len(lines) != 1 {
			t.Errorf("fail-closed %v: the panic is not logged once:\n%s", failClosed, stderr.String())
		}
	}
}

// A syslog daemon that stops reading must not block the hook: each write
// has a deadline (log/syslog has none, and blocked for as long as the
// daemon was stuck).
func TestHookSyslogWritesHaveADeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // never read: the queue fills up
	s, err := dialSyslog(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.conn.Close()
	msg := strings.Repeat("x", 1000)
	for i := 0; i < 100000; i++ {
		err := s.write(6, msg, time.Now().Add(20*time.Millisecond))
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write %d: %v, want a deadline error", i, err)
		}
		return
	}
	t.Fatal("100000 writes to a socket nobody reads all succeeded; the test did not fill the queue")
}

// A step that does not honour the deadline (here: reading a pid file that
// is a FIFO, which blocks in open) is cut off by the watchdog: the hook
// still ends within --timeout, logged, failing open.
func TestHookWatchdogEndsAStuckHookWithinTimeout(t *testing.T) {
	bin := itest.BuildBoxtap(t)
	out := hookBoundsDir(t)
	run := filepath.Join(filepath.Dir(out), "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(run, "bxhb-stuck.pid"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHookProcess(t, bin, "createRuntime", "--output-dir="+out, "--run-dir="+run, "--timeout=2s")
	fmt.Fprintf(h.stdin, `{"ociVersion":"1.0.2","id":"bxhb-stuck","status":"creating","pid":0,"bundle":"%s/no-bundle"}`, out)
	if code := h.wait(t); code != 0 {
		t.Fatalf("exit %d, want 0 (fail open)\n%s", code, h.out.String())
	}
	if lines := loggedLines(out, h.out.String(), "gave up: the hook did not finish within --timeout 2s"); len(lines) != 1 {
		t.Errorf("%d log lines say the hook gave up, want 1\n%s", len(lines), h.out.String())
	}
}
