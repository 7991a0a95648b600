package main

import "testing"

func TestRingSizeFor(t *testing.T) {
	for _, tc := range []struct {
		need float64
		want uint64
	}{
		{0, 16 << 10},
		{16 << 10, 16 << 10},
		{16<<10 + 1, 32 << 10},
		{4 << 20, 4 << 20},
		{4<<20 + 0.5, 8 << 20},
		{5.87 * (1 << 20), 8 << 20},
		{9 << 20, 16 << 20},
	} {
		if got := ringSizeFor(tc.need); got != tc.want {
			t.Errorf("ringSizeFor(%v) = %d, want %d", tc.need, got, tc.want)
		}
	}
}

func TestFdinfoRingID(t *testing.T) {
	for _, tc := range []struct {
		name, fdinfo string
		id           uint64
		ok           bool
	}{
		{"ring buffer", "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t27\nkey_size:\t0\nvalue_size:\t0\nmax_entries:\t4194304\nmap_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t4210688\nmap_id:\t812\nfrozen:\t0\n", 812, true},
		{"hash map", "map_type:\t1\nkey_size:\t8\nmap_id:\t813\n", 0, false},
		{"no id", "map_type:\t27\n", 0, false},
		{"program", "prog_type:\t8\nprog_id:\t40\n", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, ok := fdinfoRingID(tc.fdinfo)
			if ok != tc.ok || (ok && id != tc.id) {
				t.Errorf("fdinfoRingID = %d, %v; want %d, %v", id, ok, tc.id, tc.ok)
			}
		})
	}
}

// The burst rows: loss judged like the other rows (every round), the ring
// size needed computed from the measured rate, and an invalid round marked.
func TestBurstRowsJudgeLossAndReportTheRingNeeded(t *testing.T) {
	round := func(served, distinct, lostRecords uint64, st burstStats) measurement {
		return measurement{load: load{rps: 50000}, served: served, tool: toolBoxtap, burst: st,
			obs: observed{events: distinct, lost: lostRecords, tally: eventTally{lines: distinct, distinct: distinct}}}
	}
	st := burstStats{pauses: 4, ringSize: 4 << 20, bytesPerExchange: 464, pauseRate: 65000,
		lagAtStop: 100 << 10, fillAtResume: 4 << 20}
	st.needed = float64(st.lagAtStop) + st.bytesPerExchange*st.pauseRate*0.2
	res := newResults([]benchCase{{key: "burst/boxtap-stopped", tool: toolBoxtap}}, 2)
	res.add(0, round(300000, 300000, 0, st))
	res.add(0, round(300000, 295000, 10000, st))
	cells := map[string][]string{}
	for _, r := range rows(res) {
		cells[r.measure] = r.cells()
	}
	for measure, want := range map[string][2]string{ // median, Met
		"Burst: lost records":                                                             {"5000", "no"},
		"Burst: completeness distinct exchanges/responses":                                {"0.991667", "no"},
		"Burst: lines written minus boxtap's own event count":                             {"0", "yes"},
		"Burst: ring MiB needed for one pause (unread at its start + rate × pause)":       {"5.85", ""},
		"Burst: smallest --ring-size that holds the largest need of any round (MiB)":      {"8", ""},
		"Burst: record MiB/s while boxtap was stopped (bytes per exchange × responses/s)": {"28.8", ""},
	} {
		c, ok := cells[measure]
		if !ok {
			t.Errorf("no row %q", measure)
			continue
		}
		if c[1] != want[0] || c[4] != want[1] {
			t.Errorf("%s: median %s, Met %q; want %s, %q", measure, c[1], c[4], want[0], want[1])
		}
	}
	res.runs[0][0].errors = 3
	for _, r := range rows(res) {
		if r.measure == "Burst: lost records" {
			if cell, _ := r.verdict(); cell != "no: invalid round" {
				t.Errorf("lost records with an invalid round: %q", cell)
			}
		}
	}
}
