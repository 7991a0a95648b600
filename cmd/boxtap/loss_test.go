package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// lossWarningRE is boxtap's rate-limited warning when the kernel dropped capture records.
var lossWarningRE = regexp.MustCompile(`boxtap: warning: (\S+) \(([0-9a-f]{12})\): the kernel dropped (\d+) capture records so far \(ring buffer full\); responses may be missing: raise --ring-size`)

// lostRecordsArg returns an event line's "lost_records" arg, and whether it has one. It
// reads the raw JSON line, independently of boxtap's encoder and of Tracee's decoder.
func lostRecordsArg(t *testing.T, line string) (uint64, bool) {
	t.Helper()
	var ev struct {
		Args []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Value json.RawMessage `json:"value"`
		} `json:"args"`
	}
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatalf("event line is not JSON: %v\n%s", err, line)
	}
	for _, a := range ev.Args {
		if a.Name != "lost_records" {
			continue
		}
		n, err := strconv.ParseUint(string(a.Value), 10, 64)
		if err != nil || a.Type != "int64" {
			t.Fatalf("lost_records arg of type %q and value %s, want an int64 count", a.Type, a.Value)
		}
		return n, true
	}
	return 0, false
}

// TestTraceLossIsReportedOnLaterEventsWarningAndStopLines overflows a 16 KiB ring on
// purpose, then lets the same connection carry more exchanges, and checks the three ways
// boxtap reports the loss: the warning on stderr, the lost_records arg on every event
// written after the loss, and the counts in the container's stop line and the exit line.
//
// One keep-alive connection carries M strict exchanges of equal-sized single-segment
// records while boxtap is stopped (SIGSTOP), so the kernel delivers a prefix of K records
// and counts 2M-K lost (see TestHardeningRingOverflow). boxtap is resumed; once it warned,
// the loss count N is final (nothing else is sent meanwhile) and the prefix has E = M -
// ceil(N/2) events. The client then makes `after` more exchanges on the same connection:
// their events must carry lost_records = N. The server serves one connection, so its
// container exits and boxtap prints the stop line and exits by itself.
func TestTraceLossIsReportedOnLaterEventsWarningAndStopLines(t *testing.T) {
	e := newTraceEnv(t)
	const m, after = 100, 5
	serverJSON, clientJSON := overflowScripts(m+after, m)

	addr := fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
	c := e.hxRun(t, "loss", "host", "listening on", nil, "script-serve", "-addr", addr, "-script", serverJSON)
	p := e.startTrace(t, []*itest.Container{c}, "--ring-size", "16KiB")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The burst, with boxtap stopped: the ring fills and the rest is lost.
	cl := burstWhileStopped(ctx, t, p, e.testapp, addr, clientJSON)

	// The warning comes from the periodic check of the kernel's counter (no record of
	// this container arrives meanwhile).
	if err := p.WaitStderr("capture records so far", traceStartTimeout); err != nil {
		t.Fatalf("no loss warning after the ring overflowed: %v", err)
	}
	w := lossWarningRE.FindStringSubmatch(p.Stderr())
	if w == nil {
		t.Fatalf("the loss warning does not read as documented:\n%s", p.Stderr())
	}
	if w[1] != c.Name || w[2] != itest.ShortID(c.ID) {
		t.Errorf("the loss warning names %s (%s), want %s (%s)", w[1], w[2], c.Name, itest.ShortID(c.ID))
	}
	lost, _ := strconv.ParseUint(w[3], 10, 64)
	if lost == 0 || lost > 2*m {
		t.Fatalf("the warning reports %d lost records of %d sent", lost, 2*m)
	}
	before := m - int((lost+1)/2)
	if before <= 0 {
		t.Fatalf("%d lost records leave no event of the burst; the ring should hold a few", lost)
	}
	// Wait until boxtap wrote the burst's prefix: the ring is then drained, so the
	// exchanges that follow fit.
	if _, err := p.WaitLines(before, traceStartTimeout); err != nil {
		t.Fatalf("the %d records lost leave %d events of the burst: %v", lost, before, err)
	}

	// The exchanges after the loss; the server then exits, and boxtap with it.
	if err := cl.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if err := cl.Wait(60 * time.Second); err != nil {
		t.Fatalf("script-client: %v\n%s", err, cl.Stderr())
	}
	x := stopTrace(t, p, nil)
	if x.code != 0 {
		t.Fatalf("boxtap exited with status %d:\n%s", x.code, x.stderr)
	}
	t.Logf("%d exchanges in the burst, %d lost records, %d events before the loss; %s", m, lost, before, hxLastStderrLine(x.stderr))

	lines := p.Lines()
	vs := viewEvents(t, x.events)
	if len(vs) != before+after {
		t.Fatalf("%d events, want %d (%d before the loss, %d after)", len(vs), before+after, before, after)
	}
	for i, v := range vs {
		seq := i + 1
		if i >= before {
			seq = m + 1 + i - before // the exchanges after the loss
		}
		if got := v.resp.Headers.Get("X-Seq"); got != fmt.Sprintf("%03d", seq) {
			t.Errorf("event %d has X-Seq %q, want %03d", i, got, seq)
		}
		n, ok := lostRecordsArg(t, lines[i])
		switch {
		case i >= before && (!ok || n != lost):
			t.Errorf("event %d, written after the loss: lost_records %d (present %v), want %d", i, n, ok, lost)
		case i < before && ok && n != lost:
			t.Errorf("event %d, before the loss was read: lost_records %d, want none or %d", i, n, lost)
		}
	}

	// The warning is rate-limited and the loss happened once: one warning.
	if got := len(lossWarningRE.FindAllString(x.stderr, -1)); got != 1 {
		t.Errorf("%d loss warnings for one loss, want 1:\n%s", got, x.stderr)
	}
	stopLine := fmt.Sprintf("container %s (%s) stopped: %d events, %d lost records\n", c.Name, itest.ShortID(c.ID), before+after, lost)
	if !strings.Contains(x.stderr, stopLine) {
		t.Errorf("stderr lacks the stop line %q:\n%s", stopLine, x.stderr)
	}
	sum := hxParseSummary(t, x.stderr)
	if sum.lostRecords != lost || sum.events != uint64(before+after) {
		t.Errorf("exit line: %d events, %d lost records; want %d, %d", sum.events, sum.lostRecords, before+after, lost)
	}
}
