package main

import (
	"context"
	"errors"
	"fmt"
	"log/syslog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHookBadSetupsLogOneLineAndFailOpen: an unreadable OCI state and a hook
// run without root each leave one clear line in the hook's log and exit 0,
// so that the container still starts; with --fail-closed they fail. The log is
// syslog when /dev/log exists, else boxtap-hook.log; each run chooses one of the
// two with a /dev of its own, so both are checked on every host.
func TestHookBadSetupsLogOneLineAndFailOpen(t *testing.T) {
	e := newHookEnv(t)
	for _, tool := range []string{"unshare", "setpriv", "mount"} {
		hxRequireTool(t, tool, "util-linux and mount")
	}
	// The unprivileged run needs a binary and an output directory it can use.
	binDir, err := os.MkdirTemp("", "bxh-bin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	os.Chmod(binDir, 0o755)
	bin := filepath.Join(binDir, "boxtap")
	data, err := os.ReadFile(e.boxtap)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	validState := `{"ociVersion":"1.0.2","id":"bxh-badsetup","status":"creating","pid":1,"bundle":"/nonexistent"}`
	cases := []struct {
		name   string
		stdin  string
		asUser bool
		want   string
	}{
		{"unreadable state", "this is not an OCI state", false, "state"},
		{"not root", validState, true, "not root"},
	}
	for _, tc := range cases {
		for _, failClosed := range []bool{false, true} {
			for _, toSyslog := range []bool{false, true} {
				runBadSetup(t, bin, tc.name, tc.stdin, tc.want, tc.asUser, failClosed, toSyslog)
			}
		}
	}
}

// devNamespaceScript runs a command ("$@" after two arguments) in a private mount
// namespace whose /dev is a fresh tmpfs holding only the few devices a hook uses and, when
// the second argument names a socket, that socket as /dev/log. The first argument is an
// empty directory that keeps the real /dev reachable while the tmpfs is set up. The hook
// picks syslog when /dev/log exists, so the test chooses the hook's log, whatever the host
// has.
const devNamespaceScript = `set -e
old=$1; sock=$2; shift 2
mount --bind /dev "$old"
mount -t tmpfs -o mode=0755 bxh-dev /dev
for n in null zero random urandom; do : >/dev/$n; mount --bind "$old/$n" /dev/$n; done
if [ -n "$sock" ]; then : >/dev/log; mount --bind "$sock" /dev/log; fi
umount -l "$old"
exec "$@"`

// runBadSetup runs one bad hook setup and checks its one log line: in syslog (a datagram
// socket of the test, bound as /dev/log) or, without /dev/log, in the output directory's
// boxtap-hook.log.
func runBadSetup(t *testing.T, bin, name, stdin, want string, asUser, failClosed, toSyslog bool) {
	t.Helper()
	label := fmt.Sprintf("%s (fail-closed %v, syslog %v)", name, failClosed, toSyslog)
	// Not t.TempDir(): its parents are closed to other users.
	parent, err := os.MkdirTemp("", "bxh-bad")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	os.Chmod(parent, 0o755)
	out := filepath.Join(parent, "out")
	oldDev := filepath.Join(parent, "dev")
	for _, d := range []string{out, oldDev} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	sock, sockPath := -1, ""
	if toSyslog {
		sockPath = filepath.Join(parent, "log.sock")
		sock = listenDatagrams(t, sockPath)
	}
	argv := []string{bin, "hook", "createRuntime", "--output-dir=" + out, "--run-dir=" + filepath.Join(out, "run"), "--timeout=10s"}
	if failClosed {
		argv = append(argv, "--fail-closed")
	}
	if asUser {
		if err := os.Chown(out, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		argv = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, argv...)
	}
	argv = append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c", devNamespaceScript, "sh", oldDev, sockPath}, argv...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	output, err := cmd.CombinedOutput()
	cancel()
	var ee *exec.ExitError
	switch {
	case !failClosed && err != nil:
		t.Errorf("%s: the hook failed although it fails open: %v\n%s", label, err, output)
	case failClosed && !errors.As(err, &ee):
		t.Errorf("%s: with --fail-closed the hook exited 0 (or did not run: %v)\n%s", label, err, output)
	}
	logFile, _ := os.ReadFile(filepath.Join(out, hookLogName))
	logged := string(logFile)
	if toSyslog {
		if len(logFile) != 0 {
			t.Errorf("%s: with /dev/log the hook also wrote %s:\n%s", label, hookLogName, logFile)
		}
		logged = strings.Join(readDatagrams(t, sock), "\n")
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(logged), "\n") {
		if strings.Contains(l, want) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Errorf("%s: %d log lines name the cause %q, want 1:\n%s\noutput:\n%s", label, len(lines), want, logged, output)
	} else if toSyslog && (!strings.HasPrefix(lines[0], fmt.Sprintf("<%d>", syslog.LOG_DAEMON|syslog.LOG_ERR)) || !strings.Contains(lines[0], "boxtap-hook")) {
		t.Errorf("%s: syslog message %q is not an error of the daemon facility tagged boxtap-hook", label, lines[0])
	}
	if !strings.Contains(string(output), want) {
		t.Errorf("%s: the hook's stderr does not name the cause %q:\n%s", label, want, output)
	}
	if strings.Contains(string(output)+logged, "panic:") {
		t.Errorf("%s: the hook panicked:\n%s", label, output)
	}
}

// listenDatagrams binds a unix datagram socket (as syslog's /dev/log is) at path, open to
// every user, and returns its descriptor, closed when the test ends.
func listenDatagrams(t *testing.T, path string) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("datagram socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatalf("bind %s: %v", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	return fd
}

// readDatagrams returns the datagrams queued on fd, without waiting: the sender has
// exited, so everything it sent is queued already.
func readDatagrams(t *testing.T, fd int) []string {
	t.Helper()
	var msgs []string
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return msgs
		}
		if err != nil {
			t.Fatalf("read syslog datagrams: %v", err)
		}
		msgs = append(msgs, strings.TrimRight(string(buf[:n]), "\n"))
	}
}
