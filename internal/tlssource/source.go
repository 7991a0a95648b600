// Package tlssource is boxtap's second source of HTTP bytes: the plaintext
// of TLS connections, read by uprobes on the TLS library the traced
// containers' processes have mapped (bpf.TLSCollection).
//
// It finds each process's OpenSSL in /proc/PID/maps and attaches through
// the container's own file (/proc/PID/root/<path>), never a host path.
// Uprobes are set per traced process (the perf event's pid): a uprobe on a
// file's inode without one traps in every process that maps the file, on
// the host and in untraced containers, and a trap costs microseconds even
// when the program returns at once (measured: an untraced nginx sharing the
// file used about four times the CPU per response). The programs still
// filter by cgroup. Processes that start or fork later are reported by the
// kernel (Watch), and so are the libraries a traced process loads later,
// through a uprobe on its dynamic loader (loader.go).
package tlssource

import (
	"bufio"
	"bytes"
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
	procs map[procFile]*probes
	// exes caches each executable's verdict (classify.go); reported holds
	// the processes already reported unreadable.
	exes         map[exeKey]Verdict
	reported     map[procKey]bool
	onUnreadable func(Unreadable)
	// mute holds the dynamic loaders already reported without
	// _dl_debug_state (loader.go): one line per file, not per process.
	mute map[exeKey]bool

	watching chan struct{}  // closed when Watch returns; nil if never started
	closing  sync.WaitGroup // prune's detaching goroutines
	onGap    func(Gap)      // see OnInstrumented; set before Watch
}

// procFile is one library file (by device and inode) in one process.
type procFile struct {
	pid      int
	dev, ino uint64
}

// probes are the uprobes set for one procFile.
type probes struct {
	links  []link.Link
	start  uint64 // the process's start time: a reused pid is another process
	cgroup uint64 // the traced cgroup it was found in
	loader bool   // the dynamic loader's probe (loader.go), not a TLS library's
}

func (p *probes) close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// Open loads the TLS programs.
func Open() (*Source, error) {
	coll, err := bpf.LoadTLS()
	if err != nil {
		return nil, err
	}
	return &Source{coll: coll, procs: make(map[procFile]*probes), exes: make(map[exeKey]Verdict), reported: make(map[procKey]bool), mute: make(map[exeKey]bool)}, nil
}

// Watch instruments, as soon as the kernel reports it, each process of a
// traced cgroup that starts, forks or loads libraries (a program started or
// exec'd after Add, a library loaded by dlopen). It returns when Close is called;
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
		before := s.Instrumented()
		if err := s.ScanPID(int(m.Tgid), m.CgroupId); err != nil {
			onErr(err)
		}
		grew := s.Instrumented() > before
		// After the attach: a process waits for its uprobes meanwhile.
		s.prune()
		if grew {
			s.noteGap(m)
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
	s.closing.Wait()
	s.mu.Lock()
	var errs []error
	for k, p := range s.procs {
		errs = append(errs, p.close())
		delete(s.procs, k)
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
	s.prune()
	for _, pid := range pids {
		if err := s.ScanPID(pid, cgroupID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Remove stops recording the cgroup's calls and removes the uprobes of its
// processes.
func (s *Source) Remove(cgroupID uint64) error {
	errs := []error{s.coll.UntraceCgroup(cgroupID)}
	s.mu.Lock()
	for k, p := range s.procs {
		if p.cgroup == cgroupID {
			errs = append(errs, p.close())
			delete(s.procs, k)
		}
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}

// prune removes the uprobes of processes that exited. Detaching a uprobe
// waits for the kernel's grace periods (tens of milliseconds each, nine
// per library), so the links are closed on a goroutine of their own, which
// Close waits for: the notices of processes starting meanwhile are not
// held up.
func (s *Source) prune() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var stale []*probes
	for k, p := range s.procs {
		if start, err := procStart(k.pid); err != nil || start != p.start {
			stale = append(stale, p)
			delete(s.procs, k)
		}
	}
	for k := range s.reported {
		if start, err := procStart(k.pid); err != nil || start != k.start {
			delete(s.reported, k)
		}
	}
	if len(stale) == 0 {
		return
	}
	s.closing.Add(1)
	go func() {
		defer s.closing.Done()
		for _, p := range stale {
			_ = p.close()
		}
	}()
}

// ScanPID instruments the OpenSSL libraries process pid (of the traced
// cgroup cgroupID) has mapped and its executable's Go crypto/tls, those not
// already instrumented, and reports TLS it cannot read (OnUnreadable). A
// process that exited meanwhile is no error.
//
// It first sets the uprobe on the process's dynamic loader (loader.go) and
// only then reads the mappings it instruments: a library mapped before that
// read is found by it, and one the loader maps after it is reported by the
// uprobe, so none is missed.
func (s *Source) ScanPID(pid int, cgroupID uint64) error {
	maps, err := readMaps(pid)
	if err != nil || len(maps) == 0 {
		return err // len 0: a kernel thread, or a process that exited
	}
	armed, lerr := s.watchLoader(pid, cgroupID, maps)
	if armed {
		if maps, err = readMaps(pid); err != nil || len(maps) == 0 {
			return errors.Join(lerr, err)
		}
	}
	libs, err := OpenSSLPaths(bytes.NewReader(maps))
	if err != nil {
		return fmt.Errorf("reading the mappings of pid %d: %w", pid, err)
	}
	errs := []error{lerr, s.scanExe(pid, cgroupID, maps)}
	for _, lib := range libs {
		if err := s.attach(pid, cgroupID, lib); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// readMaps reads /proc/PID/maps; nothing, and no error, for a process that
// exited.
func readMaps(pid int) ([]byte, error) {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading the mappings of pid %d: %w", pid, err)
	}
	return maps, nil
}

// attach instruments one library of pid, named as in its mount namespace.
func (s *Source) attach(pid int, cgroupID uint64, lib string) error {
	path := fmt.Sprintf("/proc/%d/root%s", pid, lib)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return nil // the process exited
		}
		return fmt.Errorf("pid %d: %s: %w", pid, lib, err)
	}
	return s.attachFile(pid, cgroupID, path, &st)
}

// attachFile sets the uprobes of pid on the library at path, whose stat is
// st, unless that process already has them on that file.
func (s *Source) attachFile(pid int, cgroupID uint64, path string, st *unix.Stat_t) error {
	start, err := procStart(pid)
	if err != nil {
		return nil // the process exited
	}
	k := procFile{pid: pid, dev: st.Dev, ino: st.Ino}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.haveProbes(k, start) {
		return nil
	}
	links, err := s.coll.AttachOpenSSL(path, pid)
	if errors.Is(err, unix.ESRCH) {
		return nil // the process exited while being instrumented
	}
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	s.procs[k] = &probes{links: links, start: start, cgroup: cgroupID}
	return nil
}

// haveProbes reports whether the process started at start already has its
// uprobes on k's file; those of an earlier process with the same pid (a
// reused pid) are closed and forgotten. s.mu must be held.
func (s *Source) haveProbes(k procFile, start uint64) bool {
	p, ok := s.procs[k]
	if !ok {
		return false
	}
	if p.start == start {
		return true
	}
	_ = p.close()
	delete(s.procs, k)
	return false
}

// Instrumented is how many (process, TLS library or executable file) pairs
// have uprobes; the dynamic loaders' probes are not counted.
func (s *Source) Instrumented() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.procs {
		if !p.loader {
			n++
		}
	}
	return n
}

// procStart is the start time of process pid (field 22 of
// /proc/PID/stat, in clock ticks since boot).
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may hold spaces and parentheses: count
	// fields after its last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(f))
	}
	return strconv.ParseUint(f[19], 10, 64)
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
