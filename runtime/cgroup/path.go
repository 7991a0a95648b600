package cgroup

import (
	"errors"
	"fmt"
	"github.com/boxtap/boxtap/internal/display"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dir joins the cgroup2 mount point and a cgroup path relative to it (as
// returned by PathOfPID or ExpandSystemd) and checks that the result is an
// existing directory. It rejects relative mount points, NUL bytes, and ".."
// components that could leave the hierarchy.
func Dir(mount, rel string) (string, error) {
	if strings.ContainsRune(mount, 0) || strings.ContainsRune(rel, 0) {
		return "", fmt.Errorf("cgroup path %q under %q contains a NUL byte", rel, mount)
	}
	if !filepath.IsAbs(mount) {
		return "", fmt.Errorf("cgroup mount %q is not an absolute path", mount)
	}
	for _, part := range strings.Split(rel, "/") {
		if part == ".." {
			return "", fmt.Errorf("cgroup path %q contains \"..\": it must stay inside the cgroup hierarchy", rel)
		}
	}
	dir := filepath.Join(filepath.Clean(mount), filepath.Clean("/"+rel))
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("cgroup directory %s does not exist: the container may have stopped, or boxtap is not in the host cgroup namespace (run it on the host): %w", display.Quote(dir), err)
		}
		return "", fmt.Errorf("cgroup directory %s: %w", display.Quote(dir), err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("cgroup path %s is not a directory", display.Quote(dir))
	}
	return dir, nil
}

// ID returns the cgroup ID of a cgroup v2 directory: its inode number, which
// is the kernfs node ID that bpf_get_current_cgroup_id and bpf_skb_cgroup_id
// report on 64-bit kernels.
func ID(dir string) (uint64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", display.Quote(dir), err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("cgroup id of %s: not on a cgroup2 file system (type %#x); pass a directory under the cgroup v2 mount", display.Quote(dir), fs.Type)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", display.Quote(dir), err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("cgroup id of %s: no inode information", display.Quote(dir))
	}
	if !st.IsDir() {
		return 0, fmt.Errorf("cgroup id of %s: not a directory", display.Quote(dir))
	}
	return sys.Ino, nil
}
