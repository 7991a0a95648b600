package main

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// event is one line of boxtap output with the fields the bench reads.
func event(srcPort uint16, ts int64) string {
	return `{"timestamp":` + itoa(ts) + `,"eventName":"net_packet_http_response","processName":"nginx","args":[` +
		`{"name":"metadata","type":"trace.PktMeta","value":{"src_ip":"127.0.0.1","dst_ip":"127.0.0.1","src_port":` + itoa(int64(srcPort)) +
		`,"dst_port":40000,"protocol":6,"packet_len":200,"iface":"lo"}},{"name":"http_response","type":"trace.ProtoHTTPResponse","value":{}}]}` + "\n"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// h2event is event with a stream_id arg after http_response.
func h2event(srcPort uint16, ts int64, stream string) string {
	return strings.Replace(event(srcPort, ts), `"value":{}}]}`, `"value":{}},{"name":"stream_id","type":"uint32","value":`+stream+`}]}`, 1)
}

func TestTallyEventsCountsDistinctExchanges(t *testing.T) {
	a, b, c := event(8080, 1000), event(8080, 2000), event(8081, 1000)
	for _, tc := range []struct {
		name string
		out  string
		want eventTally
	}{
		{"empty", "", eventTally{}},
		{"three exchanges", a + b + c, eventTally{lines: 3, distinct: 3}},
		// Same line count as the case above: counting lines would call it complete.
		{"duplicate hides a miss", a + b + b, eventTally{lines: 3, distinct: 2, duplicates: 1}},
		{"same time on another connection is another exchange", a + c, eventTally{lines: 2, distinct: 2}},
		{"not JSON", a + "boxtap: warning\n", eventTally{lines: 2, distinct: 1, bad: 1}},
		{"another event", a + `{"timestamp":5,"eventName":"other","args":[]}` + "\n", eventTally{lines: 2, distinct: 1, bad: 1}},
		{"no metadata", `{"timestamp":5,"eventName":"net_packet_http_response","args":[]}` + "\n", eventTally{lines: 1, bad: 1}},
		{"no timestamp", `{"eventName":"net_packet_http_response","args":[{"name":"metadata","value":{"src_port":1,"dst_port":2}}]}` + "\n", eventTally{lines: 1, bad: 1}},
		{"metadata without ports", `{"timestamp":5,"eventName":"net_packet_http_response","args":[{"name":"metadata","value":{"src_ip":"::1"}}]}` + "\n", eventTally{lines: 1, bad: 1}},
		{"last line cut short", a + strings.TrimSuffix(b, "\n"), eventTally{lines: 1, distinct: 1, bad: 1}},
		// HTTP/2 streams answered in one segment share the timestamp.
		{"HTTP/2 streams at one time", h2event(8080, 1000, "1") + h2event(8080, 1000, "3") + a, eventTally{lines: 3, distinct: 3}},
		{"HTTP/2 stream doubled", h2event(8080, 1000, "1") + h2event(8080, 1000, "1"), eventTally{lines: 2, distinct: 1, duplicates: 1}},
		{"HTTP/2 stream 0", h2event(8080, 1000, "0"), eventTally{lines: 1, bad: 1}},
		{"HTTP/2 stream not a number", h2event(8080, 1000, `"x"`), eventTally{lines: 1, bad: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tallyEvents(strings.NewReader(tc.out))
			if err != nil || got != tc.want {
				t.Fatalf("tallyEvents = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestMeasurementCompleteAndInvalid(t *testing.T) {
	good := measurement{served: 3, obs: observed{events: 3, tally: eventTally{lines: 3, distinct: 3}}}
	for _, tc := range []struct {
		name     string
		m        func(m measurement) measurement
		complete bool
	}{
		{"every response once", func(m measurement) measurement { return m }, true},
		{"one missed", func(m measurement) measurement { m.served = 4; return m }, false},
		{"one doubled", func(m measurement) measurement {
			m.obs.tally.duplicates, m.obs.tally.lines, m.obs.events = 1, 4, 4
			return m
		}, false},
		{"a malformed line", func(m measurement) measurement { m.obs.tally.bad, m.obs.tally.lines, m.obs.events = 1, 4, 4; return m }, false},
		{"boxtap counted more than it wrote", func(m measurement) measurement { m.obs.events = 4; return m }, false},
	} {
		if got := tc.m(good).complete(); got != tc.complete {
			t.Errorf("%s: complete() = %v, want %v", tc.name, got, tc.complete)
		}
	}
	if why := good.invalid(); why != "" {
		t.Errorf("a round without wrk errors is invalid: %s", why)
	}
	bad := good
	bad.errors = 2
	if why := bad.invalid(); !strings.Contains(why, "2 socket errors or non-2xx/3xx") {
		t.Errorf("a round with wrk errors: invalid() = %q", why)
	}
}

func TestJudgingNeedsEveryRound(t *testing.T) {
	for _, tc := range []struct {
		name string
		met  func([]float64) bool
		vals []float64
		want bool
	}{
		{"at least: all above", atLeast(0.97), []float64{0.98, 0.99, 1.0}, true},
		{"at least: the target itself", atLeast(0.97), []float64{0.97}, true},
		// The median (0.99) meets it; one round does not.
		{"at least: one round below", atLeast(0.97), []float64{0.99, 0.5, 1.0}, false},
		{"at most: all below", atMost(0.15), []float64{0.1, 0.15}, true},
		{"at most: one round above", atMost(0.15), []float64{0.1, 0.1, 0.9}, false},
		{"all equal", allEqual(1), []float64{1, 1}, true},
		{"all equal: one off", allEqual(1), []float64{1, 0.999999}, false},
		// The range 0.80–1.05 contains 1, which used to pass the neighbour check.
		{"neighbour: range around 1 with a slow round", atLeast(0.97), []float64{0.80, 1.0, 1.05}, false},
	} {
		if got := tc.met(tc.vals); got != tc.want {
			t.Errorf("%s: %v -> %v, want %v", tc.name, tc.vals, got, tc.want)
		}
	}
}

func TestRowVerdict(t *testing.T) {
	base := row{measure: "ratio", vals: []float64{0.99, 1.0}, format: "%.3f", target: ">= 0.97", met: atLeast(0.97)}
	invalid := base
	invalid.invalid = []string{"small/boxtap round 2: wrk reported 3 socket errors or non-2xx/3xx responses"}
	empty := base
	empty.vals = nil
	missed := base
	missed.vals = []float64{0.99, 0.5, 1.0}
	info := row{measure: "req/s", vals: []float64{1}, format: "%.0f"}
	for _, tc := range []struct {
		name string
		r    row
		cell string
	}{
		{"met", base, "yes"},
		{"invalid round is never met", invalid, "no: invalid round"},
		{"nothing to judge", empty, "no: no rounds"},
		{"one round misses", missed, "no"},
		{"informative", info, ""},
	} {
		if got := tc.r.cells()[4]; got != tc.cell {
			t.Errorf("%s: Met cell %q, want %q", tc.name, got, tc.cell)
		}
	}
	// The headline stays the median.
	if got := missed.cells()[1]; got != "0.990" {
		t.Errorf("median cell %q, want 0.990", got)
	}
	got := missedTargets([]row{base, invalid, info, missed})
	if len(got) != 2 || !strings.HasPrefix(got[0], "ratio: no: invalid round") || !strings.Contains(got[1], "median 0.990, range 0.500 – 1.000") {
		t.Fatalf("missedTargets = %q", got)
	}
}

func TestRowsJudgeWhatTheRoundsShow(t *testing.T) {
	round := func(rps float64, served, distinct, dups uint64, cpu float64, bpf time.Duration) measurement {
		return measurement{load: load{rps: rps, p99: time.Millisecond}, served: served, tool: toolBoxtap,
			obs: observed{cpu: cpu, rssKiB: 20 << 10, events: distinct + dups,
				tally: eventTally{lines: distinct + dups, distinct: distinct, duplicates: dups}, bpf: progStats{runTime: bpf}}}
	}
	cases := []benchCase{{key: "small/untraced"}, {key: "small/boxtap", tool: toolBoxtap}}
	res := newResults(cases, 2)
	res.add(0, measurement{load: load{rps: 1000, p99: time.Millisecond}})
	res.add(0, measurement{load: load{rps: 1000, p99: time.Millisecond}, served: 0})
	res.add(1, round(990, 100000, 100000, 0, 0.05, 50*time.Millisecond))
	// Round 2: one response missed and one event doubled: as many lines as responses.
	res.add(1, round(990, 100000, 99999, 1, 0.05, 50*time.Millisecond))
	verdicts := map[string]string{}
	values := map[string]string{}
	for _, r := range rows(res) {
		c := r.cells()
		verdicts[r.measure], values[r.measure] = c[4], c[1]
	}
	for measure, want := range map[string]string{
		"Small: throughput ratio traced/untraced":             "yes",
		"Small: completeness distinct exchanges/responses":    "no",
		"Small: duplicate or malformed event lines":           "no",
		"Small: lines written minus boxtap's own event count": "yes",
		"Small: boxtap CPU s per 100k, process + eBPF":        "yes",
	} {
		if verdicts[measure] != want {
			t.Errorf("%s: Met %q, want %q (rows %v)", measure, verdicts[measure], want, verdicts)
		}
	}
	// 0.05 s of process CPU and 0.05 s in the programs for 100k responses.
	for measure, want := range map[string]string{
		"Small: boxtap process CPU s per 100k responses": "0.050",
		"Small: eBPF programs' CPU s per 100k responses": "0.050",
		"Small: boxtap CPU s per 100k, process + eBPF":   "0.100",
	} {
		if values[measure] != want {
			t.Errorf("%s = %s, want %s", measure, values[measure], want)
		}
	}

	// A round whose eBPF statistics could not be read is left out of the
	// sum instead of counting as zero.
	res.runs[1][1].obs.bpfErr = errors.New("no statistics")
	for _, r := range rows(res) {
		if r.measure == "Small: boxtap CPU s per 100k, process + eBPF" && len(r.vals) != 1 {
			t.Errorf("sum over %d rounds, want 1", len(r.vals))
		}
	}

	// wrk errors in the untraced round make the ratio rows invalid.
	res.runs[0][0].errors = 5
	for _, r := range rows(res) {
		if r.measure == "Small: throughput ratio traced/untraced" {
			if cell, ok := r.verdict(); ok || cell != "no: invalid round" || !strings.Contains(r.invalid[0], "small/untraced round 1") {
				t.Errorf("throughput ratio with an invalid round: %q, %v, %q", cell, ok, r.invalid)
			}
		}
	}
}

func TestFdinfoProgID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		id   uint32
		want bool
	}{
		{"pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1069\nprog_type:\t8\nprog_jited:\t1\nprog_tag:\tab\nmemlock:\t4096\nprog_id:\t312\nrun_time_ns:\t0\n", 312, true},
		{"link_type:\tcgroup\nlink_id:\t4\nprog_tag:\tab\nprog_id:\t77\ncgroup_id:\t9\n", 77, true},
		{"map_type:\t27\nmap_id:\t5\n", 0, false},
		{"prog_id:\tnone\n", 0, false},
		{"prog_id:\t0\n", 0, false},
	} {
		id, ok := fdinfoProgID(tc.in)
		if uint32(id) != tc.id || ok != tc.want {
			t.Errorf("fdinfoProgID(%q) = %d, %v; want %d, %v", tc.in, id, ok, tc.id, tc.want)
		}
	}
}

func TestClkTckFromAuxv(t *testing.T) {
	if got, err := clkTckOf([][2]uintptr{{6, 4096}, {atClkTck, 250}, {0, 0}}); err != nil || got != 250 {
		t.Errorf("clkTckOf = %v, %v; want 250", got, err)
	}
	if _, err := clkTckOf([][2]uintptr{{6, 4096}}); err == nil {
		t.Error("an auxiliary vector without AT_CLKTCK gave a value")
	}
	// This process's own vector has it (Linux always passes it).
	if hz, err := clockTicks(); err != nil || hz <= 0 {
		t.Errorf("clockTicks() = %v, %v", hz, err)
	}
}

func TestProcCPUUsesClockTicks(t *testing.T) {
	// Field 14..17 (utime, stime, cutime, cstime) hold 100+50+30+20 = 200 ticks.
	stat := "1234 (a b) S 1 1 1 0 -1 4194304 100 0 0 0 100 50 30 20 20 0 1 0 100 0 0\n"
	if got, err := cpuSeconds(stat, 250); err != nil || got != 0.8 {
		t.Errorf("cpuSeconds at 250 Hz = %v, %v; want 0.8", got, err)
	}
	if got, err := cpuSeconds(stat, 100); err != nil || got != 2 {
		t.Errorf("cpuSeconds at 100 Hz = %v, %v; want 2", got, err)
	}
	if _, err := cpuSeconds("1234 (x) S 1", 100); err == nil {
		t.Error("a short stat line parsed")
	}
}
