package main

import "regexp"

// The filter cases measure what an exchange that does not match costs:
// boxtap traces nginx with --status 5xx while nginx answers only 200, so
// the kernel leaves out each response whose start and length it knows and
// sends a small record for user space to pair; any other response is framed
// and paired in user space, then left out before any encoding or write.

// filterCases runs the untraced baseline right before the filtered run, so
// that each round's ratio compares neighbours in time.
func filterCases(a *server) []benchCase {
	return []benchCase{
		{key: "filter/untraced", srv: a, path: "/"},
		{key: "filter/boxtap-status-5xx", srv: a, path: "/", tool: toolBoxtap, watched: a, toolArgs: []string{"--status", "5xx"}},
	}
}

// filteredShare is the share of responses the filter saw and left out:
// 1.0 when every response was framed and none written.
func filteredShare(m measurement) float64 {
	if m.served == 0 {
		return 0
	}
	return float64(m.obs.filtered) / float64(m.served)
}

func written(m measurement) float64 { return float64(m.obs.outLines) }

func filterRows(r *results) []row {
	base, filtered := r.of("filter/untraced"), r.of("filter/boxtap-status-5xx")
	if filtered == nil {
		return nil
	}
	return judgedAll(r, []row{
		{"Filter --status 5xx, nginx answers 200: req/s untraced", each(base, rps), "%.0f", "", nil, nil},
		{"Filter --status 5xx: req/s traced", each(filtered, rps), "%.0f", "", nil, nil},
		{"Filter --status 5xx: throughput ratio traced/untraced", ratios(filtered, base, rps), "%.3f", ">= 0.97", atLeast(0.97), nil},
		{"Filter --status 5xx: boxtap CPU s per 100k responses", each(filtered, cpuPer100k), "%.3f", "<= 0.05", atMost(0.05), nil},
		{"Filter --status 5xx: responses filtered out / served", each(filtered, filteredShare), "%.6f", "1.0 exactly", allEqual(1), nil},
		{"Filter --status 5xx: events written", each(filtered, written), "%.0f", "0", allEqual(0), nil},
		{"Filter --status 5xx: lost records", each(filtered, lost), "%.0f", "0", allEqual(0), nil},
	}, "filter/untraced", "filter/boxtap-status-5xx")
}

// boxtapFiltered is the end of boxtap's exit line when a filter left
// exchanges out.
var boxtapFiltered = regexp.MustCompile(`^boxtap: \d+ events, .*, (\d+) filtered out(?: \(\d+ of them in the kernel\))?$`)
