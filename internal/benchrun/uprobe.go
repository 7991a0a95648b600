package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// The uprobe case measures what the kernel charges a process each time it
// runs into a uprobe, before boxtap's programs do any work: the floor under
// every HTTPS event, which takes at least two traps (the request's SSL_read
// and the response's SSL_write). The bench calls a function of its own
// binary in a loop and times the loop in thread CPU time, which includes
// the kernel's handling of the breakpoint, three ways: with no probe, with
// a uprobe whose program only returns, and with that uprobe filtered to
// another process (what a neighbour mapping the same library file pays).

const (
	// trapCalls is one batch; a trapped call costs microseconds, so a
	// batch takes a fraction of a second.
	trapCalls = 20_000
	// trapBatches: the fastest batch is kept, as the one least disturbed
	// by interrupts and other threads.
	trapBatches = 5
)

func uprobeCases() []benchCase {
	return []benchCase{{key: "uprobe/trap", uprobe: true}}
}

// trapCost is one round of the uprobe case: CPU per call, in nanoseconds.
type trapCost struct {
	none, probed, otherPID float64
}

// uprobeTarget is the probed function: not inlined, so every call enters it.
//
//go:noinline
func uprobeTarget(x uint64) uint64 { return x*3 + 1 }

// measureTrapCost runs the three loops of one round. The probe is attached
// to this very process and closed before it returns.
func measureTrapCost() (trapCost, error) {
	var tc trapCost
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "trap_cost",
		Type:         ebpf.Kprobe,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return tc, fmt.Errorf("loading the uprobe case's program: %w", err)
	}
	defer prog.Close()
	self, err := os.Executable()
	if err != nil {
		return tc, fmt.Errorf("finding the bench binary: %w", err)
	}
	ex, err := link.OpenExecutable(self)
	if err != nil {
		return tc, fmt.Errorf("opening %s for a uprobe: %w", self, err)
	}
	// `go run` and `go test` strip the symbol table, so the probe is placed
	// by file offset, from where the function's code is mapped.
	off, err := fileOffset("/proc/self/maps", reflect.ValueOf(uprobeTarget).Pointer())
	if err != nil {
		return tc, err
	}
	if tc.none, err = timeCalls(); err != nil {
		return tc, err
	}
	// PID 0 sets the probe in every process that maps the binary: this one.
	// PID 1 never runs the bench's binary: the probe is set on the file but
	// never armed in this process.
	for _, probe := range []struct {
		pid int
		dst *float64
	}{{0, &tc.probed}, {1, &tc.otherPID}} {
		l, err := ex.Uprobe("uprobeTarget", prog, &link.UprobeOptions{PID: probe.pid, Address: off})
		if err != nil {
			return tc, fmt.Errorf("attaching a uprobe to %s at offset %#x: %w", self, off, err)
		}
		*probe.dst, err = timeCalls()
		if cerr := l.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return tc, err
		}
	}
	return tc, nil
}

// timeCalls returns the thread CPU time of one uprobeTarget call, in
// nanoseconds: the best of trapBatches batches. The goroutine keeps its
// thread, so the clock is the loop's own.
func timeCalls() (float64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	best := time.Duration(-1)
	var sink uint64
	for b := 0; b < trapBatches; b++ {
		start, err := threadCPU()
		if err != nil {
			return 0, err
		}
		for i := uint64(0); i < trapCalls; i++ {
			sink += uprobeTarget(i)
		}
		end, err := threadCPU()
		if err != nil {
			return 0, err
		}
		if d := end - start; best < 0 || d < best {
			best = d
		}
	}
	if sink == 0 {
		return 0, errors.New("uprobe case: the loop did not run")
	}
	return float64(best) / trapCalls, nil
}

func threadCPU() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, fmt.Errorf("reading the thread's CPU clock: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

func trapNone(m measurement) float64     { return m.trap.none }
func trapProbed(m measurement) float64   { return m.trap.probed }
func trapOtherPID(m measurement) float64 { return m.trap.otherPID }

// trapAdded is what one trap adds to a call, in microseconds.
func trapAdded(m measurement) float64 { return (m.trap.probed - m.trap.none) / 1e3 }

// httpsCeiling is the highest traced/untraced HTTPS ratio that two traps per
// response allow, round by round: untraced, the cores serve rps responses a
// second, so each costs cores/rps seconds of CPU, and the traps add
// 2*trap to that.
func httpsCeiling(untraced, traps []measurement, cores int) []float64 {
	n := min(len(untraced), len(traps))
	out := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		if untraced[i].rps <= 0 {
			continue
		}
		perResponse := float64(cores) / untraced[i].rps
		added := 2 * trapAdded(traps[i]) / 1e6
		out = append(out, perResponse/(perResponse+added))
	}
	return out
}

func uprobeRows(r *results) []row {
	traps := r.of("uprobe/trap")
	if traps == nil {
		return nil
	}
	out := []row{
		{measure: "Uprobe trap: CPU ns per call, no probe", vals: each(traps, trapNone), format: "%.1f", target: "reference"},
		{measure: "Uprobe trap: CPU ns per call, uprobe on the function", vals: each(traps, trapProbed), format: "%.0f", target: "reference"},
		{measure: "Uprobe trap: CPU ns per call, uprobe filtered to another process", vals: each(traps, trapOtherPID), format: "%.1f", target: "reference"},
	}
	if base := r.of("https/untraced"); base != nil {
		out = append(out, row{measure: "HTTPS: ratio ceiling that 2 uprobe traps per response leave", vals: httpsCeiling(base, traps, runtime.NumCPU()), format: "%.3f", target: "reference"})
	}
	return out
}

// fileOffset returns the offset in its file of the code at pc, read from a
// maps file (/proc/self/maps): the mapping that holds pc starts at the file
// offset it lists.
func fileOffset(maps string, pc uintptr) (uint64, error) {
	b, err := os.ReadFile(maps)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", maps, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var start, end, off uint64
		var perms string
		if _, err := fmt.Sscanf(line, "%x-%x %s %x", &start, &end, &perms, &off); err != nil {
			continue
		}
		if uint64(pc) >= start && uint64(pc) < end {
			if !strings.Contains(perms, "x") {
				return 0, fmt.Errorf("%s: the mapping of %#x is not executable (%s)", maps, pc, perms)
			}
			return uint64(pc) - start + off, nil
		}
	}
	return 0, fmt.Errorf("%s: no mapping holds %#x", maps, pc)
}
