package output

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
)

// tenantMarker is the file in a subdirectory made by Sub that names the
// tenant it was made for.
const tenantMarker = ".boxtap-tenant"

// validSub matches the subdirectory names Sub accepts: one path element.
var validSub = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckSubdir returns an error unless name can name a subdirectory for Sub.
func CheckSubdir(name string) error {
	// ".json" anywhere could meet a container's file or its rotations.
	if !validSub.MatchString(name) || name == ByNameDir || strings.Contains(name, ".json") {
		return fmt.Errorf("output subdirectory %q: give one name of letters, digits, '.', '_' and '-' (first a letter or digit, at most 64, not %q, without \".json\")", name, ByNameDir)
	}
	return nil
}

// Sub returns the subdirectory name of d as a Dir with d's options, for a
// container whose annotation asks for its own directory. boxtap makes the
// directory itself (0700), together with a marker naming tenant (the
// Kubernetes namespace; "" outside Kubernetes), and refuses any directory
// it did not make that way, or made for another tenant: a pod author can
// choose a directory of the pod's namespace, never one that the node's
// administrator or another namespace uses. Nothing under d is followed
// through a symlink.
func (d *Dir) Sub(name, tenant string) (*Dir, error) {
	if err := CheckSubdir(name); err != nil {
		return nil, err
	}
	path := filepath.Join(d.path, name)
	for range 3 {
		fd, err := unix.Openat(int(d.fd.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			if err := d.makeSub(name, tenant); err != nil {
				return nil, err
			}
			continue // open what is there now (ours, or a racing hook's)
		}
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("output subdirectory %s is a symlink or not a directory: refusing it; boxtap makes the subdirectories an annotation asks for", path)
		}
		if err != nil {
			return nil, fmt.Errorf("output subdirectory %s: %w", path, err)
		}
		f := os.NewFile(uintptr(fd), path)
		if err := checkSub(f, path, tenant); err != nil {
			f.Close()
			return nil, err
		}
		return newDir(path, f, d.opts), nil
	}
	return nil, fmt.Errorf("output subdirectory %s keeps disappearing", path)
}

// makeSub creates name with its marker under a temporary name and renames
// it into place, so that a subdirectory is never seen without its marker.
func (d *Dir) makeSub(name, tenant string) error {
	dirfd := int(d.fd.Fd())
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := ".tmp-sub-" + hex.EncodeToString(rnd[:])
	if err := unix.Mkdirat(dirfd, tmp, dirMode); err != nil {
		return fmt.Errorf("creating output subdirectory %s: %w", filepath.Join(d.path, name), err)
	}
	err := writeMarker(dirfd, tmp, tenant)
	if err == nil {
		err = unix.Renameat2(dirfd, tmp, dirfd, name, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			err = nil // made meanwhile by another hook: checked by the caller
		}
	}
	// Gone after a successful rename; left behind when it failed.
	_ = unix.Unlinkat(dirfd, tmp+"/"+tenantMarker, 0)
	_ = unix.Unlinkat(dirfd, tmp, unix.AT_REMOVEDIR)
	if err != nil {
		return fmt.Errorf("creating output subdirectory %s: %w", filepath.Join(d.path, name), err)
	}
	return nil
}

func writeMarker(dirfd int, dir, tenant string) error {
	fd, err := unix.Openat(dirfd, dir+"/"+tenantMarker, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, fileMode)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tenantMarker)
	_, err = io.WriteString(f, tenant+"\n")
	return errors.Join(err, f.Close())
}

// checkSub accepts an opened subdirectory only if it is ours (owner, mode
// 0700) and its marker names tenant.
func checkSub(f *os.File, path, tenant string) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("output subdirectory %s: %w", path, err)
	}
	if uid := ownerOf(st); uid != os.Geteuid() || st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("output subdirectory %s (owner uid %d, mode %04o) was not made by boxtap: refusing it; an annotation may only name a subdirectory that boxtap creates itself", path, uid, st.Mode().Perm())
	}
	fd, err := unix.Openat(int(f.Fd()), tenantMarker, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("output subdirectory %s has no %s: it was not made by boxtap for an annotation; refusing it", path, tenantMarker)
	}
	m := os.NewFile(uintptr(fd), tenantMarker)
	defer m.Close()
	data, err := io.ReadAll(io.LimitReader(m, 512))
	if err != nil {
		return fmt.Errorf("output subdirectory %s: reading %s: %w", path, tenantMarker, err)
	}
	if owner := string(bytes.TrimSuffix(data, []byte("\n"))); owner != tenant {
		return fmt.Errorf("output subdirectory %s belongs to %s, not to %s: choose another name", path, tenantName(owner), tenantName(tenant))
	}
	return nil
}

func tenantName(t string) string {
	if t == "" {
		return "containers outside Kubernetes"
	}
	return fmt.Sprintf("Kubernetes namespace %q", t)
}

// OpenAppend opens (creating, 0600) the regular file name in the directory
// for appending, never through a symlink: for the hook's log.
func (d *Dir) OpenAppend(name string) (*os.File, error) {
	path := filepath.Join(d.path, name)
	fd, err := unix.Openat(int(d.fd.Fd()), name, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, fileMode)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err == nil && st.Mode().Perm() != fileMode {
		err = f.Chmod(fileMode)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}
