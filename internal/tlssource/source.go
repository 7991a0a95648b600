// Package tlssource is boxtap's second source of HTTP bytes: the plaintext
// of TLS connections, read by uprobes on the TLS library the traced
// containers' processes have mapped (bpf.TLSCollection).
//
// It finds each process's OpenSSL in /proc/PID/maps and attaches through
// the container's own file (/proc/PID/root/<path>), never a host path. A
// uprobe belongs to a file's inode, so each library file is attached once
// (deduplicated by device and inode), however many processes and
// containers map it; the programs filter by cgroup in the kernel.
package tlssource

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/boxtap/boxtap/bpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Source owns the TLS programs and the uprobes attached to library files.
// Add, Remove and ScanPID may be called from any goroutine; Next from one.
type Source struct {
	coll *bpf.TLSCollection

	mu    sync.Mutex
	files map[fileID][]link.Link

	watching chan struct{} // closed when Watch returns; nil if never started
}

// fileID names a library file by device and inode: the uprobe's identity.
type fileID struct{ dev, ino uint64 }

// Open loads the TLS programs.
func Open() (*Source, error) {
	coll, err := bpf.LoadTLS()
	if err != nil {
		return nil, err
	}
	return &Source{coll: coll, files: make(map[fileID][]link.Link)}, nil
}

// Watch instruments, as soon as the kernel reports it, each process of a
// traced cgroup that maps executable code (a program started or exec'd
// after Add, a library loaded by dlopen). It returns when Close is called;
// onErr reports what could not be instrumented. Call it at most once, on a
// goroutine of its own.
func (s *Source) Watch(onErr func(error)) {
	done := make(chan struct{})
	s.mu.Lock()
	s.watching = done
	s.mu.Unlock()
	defer close(done)
	for {
		m, err := s.coll.NextMapped()
		if errors.Is(err, bpf.ErrClosed) {
			return
		}
		if err != nil {
			onErr(fmt.Errorf("reading TLS library notices: %w", err))
			continue
		}
		if err := s.ScanPID(int(m.Tgid)); err != nil {
			onErr(err)
		}
	}
}

// Close stops Watch, detaches every uprobe and releases the programs.
func (s *Source) Close() error {
	_ = s.coll.CloseMapped()
	s.mu.Lock()
	done := s.watching
	s.mu.Unlock()
	if done != nil {
		<-done
	}
	s.mu.Lock()
	var errs []error
	for id, links := range s.files {
		for _, l := range links {
			errs = append(errs, l.Close())
		}
		delete(s.files, id)
	}
	s.mu.Unlock()
	errs = append(errs, s.coll.Close())
	return errors.Join(errs...)
}

// Add starts recording the TLS calls of tasks in the cgroup cgroupID (whose
// directory is cgroupDir) and instruments the TLS libraries its processes
// have mapped now. The error lists the processes it could not instrument;
// the cgroup is traced even then.
func (s *Source) Add(cgroupDir string, cgroupID uint64) error {
	if err := s.coll.TraceCgroup(cgroupID); err != nil {
		return err
	}
	pids, err := cgroupPIDs(cgroupDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, pid := range pids {
		if err := s.ScanPID(pid); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Remove stops recording the cgroup's calls. The uprobes stay until Close:
// other traced cgroups may map the same files, and for untraced tasks a
// probe costs one map lookup.
func (s *Source) Remove(cgroupID uint64) error { return s.coll.UntraceCgroup(cgroupID) }

// ScanPID instruments the OpenSSL libraries process pid has mapped, those
// not already instrumented. A process that exited meanwhile is no error.
func (s *Source) ScanPID(pid int) error {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("reading the mappings of pid %d: %w", pid, err)
	}
	libs, err := OpenSSLPaths(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("reading the mappings of pid %d: %w", pid, err)
	}
	var errs []error
	for _, lib := range libs {
		if err := s.attach(pid, lib); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// attach instruments one library of pid, named as in its mount namespace.
func (s *Source) attach(pid int, lib string) error {
	path := fmt.Sprintf("/proc/%d/root%s", pid, lib)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return nil // the process exited
		}
		return fmt.Errorf("pid %d: %s: %w", pid, lib, err)
	}
	id := fileID{dev: st.Dev, ino: st.Ino}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.files[id]; ok {
		return nil
	}
	links, err := s.coll.AttachOpenSSL(path)
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	s.files[id] = links
	return nil
}

// Files is how many library files are instrumented.
func (s *Source) Files() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.files)
}

// Next returns the next waiting record without blocking; bpf.ErrIdle when
// none waits. The record is valid until the next call.
func (s *Source) Next(rec *bpf.TLSRecord) error { return s.coll.NextTLS(rec) }

// Lost is how many records the kernel could not queue (ring buffer full).
func (s *Source) Lost() (uint64, error) { return s.coll.Lost() }

// OpenSSLPaths returns, once each, the paths of the OpenSSL libraries
// (libssl.so*) mapped in a /proc/PID/maps file, as the process names them.
// Deleted files and anonymous mappings are left out.
func OpenSSLPaths(maps io.Reader) ([]string, error) {
	var paths []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(maps)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		p, ok := mappedPath(sc.Text())
		if !ok || seen[p] || !strings.HasPrefix(filepath.Base(p), "libssl.so") {
			continue
		}
		seen[p] = true
		paths = append(paths, p)
	}
	return paths, sc.Err()
}

// mappedPath is the file of one maps line: the sixth field, which may hold
// spaces. Only absolute paths of files that still exist count.
func mappedPath(line string) (string, bool) {
	rest := line
	for range 5 {
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			return "", false
		}
		rest = strings.TrimLeft(rest[i+1:], " ")
	}
	if !strings.HasPrefix(rest, "/") || strings.HasSuffix(rest, " (deleted)") {
		return "", false
	}
	return rest, true
}

// cgroupPIDs lists the processes of a cgroup and its descendants.
func cgroupPIDs(dir string) ([]int, error) {
	var pids []int
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV) {
				return nil
			}
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the processes of cgroup %s: %w", dir, err)
	}
	return pids, nil
}
