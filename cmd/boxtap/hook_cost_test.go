package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// BenchmarkHookStartCost reports what the hook adds to a container's start:
// "runc run -d" wall time over 20 starts with the hook and 20 without, in
// alternation (median and worst), for each --tracer, and the peak memory
// (VmHWM) of the tracer. It prints figures; `make bench` runs it with
// -bench HookStartCost -benchtime 1x.
//
// With --tracer=host one hooked container runs throughout (the host is
// not idle), so each measured start hands its container to the running
// host tracer; the first start, which starts the host tracer, is
// reported on its own.
func BenchmarkHookStartCost(b *testing.B) {
	b.Run("tracer=per-container", func(b *testing.B) { hookStartCost(b, false) })
	b.Run("tracer=host", func(b *testing.B) { hookStartCost(b, true) })
}

func hookStartCost(t *testing.B, host bool) {
	e := newHookEnv(t)
	const n = 20
	hooks := e.tracerHooks(t, "", tracerPerContainer)
	if host {
		killHostTracersOnCleanup(t, e)
		hooks = e.hostHooks(t, "")
		anchor := e.prefix + "anchor"
		start := time.Now()
		if err := e.start(t, anchor, e.bundle(t, anchor, hooks, "sleep")); err != nil {
			t.Fatal(err)
		}
		t.Logf("first hooked start (starts the host tracer): %s", time.Since(start))
		defer e.remove(anchor)
	}
	var with, without []time.Duration
	var hwm []string
	for i := 0; i < 2*n; i++ {
		hooked := i%2 == 0
		id := fmt.Sprintf("%scost%02d", e.prefix, i)
		var h *specs.Hooks
		if hooked {
			h = hooks
		}
		b := e.bundle(t, id, h, "sleep")
		start := time.Now()
		if err := e.start(t, id, b); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		if hooked {
			with = append(with, d)
			pids := tracerPIDs(id)
			if host {
				pids = hostTracerPIDs(e.run)
			}
			if len(pids) == 1 {
				hwm = append(hwm, procStatus(pids[0], "VmHWM:", "VmRSS:")...)
			}
		} else {
			without = append(without, d)
		}
		e.remove(id)
		if !host {
			waitNoTracer(t, id, 10*time.Second)
		}
	}
	med := func(ds []time.Duration) time.Duration { s := slices.Clone(ds); slices.Sort(s); return s[len(s)/2] }
	t.Logf("runc run -d over %d starts each: without hook median %s worst %s; with hook median %s worst %s; added median %s, worst %s",
		n, med(without), slices.Max(without), med(with), slices.Max(with), med(with)-med(without), slices.Max(with)-slices.Max(without))
	if host {
		// The first is the anchor's, which started the host tracer.
		if took := hookTimes(e.hookLog()); len(took) > 1 {
			took = took[1:]
			t.Logf("the hook's own time (logger set up to reply), %d hand-overs: median %s worst %s", len(took), med(took), slices.Max(took))
		}
	}
	if len(hwm) >= 2 {
		t.Logf("tracer: %s, %s (first start); last start: %s, %s", hwm[0], hwm[1], hwm[len(hwm)-2], hwm[len(hwm)-1])
	}
}

// hookTimes are the "(hook took D)" durations in the hook log.
func hookTimes(log string) []time.Duration {
	var ds []time.Duration
	for _, line := range strings.Split(log, "\n") {
		_, rest, ok := strings.Cut(line, "(hook took ")
		if !ok {
			continue
		}
		if d, err := time.ParseDuration(strings.TrimSuffix(rest, ")")); err == nil {
			ds = append(ds, d)
		}
	}
	return ds
}

// procStatus returns the named lines of /proc/PID/status.
func procStatus(pid int, names ...string) []string {
	status, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	var out []string
	for _, line := range strings.Split(string(status), "\n") {
		for _, n := range names {
			if strings.HasPrefix(line, n) {
				out = append(out, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	return out
}

// rssKiB is the resident memory of pid in KiB (0 when gone).
func rssKiB(pid int) int {
	for _, l := range procStatus(pid, "VmRSS:") {
		if f := strings.Fields(l); len(f) >= 2 {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

// BenchmarkHookHostMemory starts 100 hooked containers with --tracer=host
// and reports the resident memory of every boxtap process (the host
// tracer, and any per-container tracer) divided by 100.
func BenchmarkHookHostMemory(b *testing.B) {
	e := newHookEnv(b)
	killHostTracersOnCleanup(b, e)
	hooks := e.hostHooks(b, "")
	const n = 100
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%smem%03d", e.prefix, i)
		if err := e.start(b, id, e.bundle(b, id, hooks, "sleep")); err != nil {
			b.Fatal(err)
		}
		defer e.remove(id)
	}
	pids := append(hostTracerPIDs(e.run), boxtapTracerPIDs()...)
	total := 0
	for _, pid := range pids {
		total += rssKiB(pid)
	}
	host := hostTracerPIDs(e.run)
	var hostStatus []string
	if len(host) == 1 {
		hostStatus = procStatus(host[0], "VmHWM:", "VmRSS:")
	}
	b.Logf("%d hooked containers: %d boxtap processes, RSS %.1f MiB in all, %.2f MiB per container; host tracer %v",
		n, len(pids), float64(total)/1024, float64(total)/1024/n, hostStatus)
}

// boxtapTracerPIDs lists every live per-container tracer (any container).
func boxtapTracerPIDs() []int {
	return procsWhere(func(args []string) bool { return slices.Contains(args, "hook-tracer") })
}
