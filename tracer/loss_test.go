package tracer

import (
	"testing"
	"time"
)

// TestLossWarningsAreRateLimitedWhileEventsCarryEveryCount walks noteLost through a
// container's losses: the first loss warns; a larger count within lossWarnEvery does not
// warn but is what later events carry; after lossWarnEvery a grown count warns again, an
// unchanged one never does.
func TestLossWarningsAreRateLimitedWhileEventsCarryEveryCount(t *testing.T) {
	const s = int64(time.Second)
	start := int64(1_000) * s
	steps := []struct {
		name string
		lost uint64
		at   int64
		warn bool
	}{
		{"no loss yet", 0, start, false},
		{"first loss", 5, start + s, true},
		{"more loss within the interval", 9, start + 2*s, false},
		{"still within the interval", 12, start + s + int64(lossWarnEvery) - 1, false},
		{"grown, interval over", 12, start + s + int64(lossWarnEvery), true},
		{"unchanged long after", 12, start + 60*s, false},
		{"grown again long after", 13, start + 61*s, true},
	}
	var tg Target
	for _, st := range steps {
		if got := tg.noteLost(st.lost, st.at); got != st.warn {
			t.Errorf("%s: warn %v, want %v", st.name, got, st.warn)
		}
		if tg.lost != st.lost {
			t.Errorf("%s: events would carry lost_records %d, want %d", st.name, tg.lost, st.lost)
		}
	}
}
