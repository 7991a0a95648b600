package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// ambiguousPair starts sleeping containers until two of them share the first hex digit of
// their IDs (at most 17: there are 16 digits) and returns those two and that digit.
func ambiguousPair(t *testing.T, e *traceEnv) (a, b *itest.Container, prefix string) {
	t.Helper()
	byDigit := map[byte]*itest.Container{}
	for i := 0; i < 17; i++ {
		c := e.startContainer(t, "sleeping", "sleep")
		if prev, ok := byDigit[c.ID[0]]; ok {
			return prev, c, c.ID[:1]
		}
		byDigit[c.ID[0]] = c
	}
	t.Fatal("17 containers and no two IDs share a first digit: impossible")
	return nil, nil, ""
}

// runFailing runs cmd (boxtap, maybe wrapped in setpriv or unshare) and checks the contract
// of a failure: a non-zero exit, exactly one line on stderr that contains every one of
// want, and no panic.
func runFailing(t *testing.T, cmd *exec.Cmd, want ...string) {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() <= 0 {
		t.Fatalf("%v: want a non-zero exit status, got %v; stderr:\n%s", cmd.Args, err, stderr.String())
	}
	msg := stderr.String()
	t.Logf("exit %d, stderr: %s", ee.ExitCode(), msg)
	if strings.Contains(msg, "panic:") || strings.Contains(msg, "goroutine ") {
		t.Fatalf("boxtap panicked:\n%s", msg)
	}
	if lines := strings.Split(strings.TrimRight(msg, "\n"), "\n"); len(lines) != 1 || lines[0] == "" {
		t.Errorf("want exactly one line on stderr, got %d:\n%s", len(lines), msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("stderr does not mention %q:\n%s", w, msg)
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout not empty after a failure:\n%s", stdout.String())
	}
}

func TestTraceFailsWithOneLineAndLeavesNothingAttached(t *testing.T) {
	e := newTraceEnv(t)
	target := e.startContainer(t, "sleeping", "sleep")
	cgroupDir := e.cgroupDirOf(t, target.PID())
	a, b, prefix := ambiguousPair(t, e)

	emptyBTF := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(emptyBTF, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Each wrapper changes the world of one boxtap process only: capabilities dropped from
	// its bounding set, or a private mount namespace (never the host's mounts).
	const privateMounts = "unshare --mount --propagation private -- sh -c"
	tests := []struct {
		name    string
		wrapper []string // command prefix; the boxtap command line follows
		shell   string   // when set, runs `sh -c shell` in a private mount namespace; "$@" is boxtap's command line
		args    []string
		want    []string
	}{
		{name: "unknown container", args: []string{"trace", "boxtap-itest-no-such-container-7f3a"},
			want: []string{"boxtap-itest-no-such-container-7f3a", "docker ps"}},
		{name: "ambiguous ID prefix", args: []string{"trace", prefix},
			want: []string{"matches", a.Name, b.Name, "longer ID prefix"}},
		{name: "Docker not reachable with --runtime docker", args: []string{"trace", "--runtime", "docker", "--docker-host", "unix:///nonexistent.sock", target.Name},
			want: []string{"/nonexistent.sock", "--docker-host"}},
		// In auto mode boxtap falls back to containerd, which leaves Docker's containers to
		// Docker; the one line must still say that Docker did not answer, or the user is
		// told the (running) container does not exist.
		{name: "Docker not reachable", args: []string{"trace", "--docker-host", "unix:///nonexistent.sock", target.Name},
			want: []string{"/nonexistent.sock"}},
		{name: "no privilege", args: []string{"trace", target.Name},
			wrapper: []string{"setpriv", "--inh-caps=-bpf,-perfmon,-net_admin,-sys_admin", "--bounding-set=-bpf,-perfmon,-net_admin,-sys_admin", "--"},
			want:    []string{"CAP_BPF", "root"}},
		{name: "no cgroup v2", args: []string{"trace", target.Name},
			shell: "umount -l " + e.cgroup2 + ` && exec "$@"`,
			want:  []string{"cgroup", "v2"}},
		{name: "no BTF", args: []string{"trace", target.Name},
			shell: "mount --bind " + emptyBTF + ` /sys/kernel/btf/vmlinux && exec "$@"`,
			want:  []string{"BTF", "CONFIG_DEBUG_INFO_BTF"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			argv := append([]string{e.boxtap}, tc.args...)
			switch {
			case tc.shell != "":
				argv = append(append(strings.Fields(privateMounts), tc.shell, "sh"), argv...)
			case tc.wrapper != nil:
				argv = append(append([]string(nil), tc.wrapper...), argv...)
			}
			runFailing(t, exec.CommandContext(ctx, argv[0], argv[1:]...), tc.want...)
			checkDetached(t, cgroupDir)
			checkNoOrphanLinks(t)
		})
	}
	if mount, err := findOwnCgroup2(); err != nil || mount != e.cgroup2 {
		t.Fatalf("the test's own cgroup v2 mount changed: %q, %v (want %q)", mount, err, e.cgroup2)
	}
	if st, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil || st.Size() == 0 {
		t.Fatalf("the host's /sys/kernel/btf/vmlinux changed: %v", err)
	}
}

// findOwnCgroup2 re-reads this process's cgroup v2 mount, to prove the private-namespace
// cases left the host's mounts alone.
func findOwnCgroup2() (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if f := strings.Fields(pre); ok && len(f) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return f[4], nil
		}
	}
	return "", os.ErrNotExist
}
