package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The burst case asks whether boxtap loses anything when its reader falls
// behind for a while at full load: a scheduling hiccup, a slow disk, a
// stopped process. The bench stops boxtap with SIGSTOP for burstPause every
// burstEvery of the round and resumes it with SIGCONT; the kernel programs
// keep writing records into the ring buffer meanwhile. Besides the loss, it
// reads the ring's own positions (the consumer and producer pages that
// boxtap maps, mapped read-only here) to say how large the ring must be to
// hold such a pause: the bytes waiting when the pause began plus the ring
// bytes of one exchange times the exchanges nginx served while boxtap was
// stopped.

const (
	burstEvery = 2 * time.Second
	burstPause = 200 * time.Millisecond
	// ringMapName is the capture ring of bpf/capture.c.
	ringMapName = "events"
)

// burstCases: the traced run only; its targets are about loss, not
// throughput. BENCH_BURST_RING passes --ring-size, to check the size the
// default run says is needed.
func burstCases(a *server) []benchCase {
	c := benchCase{key: "burst/boxtap-stopped", srv: a, path: "/", tool: toolBoxtap, watched: a,
		burst: &burstPlan{every: burstEvery, pause: burstPause}}
	if v := os.Getenv("BENCH_BURST_RING"); v != "" {
		c.toolArgs = []string{"--ring-size", v}
	}
	return []benchCase{c}
}

// burstPlan is how often and how long the tracer is stopped.
type burstPlan struct {
	every, pause time.Duration
}

// burstStats is what the pauses showed.
type burstStats struct {
	pauses int
	// ringSize is the capture ring's data size in bytes.
	ringSize uint64
	// bytesPerExchange is ring bytes per response served before the first
	// pause, while boxtap read normally (records with their 8-byte ring
	// headers, as the ring counts them).
	bytesPerExchange float64
	// pauseRate is the highest rate, in responses per second, nginx served
	// at while boxtap was stopped.
	pauseRate float64
	// lagAtStop is the largest fill of the ring when a pause began: what
	// boxtap had not read yet.
	lagAtStop uint64
	// fillAtResume is the largest fill when a pause ended; it cannot pass
	// the ring size, since records that do not fit are dropped.
	fillAtResume uint64
	// needed is the largest, over the pauses, of the lag when the pause
	// began plus the bytes of the exchanges served during the pause.
	needed float64
	// peakRunning is the largest fill seen while boxtap ran (sampled every
	// burstPoll): how far the reader lags outside the pauses, including
	// while it catches up after one.
	peakRunning uint64
	// longestStop is the longest time from SIGSTOP to SIGCONT: more than
	// the plan's pause when the bench itself waited for a CPU.
	longestStop time.Duration
}

// burstPoll is how often the ring's fill is sampled while boxtap runs.
const burstPoll = 5 * time.Millisecond

// ringProbe reads a ring buffer's consumer and producer positions.
type ringProbe struct {
	m    *ebpf.Map
	mem  []byte
	size uint64
}

// openRingProbe finds the capture ring among a process's map descriptors
// and maps its two position pages read-only.
func openRingProbe(pid int) (*ringProbe, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return nil, fmt.Errorf("listing the descriptors of process %d: %w", pid, err)
	}
	seen := map[uint64]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
		if err != nil || target != "anon_inode:bpf-map" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "fdinfo", fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		id, ok := fdinfoRingID(string(b))
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			return nil, fmt.Errorf("opening eBPF map %d: %w", id, err)
		}
		info, err := m.Info()
		if err != nil || info.Name != ringMapName {
			m.Close()
			continue
		}
		// Page 0 holds the consumer position, page 1 the producer's.
		mem, err := unix.Mmap(m.FD(), 0, 2*os.Getpagesize(), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("mapping the positions of ring buffer %d: %w", id, err)
		}
		return &ringProbe{m: m, mem: mem, size: uint64(info.MaxEntries)}, nil
	}
	return nil, fmt.Errorf("process %d holds no ring buffer named %q", pid, ringMapName)
}

// fdinfoRingID returns the map id of a /proc/PID/fdinfo text that
// describes a ring buffer.
func fdinfoRingID(fdinfo string) (uint64, bool) {
	var id uint64
	ring := false
	for _, line := range strings.Split(fdinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "map_type":
			ring = v == strconv.Itoa(int(ebpf.RingBuf))
		case "map_id":
			id, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	return id, ring && id > 0
}

// positions returns the bytes the kernel has produced and boxtap consumed
// so far, both counted from the ring's creation.
func (r *ringProbe) positions() (produced, consumed uint64) {
	page := os.Getpagesize()
	// The kernel and boxtap update these words concurrently; both are
	// 8-byte aligned at the start of their page.
	consumed = (*atomic.Uint64)(unsafe.Pointer(&r.mem[0])).Load()
	produced = (*atomic.Uint64)(unsafe.Pointer(&r.mem[page])).Load()
	return produced, consumed
}

func (r *ringProbe) close() {
	_ = unix.Munmap(r.mem)
	r.m.Close()
}

// sample is the ring's positions and nginx's counter at one moment.
type sample struct {
	at                 time.Time
	produced, consumed uint64
	served             uint64
}

func takeSample(r *ringProbe, srv *server) (sample, error) {
	n, err := srv.requests()
	if err != nil {
		return sample{}, fmt.Errorf("reading nginx's counter: %w", err)
	}
	s := sample{at: time.Now(), served: n}
	s.produced, s.consumed = r.positions()
	return s, nil
}

func (s sample) fill() uint64 { return s.produced - s.consumed }

// run stops and resumes pid on the plan for at most d, or until ctx ends.
// The process is never left stopped: every SIGSTOP is answered by a
// SIGCONT, on every return path.
func (p burstPlan) run(ctx context.Context, pid int, srv *server, d time.Duration) (st burstStats, err error) {
	ring, err := openRingProbe(pid)
	if err != nil {
		return st, err
	}
	defer ring.close()
	st.ringSize = ring.size
	stopped := false
	resume := func() error {
		if !stopped {
			return nil
		}
		stopped = false
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			return fmt.Errorf("resuming boxtap (SIGCONT): %w", err)
		}
		return nil
	}
	defer func() {
		if rerr := resume(); rerr != nil && err == nil {
			err = rerr
		}
	}()
	first, err := takeSample(ring, srv)
	if err != nil {
		return st, err
	}
	// wait sleeps for t; while boxtap runs it samples the ring's fill.
	wait := func(t time.Duration) bool {
		timer := time.NewTimer(t)
		defer timer.Stop()
		tick := time.NewTicker(burstPoll)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return false
			case <-timer.C:
				return true
			case <-tick.C:
				if !stopped {
					prod, cons := ring.positions()
					st.peakRunning = max(st.peakRunning, prod-cons)
				}
			}
		}
	}
	// The last pause ends one period before the load does, so that every
	// round also shows the recovery.
	cycles := int(d/p.every) - 1
	if cycles < 1 {
		return st, fmt.Errorf("a round of %s is too short for pauses every %s: set BENCH_SECONDS to at least %d", d, p.every, int(2*p.every/time.Second))
	}
	for i := 0; i < cycles; i++ {
		if !wait(p.every - p.pause) {
			return st, ctx.Err()
		}
		before, err := takeSample(ring, srv)
		if err != nil {
			return st, err
		}
		if i == 0 && before.served > first.served {
			st.bytesPerExchange = float64(before.produced-first.produced) / float64(before.served-first.served)
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return st, fmt.Errorf("stopping boxtap (SIGSTOP): %w", err)
		}
		stopped = true
		stoppedAt := time.Now()
		if !wait(p.pause) {
			return st, ctx.Err()
		}
		// The ring's fill is read at once; nginx's counter, an HTTP
		// request that may take a while under load, after boxtap runs
		// again, so that the pause lasts p.pause.
		prod, cons := ring.positions()
		if err := resume(); err != nil {
			return st, err
		}
		st.longestStop = max(st.longestStop, time.Since(stoppedAt))
		after, err := takeSample(ring, srv)
		if err != nil {
			return st, err
		}
		st.pauses++
		// Responses per second from just before SIGSTOP to just after
		// SIGCONT: the rate the kernel wrote records at while boxtap
		// stood still.
		rate := float64(after.served-before.served) / after.at.Sub(before.at).Seconds()
		st.pauseRate = math.Max(st.pauseRate, rate)
		st.lagAtStop = max(st.lagAtStop, before.fill())
		st.fillAtResume = max(st.fillAtResume, prod-cons)
		need := float64(before.fill()) + st.bytesPerExchange*rate*p.pause.Seconds()
		st.needed = math.Max(st.needed, need)
	}
	// The recovery after the last pause.
	if !wait(p.every) {
		return st, ctx.Err()
	}
	if st.bytesPerExchange == 0 {
		return st, errors.New("no response served before the first pause: cannot measure ring bytes per exchange")
	}
	return st, nil
}

// ringSizeFor is the smallest ring size boxtap accepts (a power of two
// from 16 KiB) that holds n bytes.
func ringSizeFor(n float64) uint64 {
	if n <= 16<<10 {
		return 16 << 10
	}
	return 1 << bits.Len64(uint64(math.Ceil(n))-1)
}

func mib(n float64) float64 { return n / (1 << 20) }

func burstRingMiB(m measurement) float64     { return mib(float64(m.burst.ringSize)) }
func burstBytesPerEx(m measurement) float64  { return m.burst.bytesPerExchange }
func burstRecordRate(m measurement) float64  { return mib(m.burst.bytesPerExchange * m.burst.pauseRate) }
func burstLagMiB(m measurement) float64      { return mib(float64(m.burst.lagAtStop)) }
func burstFillMiB(m measurement) float64     { return mib(float64(m.burst.fillAtResume)) }
func burstNeededMiB(m measurement) float64   { return mib(m.burst.needed) }
func burstRingNeedMiB(m measurement) float64 { return mib(float64(ringSizeFor(m.burst.needed))) }
func burstPauses(m measurement) float64      { return float64(m.burst.pauses) }
func burstPeakMiB(m measurement) float64     { return mib(float64(m.burst.peakRunning)) }
func burstStopMs(m measurement) float64 {
	return float64(m.burst.longestStop) / float64(time.Millisecond)
}

func burstRows(r *results) []row {
	b := r.of("burst/boxtap-stopped")
	if b == nil {
		return nil
	}
	k := "burst/boxtap-stopped"
	p := fmt.Sprintf("Burst (boxtap stopped %s every %s)", burstPause, burstEvery)
	return []row{
		{measure: p + ": req/s traced", vals: each(b, rps), format: "%.0f"},
		{measure: "Burst: pauses per round", vals: each(b, burstPauses), format: "%.0f"},
		{measure: "Burst: longest stop, SIGSTOP to SIGCONT (ms)", vals: each(b, burstStopMs), format: "%.0f"},
		judged(r, row{"Burst: completeness distinct exchanges/responses", each(b, completeness), "%.6f", "1.0 exactly", allEqual(1), nil}, k),
		judged(r, row{"Burst: duplicate or malformed event lines", each(b, extraLines), "%.0f", "0", allEqual(0), nil}, k),
		judged(r, row{"Burst: lines written minus boxtap's own event count", each(b, countGap), "%.0f", "0", allEqual(0), nil}, k),
		judged(r, row{"Burst: lost records", each(b, lost), "%.0f", "0", allEqual(0), nil}, k),
		{measure: "Burst: ring size used (MiB)", vals: each(b, burstRingMiB), format: "%.0f"},
		{measure: "Burst: ring bytes per exchange (measured before the first pause)", vals: each(b, burstBytesPerEx), format: "%.0f"},
		{measure: "Burst: record MiB/s while boxtap was stopped (bytes per exchange × responses/s)", vals: each(b, burstRecordRate), format: "%.1f"},
		{measure: "Burst: unread ring MiB when a pause began (max)", vals: each(b, burstLagMiB), format: "%.2f"},
		{measure: "Burst: unread ring MiB when a pause ended (max; capped by the ring)", vals: each(b, burstFillMiB), format: "%.2f"},
		{measure: fmt.Sprintf("Burst: unread ring MiB while boxtap ran (max, sampled every %s)", burstPoll), vals: each(b, burstPeakMiB), format: "%.2f"},
		{measure: "Burst: ring MiB needed for one pause (unread at its start + rate × pause)", vals: each(b, burstNeededMiB), format: "%.2f"},
		{measure: "Burst: smallest --ring-size that holds the largest need of any round (MiB)", vals: []float64{slices.Max(each(b, burstRingNeedMiB))}, format: "%.0f"},
	}
}
