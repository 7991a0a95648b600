package main

import "testing"

func TestParseReportReadsTheFilteredCount(t *testing.T) {
	var res observed
	lines := []string{"tracing web (abc)", "boxtap: 0 events, 0 lost records, 0 truncated header blocks, 0 resyncs, 0 retransmits dropped, 0 body bytes skipped in the kernel, 123456 filtered out"}
	if err := parseReport(toolBoxtap, lines, &res); err != nil {
		t.Fatal(err)
	}
	if res.events != 0 || res.filtered != 123456 {
		t.Errorf("events %d filtered %d, want 0 and 123456", res.events, res.filtered)
	}
	m := measurement{served: 123456, tool: toolBoxtap, obs: res}
	if filteredShare(m) != 1 {
		t.Errorf("filtered share %v, want 1", filteredShare(m))
	}
}
