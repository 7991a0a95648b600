package main

import (
	"os"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
)

// TestTrapCostSeesTheTrapOnlyWhereTheProbeIsArmed checks the uprobe case's
// mechanics, not a speed: a call into the probed function must cost far more
// than an unprobed call (the breakpoint was hit), and a probe filtered to
// another process must leave this one's calls untouched (it was not armed
// here). The factors leave two orders of magnitude to spare on a machine
// where a trap costs microseconds and a call a few nanoseconds.
func TestTrapCostSeesTheTrapOnlyWhereTheProbeIsArmed(t *testing.T) {
	itest.RequireBPF(t)
	tc, err := measureTrapCost()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CPU per call: %.1f ns without a probe, %.0f ns with one, %.1f ns with one for another process", tc.none, tc.probed, tc.otherPID)
	if tc.none <= 0 || tc.probed < 20*tc.none {
		t.Errorf("probed call %.1f ns against %.1f ns unprobed: the uprobe did not trap", tc.probed, tc.none)
	}
	if tc.otherPID > tc.probed/20 {
		t.Errorf("call with a probe for another process %.1f ns against %.0f ns probed: the filter did not keep the breakpoint out", tc.otherPID, tc.probed)
	}
}

func TestHTTPSCeiling(t *testing.T) {
	// 2 cores at 100k responses/s: 20 µs of CPU per response; two 5 µs
	// traps add 10 µs, so at most 20/30 of the untraced rate remains.
	untraced := []measurement{{load: load{rps: 100_000}}, {load: load{rps: 0}}}
	traps := []measurement{{trap: trapCost{none: 1, probed: 5001}}, {trap: trapCost{none: 1, probed: 5001}}}
	got := httpsCeiling(untraced, traps, 2)
	if len(got) != 1 || got[0] < 0.6666 || got[0] > 0.6667 {
		t.Errorf("httpsCeiling = %v, want [0.6667] (a round without a rate is left out)", got)
	}
}

func TestFileOffset(t *testing.T) {
	maps := t.TempDir() + "/maps"
	const text = `00400000-00401000 r--p 00000000 fd:01 42 /usr/bin/bench
00401000-00b2c000 r-xp 00001000 fd:01 42 /usr/bin/bench
00b2c000-00c00000 rw-p 0072c000 fd:01 42 /usr/bin/bench
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
`
	if err := os.WriteFile(maps, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pc      uintptr
		want    uint64
		wantErr bool
	}{
		{pc: 0x401000, want: 0x1000},
		{pc: 0x961360, want: 0x561360},
		{pc: 0x400010, wantErr: true}, // not executable
		{pc: 0x10, wantErr: true},     // not mapped
	} {
		got, err := fileOffset(maps, tc.pc)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("fileOffset(%#x) = %#x, %v; want %#x, error %v", tc.pc, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestUprobeRowsReachTheTable: the uprobe case's rounds become the table's
// trap rows, and the HTTPS ceiling row appears only beside HTTPS rounds.
func TestUprobeRowsReachTheTable(t *testing.T) {
	trap := measurement{trap: trapCost{none: 1.4, probed: 9401.4, otherPID: 1.5}}
	names := func(rs []row) map[string][]float64 {
		m := map[string][]float64{}
		for _, r := range rs {
			m[r.measure] = r.vals
		}
		return m
	}
	alone := newResults(uprobeCases(), 1)
	alone.add(0, trap)
	got := names(rows(alone))
	if v := got["Uprobe trap: CPU ns per call, uprobe on the function"]; len(v) != 1 || v[0] != 9401.4 {
		t.Errorf("probed row = %v, want [9401.4]", v)
	}
	if v := got["Uprobe trap: CPU ns per call, uprobe filtered to another process"]; len(v) != 1 || v[0] != 1.5 {
		t.Errorf("other-process row = %v, want [1.5]", v)
	}
	if _, ok := got["HTTPS: ratio ceiling that 2 uprobe traps per response leave"]; ok {
		t.Error("a ceiling row without HTTPS rounds")
	}
	withHTTPS := newResults(append([]benchCase{{key: "https/untraced"}}, uprobeCases()...), 1)
	withHTTPS.add(0, measurement{load: load{rps: 100_000}})
	withHTTPS.add(1, trap)
	if v := names(rows(withHTTPS))["HTTPS: ratio ceiling that 2 uprobe traps per response leave"]; len(v) != 1 {
		t.Errorf("ceiling row = %v, want one round", v)
	}
}
