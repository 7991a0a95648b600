package tlssource

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// libDirs are where a dynamic loader finds libssl in the images boxtap
// meets (Debian and Ubuntu multiarch, RHEL's lib64, Alpine, /usr/local
// builds).
var libDirs = []string{
	"/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/local/lib64",
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
}

// Arm instruments process pid (of the traced cgroup cgroupID) for the
// OpenSSL libraries found in the usual library directories of root, a
// directory that shows the file system the process is about to run in
// (such as /proc/PID/root/<bundle rootfs> while an OCI hook runs, before
// the runtime pivots into it). It is meant for a process that has not
// exec'd its program yet: the kernel installs a pid's uprobes on a file in
// every mapping of it that process makes later, exec included, so the
// program's first SSL call is seen, with no race against Watch. Symbolic
// links are resolved inside root, never on the host. Files already
// instrumented for pid are skipped. exe, when an absolute path, is the
// program the process will exec: it is instrumented too if OpenSSL is
// linked into it (a static executable maps no library, so no notice would
// ever name it). It returns how many files it instrumented. A library the
// program loads later from another directory (dlopen) needs nothing here:
// the kernel reports the exec (Watch), which sets the uprobe on the dynamic
// loader the program maps (loader.go) before reading its mappings.
func (s *Source) Arm(pid int, cgroupID uint64, root, exe string) (int, error) {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("opening the container's root file system %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	seen := map[[2]uint64]bool{}
	var errs []error
	n := 0
	if strings.HasPrefix(exe, "/") {
		ok, err := s.armExe(pid, cgroupID, rootFD, exe, seen)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			n++
		}
	}
	for _, dir := range libDirs {
		names, err := libsslNames(rootFD, dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, name := range names {
			ok, err := s.armFile(pid, cgroupID, rootFD, filepath.Join(dir, name), seen)
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				n++
			}
		}
	}
	return n, errors.Join(errs...)
}

// libsslNames lists the libssl.so* entries of dir inside the root rootFD.
// A missing directory holds none.
func libsslNames(rootFD int, dir string) ([]string, error) {
	fd, err := openInRoot(rootFD, dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing %s in the container: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	all, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("listing %s in the container: %w", dir, err)
	}
	var names []string
	for _, n := range all {
		if strings.HasPrefix(n, "libssl.so") {
			names = append(names, n)
		}
	}
	return names, nil
}

// armFile instruments one library file, opened inside the root, once per
// (device, inode).
func (s *Source) armFile(pid int, cgroupID uint64, rootFD int, rel string, seen map[[2]uint64]bool) (bool, error) {
	fd, err := openInRoot(rootFD, rel, unix.O_RDONLY)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) {
			return false, nil // a dangling link
		}
		return false, fmt.Errorf("opening %s in the container: %w", rel, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("%s in the container: %w", rel, err)
	}
	k := [2]uint64{st.Dev, st.Ino}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || seen[k] {
		return false, nil
	}
	seen[k] = true
	// The uprobe is set on the file this descriptor holds, whatever the
	// host's mounts look like.
	path := "/proc/self/fd/" + strconv.Itoa(fd)
	if err := s.attachFile(pid, cgroupID, path, &st); err != nil {
		return false, fmt.Errorf("%s: %w", rel, err)
	}
	return true, nil
}

// openInRoot opens rel as if root were "/": symbolic links, absolute ones
// included, and ".." cannot leave it.
func openInRoot(rootFD int, rel string, flags int) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	return unix.Openat2(rootFD, strings.TrimPrefix(rel, "/"), how)
}

// armExe instruments the executable at rel inside the root when it defines
// OpenSSL's functions.
func (s *Source) armExe(pid int, cgroupID uint64, rootFD int, rel string, seen map[[2]uint64]bool) (bool, error) {
	fd, err := openInRoot(rootFD, rel, unix.O_RDONLY)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) {
			return false, nil // not there: the runtime reports it
		}
		return false, fmt.Errorf("opening %s in the container: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	if !DefinesOpenSSL(f) {
		return false, nil
	}
	return s.armFile(pid, cgroupID, rootFD, rel, seen)
}
