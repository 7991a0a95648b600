package output

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/aquasecurity/tracee/types/trace"
)

// TestEvictedArgFollowsLostRecords: once a container's state was evicted for the
// memory budget, its events carry "evicted" as an int64 Tracee decodes, and argsNum
// counts it; before, there is no such arg.
func TestEvictedArgFollowsLostRecords(t *testing.T) {
	for _, evicted := range []uint64{0, 7} {
		e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
		e.Evicted = evicted
		var ev trace.Event
		if err := json.Unmarshal(e.AppendJSON(nil), &ev); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if ev.ArgsNum != len(ev.Args) {
			t.Errorf("argsNum %d, %d args", ev.ArgsNum, len(ev.Args))
		}
		var got any
		found := false
		for _, a := range ev.Args {
			if a.Name == "evicted" {
				got, found = a.Value, true
			}
		}
		switch {
		case evicted == 0 && found:
			t.Errorf("evicted arg %v written while zero", got)
		case evicted > 0 && got != int64(evicted):
			t.Errorf("evicted arg = %#v, want int64(%d)", got, evicted)
		}
	}
}
