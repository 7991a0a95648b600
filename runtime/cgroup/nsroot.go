package cgroup

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// maxNamespaceDepth bounds the search for the namespace root: deeper
// nesting than this is not a Kubernetes layout.
const maxNamespaceDepth = 16

// NamespaceRoot returns where the reader's cgroup namespace root lies in the
// hierarchy mounted at mount, as a path relative to that mount ("/" in the
// host's cgroup namespace). It serves boxtap in a pod with a private cgroup
// namespace (the default on cgroup v2), which the DaemonSet runs with
// hostPID and the host's /sys/fs/cgroup mounted: there /proc/PID/cgroup
// paths are relative to the pod's own cgroup ("/../../kubepods/..."), and
// joining the host's cgroup namespace would need CAP_SYS_ADMIN.
//
// The depth of the root is the number of ".." that the host's init
// (/proc/1/cgroup) is away from it; the root is the directory at that depth
// whose sub-cgroup the reader itself is in lists the reader's PID in its
// cgroup.procs. Both need the host's PID namespace.
func NamespaceRoot(mount string) (string, error) {
	initPath, err := PathOfPID(1)
	if err != nil {
		return "", err
	}
	depth := leadingUps(initPath)
	if depth == 0 {
		return "/", nil
	}
	self, err := PathOfPID(os.Getpid())
	if err != nil {
		return "", err
	}
	if leadingUps(self) != 0 {
		return "", fmt.Errorf("own cgroup %q is outside the own cgroup namespace", self)
	}
	return findNamespaceRoot(mount, depth, self, os.Getpid())
}

// findNamespaceRoot looks, among the directories depth levels below mount,
// for the one in whose sub-cgroup self the process pid is.
func findNamespaceRoot(mount string, depth int, self string, pid int) (string, error) {
	if depth > maxNamespaceDepth {
		return "", fmt.Errorf("the cgroup namespace root is %d levels deep, more than %d", depth, maxNamespaceDepth)
	}
	want := []byte(strconv.Itoa(pid))
	var found []string
	var walk func(rel string, left int)
	walk = func(rel string, left int) {
		if left == 0 {
			procs, err := os.ReadFile(filepath.Join(mount, rel, self, "cgroup.procs"))
			if err == nil && containsLine(procs, want) {
				found = append(found, "/"+rel)
			}
			return
		}
		entries, err := os.ReadDir(filepath.Join(mount, rel))
		if err != nil {
			return
		}
		for _, en := range entries {
			if en.IsDir() {
				walk(path.Join(rel, en.Name()), left-1)
			}
		}
	}
	walk("", depth)
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("boxtap runs in a cgroup namespace of its own, and its cgroup is not found %d levels below %s: mount the host's /sys/fs/cgroup there and run with the host's PID namespace (hostPID: true)", depth, mount)
	}
	return "", fmt.Errorf("boxtap runs in a cgroup namespace of its own, and its cgroup is ambiguous under %s: %v", mount, found)
}

func containsLine(data, line []byte) bool {
	for _, l := range bytes.Split(data, []byte("\n")) {
		if bytes.Equal(bytes.TrimSpace(l), line) {
			return true
		}
	}
	return false
}

// leadingUps counts the ".." components that a /proc/PID/cgroup path starts
// with.
func leadingUps(p string) int {
	n := 0
	for _, part := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if part != ".." {
			break
		}
		n++
	}
	return n
}

// Resolve turns a path from /proc/PID/cgroup, relative to the reader's
// cgroup namespace root (and so perhaps starting with "/.."), into a path
// relative to the mount, given the root that NamespaceRoot found. A path
// that climbs above the hierarchy's root is refused.
func Resolve(root, rel string) (string, error) {
	if !strings.HasPrefix(root, "/") || !strings.HasPrefix(rel, "/") {
		return "", fmt.Errorf("cgroup paths %q and %q must be absolute", root, rel)
	}
	var parts []string
	for _, p := range strings.Split(root+"/"+rel, "/") {
		switch p {
		case "", ".":
		case "..":
			if len(parts) == 0 {
				return "", fmt.Errorf("cgroup path %q leaves the hierarchy above the namespace root %q", rel, root)
			}
			parts = parts[:len(parts)-1]
		default:
			parts = append(parts, p)
		}
	}
	return "/" + strings.Join(parts, "/"), nil
}
