package tracer

import (
	"strings"
	"testing"

	"github.com/boxtap/boxtap/bpf"
)

// The exit line always names the three kernel counts of uncaptured traffic,
// after the counts it had before (scripts parse that prefix); a stop line
// names only those that are not zero.
func TestUncapturedCountsOnExitAndStopLines(t *testing.T) {
	s := Summary{Events: 3}
	s.add(Summary{Uncaptured: uncapturedOf(bpf.Counters{NotHTTP: 2, NoStorage: 5, NestOverflow: 7})})
	s.add(Summary{Uncaptured: uncapturedOf(bpf.Counters{NotHTTP: 1})})
	line := s.String()
	want := "3 events, 0 lost records, 0 truncated header blocks, 0 resyncs, 0 retransmits dropped, 0 body bytes skipped in the kernel, 0 evicted (memory budget), 0 requests dropped unpaired, 0 gap bytes, " +
		"3 connections not HTTP, 5 packets without socket storage, 7 packets nested too deep"
	if line != want {
		t.Errorf("exit line\n%q\nwant\n%q", line, want)
	}
	for _, tc := range []struct {
		c    bpf.Counters
		want string
	}{
		{bpf.Counters{}, ""},
		{bpf.Counters{NotHTTP: 4}, ", 4 connections not HTTP"},
		{bpf.Counters{NoStorage: 1, NestOverflow: 2}, ", 1 packets without socket storage, 2 packets nested too deep"},
	} {
		if got := StopNote(tc.c); got != tc.want {
			t.Errorf("StopNote(%+v) = %q, want %q", tc.c, got, tc.want)
		}
	}
	if !strings.HasPrefix(Summary{Malformed: 1}.String(), "0 events, ") {
		t.Error("exit line lost its prefix")
	}
}
