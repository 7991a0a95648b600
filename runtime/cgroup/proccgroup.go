package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// PathOfPID returns the cgroup v2 path of process pid, relative to the cgroup2
// mount (and to the reader's cgroup namespace root), e.g. "/docker/<id>".
func PathOfPID(pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("cgroup of pid %d: not a valid process ID (is the container running?)", pid)
	}
	name := "/proc/" + strconv.Itoa(pid) + "/cgroup"
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("cgroup of pid %d: process does not exist (it may have exited): %w", pid, err)
		}
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	defer f.Close()
	p, err := ParseProcCgroup(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// ParseProcCgroup returns the path from the cgroup v2 line ("0::/path") of
// text in the /proc/PID/cgroup format. Hybrid systems list v1 hierarchies too;
// those lines are ignored.
func ParseProcCgroup(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || id != "0" {
			continue
		}
		controllers, p, ok := strings.Cut(rest, ":")
		if !ok || controllers != "" {
			continue
		}
		if !strings.HasPrefix(p, "/") {
			return "", fmt.Errorf("cgroup v2 line has path %q, want an absolute path", p)
		}
		return p, nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read cgroup file: %w", err)
	}
	return "", errors.New("no cgroup v2 line (\"0::/...\"): the process is not in the unified hierarchy; boxtap needs cgroup v2 (unified or hybrid mode)")
}
