package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkHookStartCost reports what the hook adds to a container's start:
// "runc run -d" wall time over 20 starts with the hook and 20 without, in
// alternation (median and worst), and the peak memory (VmHWM) of one
// per-container tracer. It prints figures; `make bench` runs it with
// -bench HookStartCost -benchtime 1x.
func BenchmarkHookStartCost(b *testing.B) {
	t := b
	e := newHookEnv(t)
	const n = 20
	hooks := e.exampleHooks(t)
	var with, without []time.Duration
	var hwm []string
	for i := 0; i < 2*n; i++ {
		hooked := i%2 == 0
		id := fmt.Sprintf("%scost%02d", e.prefix, i)
		h := hooks
		if !hooked {
			h = nil
		}
		b := e.bundle(t, id, h, "sleep")
		start := time.Now()
		if err := e.start(t, id, b); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		if hooked {
			with = append(with, d)
			if pids := tracerPIDs(id); len(pids) == 1 {
				// Let the tracer settle, then read its peak resident memory.
				time.Sleep(200 * time.Millisecond)
				status, _ := os.ReadFile(filepath.Join("/proc", fmt.Sprint(pids[0]), "status"))
				for _, line := range strings.Split(string(status), "\n") {
					if strings.HasPrefix(line, "VmHWM:") || strings.HasPrefix(line, "VmRSS:") {
						hwm = append(hwm, strings.Join(strings.Fields(line), " "))
					}
				}
			}
		} else {
			without = append(without, d)
		}
		e.remove(id)
		waitNoTracer(t, id, 10*time.Second)
	}
	med := func(ds []time.Duration) time.Duration { s := slices.Clone(ds); slices.Sort(s); return s[len(s)/2] }
	t.Logf("runc run -d over %d starts each: without hook median %s worst %s; with hook median %s worst %s; added median %s",
		n, med(without), slices.Max(without), med(with), slices.Max(with), med(with)-med(without))
	if len(hwm) >= 2 {
		t.Logf("one tracer: %s, %s (first start); last start: %s, %s", hwm[0], hwm[1], hwm[len(hwm)-2], hwm[len(hwm)-1])
	}
}
