package hook

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// LimitMemory bounds the memory of the tracer's cgroup to max bytes, so that
// traffic a container sends cannot make the tracer, which runs outside the
// container's own limit, allocate without bound. In cgroup v2 it enables the
// memory controller for <mount>/boxtap and sets memory.max. On a hybrid host,
// whose memory controller is on a v1 hierarchy, it creates a v1 memory
// cgroup (boxtap/<id> below the hook's own) with memory.limit_in_bytes,
// which the tracer joins with JoinMemoryV1.
func (c *TracerCgroup) LimitMemory(max int64) error {
	limit := []byte(strconv.FormatInt(max, 10))
	parent := filepath.Dir(c.Dir)
	if hasController(filepath.Join(filepath.Dir(parent), "cgroup.subtree_control"), "memory") {
		if !hasController(filepath.Join(parent, "cgroup.subtree_control"), "memory") {
			if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
				return fmt.Errorf("enabling the memory controller for %s: %w", parent, err)
			}
		}
		if err := os.WriteFile(filepath.Join(c.Dir, "memory.max"), limit, 0); err != nil {
			return fmt.Errorf("setting memory.max of the tracer's cgroup %s: %w", c.Dir, err)
		}
		return nil
	}
	dir, err := memoryV1Dir(filepath.Base(c.Dir))
	if err != nil {
		return fmt.Errorf("limiting the tracer's memory: the cgroup v2 hierarchy has no memory controller and %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the tracer's memory cgroup %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), limit, 0); err != nil {
		return fmt.Errorf("setting memory.limit_in_bytes of %s: %w", dir, err)
	}
	c.memV1 = dir
	return nil
}

// JoinMemoryV1 moves process pid into the v1 memory cgroup LimitMemory made,
// if it made one.
func (c *TracerCgroup) JoinMemoryV1(pid int) error {
	if c.memV1 == "" {
		return nil
	}
	if err := os.WriteFile(filepath.Join(c.memV1, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("moving the tracer into its memory cgroup %s: %w", c.memV1, err)
	}
	return nil
}

// MemoryV1Dir is the v1 memory cgroup of container id's tracer, or "" when
// the host has no v1 memory hierarchy.
func MemoryV1Dir(id string) string {
	dir, err := memoryV1Dir(id)
	if err != nil {
		return ""
	}
	return dir
}

// memoryV1Dir is <v1 memory mount>/<this process's memory cgroup>/boxtap/<id>.
func memoryV1Dir(id string) (string, error) {
	if err := ValidID(id); err != nil {
		return "", err
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("reading mountinfo: %w", err)
	}
	defer mi.Close()
	mount, ok := findMemoryV1Mount(mi)
	if !ok {
		return "", errors.New("no cgroup v1 memory hierarchy is mounted either: enable the memory controller in cgroup v2")
	}
	pc, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("reading /proc/self/cgroup: %w", err)
	}
	own := "/"
	for _, line := range strings.Split(string(pc), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), "memory") {
			own = parts[2]
		}
	}
	return filepath.Join(mount, filepath.Clean("/"+own), "boxtap", id), nil
}

// findMemoryV1Mount returns the mount point of the cgroup v1 hierarchy that
// carries the memory controller, from text in /proc/self/mountinfo format.
func findMemoryV1Mount(r io.Reader) (string, bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if sep < 5 || sep+3 >= len(f) || f[sep+1] != "cgroup" {
			continue
		}
		if slices.Contains(strings.Split(f[sep+3], ","), "memory") {
			return f[4], true
		}
	}
	return "", false
}

// hasController reports whether a cgroup.subtree_control (or
// cgroup.controllers) file lists name.
func hasController(file, name string) bool {
	b, err := os.ReadFile(file)
	return err == nil && slices.Contains(strings.Fields(string(b)), name)
}

// LeaveMemoryV1 moves the calling process out of container id's v1 memory
// cgroup, if it is in one, and removes it, so that a tracer leaves no
// cgroup behind on a hybrid host.
func LeaveMemoryV1(id string) error {
	pc, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return fmt.Errorf("reading /proc/self/cgroup: %w", err)
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("reading mountinfo: %w", err)
	}
	defer mi.Close()
	mount, ok := findMemoryV1Mount(mi)
	if !ok {
		return nil
	}
	for _, line := range strings.Split(string(pc), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !slices.Contains(strings.Split(parts[1], ","), "memory") {
			continue
		}
		own := filepath.Clean("/" + parts[2])
		if filepath.Base(own) != id || filepath.Base(filepath.Dir(own)) != "boxtap" {
			return nil
		}
		dir := filepath.Join(mount, own)
		outside := filepath.Dir(filepath.Dir(dir))
		if err := os.WriteFile(filepath.Join(outside, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return fmt.Errorf("leaving memory cgroup %s: %w", dir, err)
		}
		return RemoveCgroupDir(dir, time.Second)
	}
	return nil
}
