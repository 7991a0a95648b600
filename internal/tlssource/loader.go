package tlssource

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/boxtap/boxtap/bpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// A library that a traced process loads after boxtap scanned it (dlopen,
// such as Python's "import ssl") is reported by a uprobe on the process's
// dynamic loader: glibc's ld.so and musl's call _dl_debug_state, the
// debuggers' breakpoint, once a program's libraries are mapped at start
// and before and after each dlopen. The uprobe is set for that process
// only, like the OpenSSL ones, so nothing runs for other processes.

// atBase is the auxiliary vector entry holding the dynamic loader's load
// address (AT_BASE); 0 for a static program.
const atBase = 7

// auxvBase returns AT_BASE from a 64-bit auxiliary vector
// (/proc/PID/auxv: pairs of native-endian words, up to AT_NULL).
func auxvBase(auxv []byte) (uint64, bool) {
	for i := 0; i+16 <= len(auxv); i += 16 {
		key := binary.NativeEndian.Uint64(auxv[i:])
		if key == 0 {
			break
		}
		if key == atBase {
			v := binary.NativeEndian.Uint64(auxv[i+8:])
			return v, v != 0
		}
	}
	return 0, false
}

// mappingAt returns the file of the mapping that starts at addr in a
// /proc/PID/maps file.
func mappingAt(maps []byte, addr uint64) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(maps))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		dash := 0
		for dash < len(line) && line[dash] != '-' {
			dash++
		}
		start, err := strconv.ParseUint(line[:dash], 16, 64)
		if err != nil || start != addr {
			continue
		}
		return mappedPath(line)
	}
	return "", false
}

// loaderOf names the dynamic loader of process pid, whose mappings are
// maps, as the process sees it; false for a static program or a process
// that exited.
func loaderOf(pid int, maps []byte) (string, bool) {
	auxv, err := os.ReadFile(fmt.Sprintf("/proc/%d/auxv", pid))
	if err != nil {
		return "", false
	}
	base, ok := auxvBase(auxv)
	if !ok {
		return "", false
	}
	return mappingAt(maps, base)
}

// watchLoader sets the uprobe that reports the libraries process pid loads
// from now on, on the dynamic loader it has mapped, unless it has it. It
// reports whether it set one now. A loader without _dl_debug_state is an
// error, once per loader file: the libraries it loads later are not seen.
func (s *Source) watchLoader(pid int, cgroupID uint64, maps []byte) (bool, error) {
	ld, ok := loaderOf(pid, maps)
	if !ok {
		return false, nil
	}
	path := fmt.Sprintf("/proc/%d/root%s", pid, ld)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, nil // the process exited, or the loader was replaced
	}
	start, err := procStart(pid)
	if err != nil {
		return false, nil // the process exited
	}
	k := procFile{pid: pid, dev: st.Dev, ino: st.Ino}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.haveProbes(k, start) {
		return false, nil
	}
	l, err := s.coll.AttachLoader(path, pid)
	if errors.Is(err, unix.ESRCH) || errors.Is(err, os.ErrNotExist) {
		return false, nil // the process exited while being instrumented
	}
	if errors.Is(err, link.ErrNoSymbol) {
		// Remembered, so that the next notice does not try again.
		s.procs[k] = &probes{start: start, cgroup: cgroupID, loader: true}
		ek := exeKey{dev: st.Dev, ino: st.Ino}
		if s.mute[ek] {
			return false, nil
		}
		if len(s.mute) >= maxExeCache {
			clear(s.mute)
		}
		s.mute[ek] = true
		return false, fmt.Errorf("pid %d: its dynamic loader %s has no %s: libraries it loads later (dlopen) are not instrumented", pid, ld, bpf.LoaderSymbol)
	}
	if err != nil {
		return false, fmt.Errorf("pid %d: %w", pid, err)
	}
	s.procs[k] = &probes{links: []link.Link{l}, start: start, cgroup: cgroupID, loader: true}
	return true, nil
}
