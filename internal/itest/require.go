// Package itest holds helpers for boxtap's integration tests: prerequisite checks that skip
// locally but fail in CI, builds of the test binaries, throw-away Docker containers running
// internal/testapp, background processes with captured output, and free ports.
//
// Integration tests are plain Go tests. When the environment variable CI is "true", a missing
// prerequisite (root, Docker, BTF, ...) fails the test instead of skipping it, so that CI can
// never pass by silently skipping everything.
package itest

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true), where missing prerequisites are failures.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require stops the test when cond is false: t.Fatalf in CI, t.Skipf elsewhere.
// The message should name what is missing and how to provide it.
func Require(t testing.TB, cond bool, format string, args ...any) {
	t.Helper()
	if cond {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("prerequisite missing in CI: %s", msg)
		return // only reached with a fake testing.TB
	}
	t.Skipf("skipping: %s (set CI=true to make this a failure)", msg)
}

// RequireRoot requires the test to run as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root (run the tests with sudo, or as root like CI does)")
}

// RequireBPF requires what boxtap's eBPF programs need: root, kernel BTF and a cgroup v2
// mount. It returns the cgroup v2 mount point.
func RequireBPF(t testing.TB) (cgroup2Mount string) {
	t.Helper()
	RequireRoot(t)
	_, err := os.Stat("/sys/kernel/btf/vmlinux")
	Require(t, err == nil, "needs kernel BTF at /sys/kernel/btf/vmlinux (a kernel with CONFIG_DEBUG_INFO_BTF=y): %v", err)
	mount, err := findCgroup2Mount("/proc/self/mountinfo")
	Require(t, err == nil, "needs a cgroup v2 mount: %v", err)
	return mount
}

// findCgroup2Mount returns the first cgroup2 mount point listed in a mountinfo file.
func findCgroup2Mount(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, fsFields := strings.Fields(pre), strings.Fields(post)
		if len(fields) >= 5 && len(fsFields) >= 1 && fsFields[0] == "cgroup2" {
			return unescapeMountPath(fields[4]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read %s: %w", mountinfo, err)
	}
	return "", fmt.Errorf("no cgroup2 file system in %s; mount one with: mount -t cgroup2 none /sys/fs/cgroup/unified", mountinfo)
}

// unescapeMountPath undoes the octal escapes (\040 for space, ...) of /proc mount paths.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
