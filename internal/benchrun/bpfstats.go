package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The eBPF programs' run time is charged to whatever task or softirq the
// packet passes through (nginx, wrk, ksoftirqd), never to boxtap, so the
// bench reads it from the kernel's per-program statistics.

// enableBPFStats turns on the kernel's run_time_ns accounting for as long as
// the returned closer stays open (BPF_ENABLE_STATS, like sysctl
// kernel.bpf_stats_enabled=1 but undone when the bench exits).
func enableBPFStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enabling eBPF run-time statistics: %w", err)
	}
	return c, nil
}

// progStats is the run time and run count summed over some programs.
type progStats struct {
	runTime time.Duration
	runs    uint64
}

// perRun says how many program runs each response cost and how long one
// run took: the kernel's share, packet by packet.
func (s progStats) perRun(served uint64) string {
	if s.runs == 0 || served == 0 {
		return "no runs"
	}
	return fmt.Sprintf("%.2f runs/response, %d ns/run", float64(s.runs)/float64(served), s.runTime.Nanoseconds()/int64(s.runs))
}

// procProgStats sums the statistics of every eBPF program a process holds
// through a program or link file descriptor.
func procProgStats(pid int) (progStats, error) {
	ids, err := procProgIDs(pid)
	if err != nil {
		return progStats{}, err
	}
	if len(ids) == 0 {
		return progStats{}, fmt.Errorf("process %d holds no eBPF program", pid)
	}
	var s progStats
	for _, id := range ids {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			return s, fmt.Errorf("opening eBPF program %d: %w", id, err)
		}
		st, err := p.Stats()
		p.Close()
		if err != nil {
			return s, fmt.Errorf("eBPF program %d: reading its statistics: %w", id, err)
		}
		s.runTime += st.Runtime
		s.runs += st.RunCount
	}
	return s, nil
}

// procProgIDs lists the distinct ids of the programs behind a process's
// bpf-prog and bpf-link descriptors.
func procProgIDs(pid int) ([]ebpf.ProgramID, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return nil, fmt.Errorf("listing the descriptors of process %d: %w", pid, err)
	}
	seen := map[ebpf.ProgramID]bool{}
	var ids []ebpf.ProgramID
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
		if err != nil || (target != "anon_inode:bpf-prog" && target != "anon_inode:bpf_link") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "fdinfo", fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		id, ok := fdinfoProgID(string(b))
		if ok && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// fdinfoProgID finds the "prog_id:" line of a /proc/PID/fdinfo/FD text.
func fdinfoProgID(fdinfo string) (ebpf.ProgramID, bool) {
	for _, line := range strings.Split(fdinfo, "\n") {
		if rest, ok := strings.CutPrefix(line, "prog_id:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 32)
			return ebpf.ProgramID(n), err == nil && n > 0
		}
	}
	return 0, false
}

// atClkTck is AT_CLKTCK of <elf.h>: the auxiliary vector entry that gives
// the unit of /proc/PID/stat's times, as sysconf(_SC_CLK_TCK) reads it.
const atClkTck = 17

// clockTicks returns USER_HZ from the auxiliary vector, without cgo.
func clockTicks() (float64, error) {
	auxv, err := unix.Auxv()
	if err != nil {
		return 0, fmt.Errorf("reading the auxiliary vector for AT_CLKTCK: %w", err)
	}
	return clkTckOf(auxv)
}

func clkTckOf(auxv [][2]uintptr) (float64, error) {
	for _, kv := range auxv {
		if kv[0] == atClkTck && kv[1] > 0 {
			return float64(kv[1]), nil
		}
	}
	return 0, errors.New("the auxiliary vector has no AT_CLKTCK")
}
