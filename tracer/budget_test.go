package tracer

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
)

// newBudgetTracer is newTestTracer with a state budget and a record of the
// warnings.
func newBudgetTracer(t *testing.T, buf *bytes.Buffer, budget int64) (*Tracer, *Target, *[]string) {
	t.Helper()
	var warnings []string
	tr := New(nil, Options{StateBudget: budget, OnError: func(err error) { warnings = append(warnings, err.Error()) }})
	tg := &Target{
		Info: container.Info{ID: strings.Repeat("ab", 32), Name: "web\x1b[2Jevil\nboxtap: forged", Runtime: "docker"},
		sink: output.NewLineSink(buf, nil),
	}
	tr.targets[42] = tg
	return tr, tg, &warnings
}

// onConn is a record of connection cookie, from client port sport.
func onConn(r recSpec, cookie uint64, sport uint16) *bpf.Record {
	rec := record(r)
	rec.Cookie = cookie
	if r.dir == bpf.DirIngress {
		rec.Sport = sport
	} else {
		rec.Dport = sport
	}
	return rec
}

// wellBehaved runs one complete exchange on connection cookie.
func wellBehaved(tr *Tracer, cookie uint64, n int) {
	req := fmt.Sprintf("GET /ok/%06d HTTP/1.1\r\nHost: web\r\n\r\n", n)
	tr.handle(onConn(recSpec{dir: bpf.DirIngress, seq: 1000 + uint32(n*len(req)), data: req}, cookie, 1))
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	tr.handle(onConn(recSpec{dir: bpf.DirEgress, seq: 5000 + uint32(n*len(resp)), data: resp, owner: n == 0}, cookie, 1))
}

// TestSlowClientsAreEvictedLargestFirstWithinBudget: thousands of connections
// each leave an unfinished 12 KiB header block. The state stays within the budget,
// a well-behaved connection between them keeps every response paired, and the
// evictions are counted, warned about (name quoted) and carried by later events.
func TestSlowClientsAreEvictedLargestFirstWithinBudget(t *testing.T) {
	var buf bytes.Buffer
	const budget = 4 << 20
	tr, tg, warnings := newBudgetTracer(t, &buf, budget)
	block := "GET /slow HTTP/1.1\r\nHost: web\r\nX-Slow: " + strings.Repeat("s", 12<<10)
	const slow = 3000
	for i := range slow {
		tr.handle(onConn(recSpec{dir: bpf.DirIngress, seq: 1, data: block[:4096]}, uint64(100+i), uint16(10000+i)))
		tr.handle(onConn(recSpec{dir: bpf.DirIngress, seq: 4097, data: block[4096:8192]}, uint64(100+i), uint16(10000+i)))
		tr.handle(onConn(recSpec{dir: bpf.DirIngress, seq: 8193, data: block[8192:]}, uint64(100+i), uint16(10000+i)))
		wellBehaved(tr, 7, i)
		if tr.stateBytes+int64(tr.orphans.bytes) > budget {
			t.Fatalf("after %d slow clients the state holds %d bytes, over the %d budget", i+1, tr.stateBytes, budget)
		}
	}
	tr.flush()
	evs := decodeLines(t, &buf)
	if len(evs) != slow {
		t.Fatalf("%d events from the well-behaved connection, want %d", len(evs), slow)
	}
	for i, ev := range evs {
		if q := argValue(t, ev, "http_request").(map[string]any); q["uri_path"] != fmt.Sprintf("/ok/%06d", i) {
			t.Fatalf("event %d paired with %v", i, q["uri_path"])
		}
	}
	if tg.Evicted() == 0 {
		t.Fatal("no eviction counted")
	}
	if got := argValue(t, evs[len(evs)-1], "evicted").(float64); got < 1 {
		t.Errorf("last event's evicted arg = %v", got)
	}
	if len(*warnings) != 1 {
		t.Fatalf("%d warnings, want exactly 1 (rate-limited): %q", len(*warnings), *warnings)
	}
	w := (*warnings)[0]
	if !strings.Contains(w, `"web\x1b[2Jevil\nboxtap: forged"`) || strings.Contains(w, "\n") || !strings.Contains(w, "--memory-budget") {
		t.Errorf("warning does not quote the name or name the fix: %q", w)
	}
}

// TestListenerSegmentsAreBounded: 50,000 data segments to a listening socket,
// for one connection and then for many, keep at most the orphan store's bound,
// count what they drop, and a real orphan is still paired afterwards.
func TestListenerSegmentsAreBounded(t *testing.T) {
	var buf bytes.Buffer
	tr, tg, _ := newBudgetTracer(t, &buf, DefaultStateBudget)
	data := "GET / HTTP/1.1\r\n" + strings.Repeat("x", 4096-16)
	for i := range 50000 {
		rec := onConn(recSpec{dir: bpf.DirIngress, seq: uint32(i * 4096), data: data}, 99, uint16(20000+i%4000*(i/25000)))
		rec.Rflags |= bpf.FlagListener
		tr.handle(rec)
		if tr.orphans.bytes > tr.orphans.maxBytes {
			t.Fatalf("after %d segments the orphan store holds %d bytes, over %d", i+1, tr.orphans.bytes, tr.orphans.maxBytes)
		}
		if len(tr.orphans.m) > maxOrphanConns {
			t.Fatalf("after %d segments the orphan store holds %d connections", i+1, len(tr.orphans.m))
		}
	}
	if tg.Evicted() < 40000 {
		t.Errorf("%d segments counted as evicted, want most of 50,000", tg.Evicted())
	}
	if len(tr.orphans.order) > 2*len(tr.orphans.m)+64 {
		t.Errorf("orphan order holds %d names for %d connections", len(tr.orphans.order), len(tr.orphans.m))
	}
	// A real orphan on a fresh connection is still kept and paired.
	req := onConn(recSpec{dir: bpf.DirIngress, seq: 1000, data: "GET /first HTTP/1.1\r\nHost: x\r\n\r\n"}, 99, 40000)
	req.Rflags |= bpf.FlagListener
	tr.handle(req)
	tr.handle(onConn(recSpec{dir: bpf.DirEgress, seq: 5000, data: "HTTP/1.1 204 No Content\r\n\r\n", owner: true}, 7, 40000))
	tr.flush()
	evs := decodeLines(t, &buf)
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	if q := argValue(t, evs[0], "http_request").(map[string]any); q["uri_path"] != "/first" {
		t.Errorf("http_request = %v, want the request seen on the listener", q)
	}
}

// TestTruncatedRequestMarksEvent: a request block cut at the header limit makes its
// response's event truncated, like a cut response block.
func TestTruncatedRequestMarksEvent(t *testing.T) {
	var buf bytes.Buffer
	tr, _, _ := newBudgetTracer(t, &buf, 0)
	tr.opts.Limits.MaxHeaderBytes = 64
	req := "GET /big HTTP/1.1\r\nHost: web\r\nX-Long: " + strings.Repeat("l", 200) + "\r\n\r\n"
	tr.handle(record(recSpec{dir: bpf.DirIngress, seq: 1, data: req}))
	tr.handle(record(recSpec{dir: bpf.DirEgress, seq: 1, data: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", owner: true}))
	tr.flush()
	evs := decodeLines(t, &buf)
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	if argValue(t, evs[0], "truncated") != true {
		t.Error("event of a truncated request is not marked truncated")
	}
}

// TestStateEstimateFollowsHeap: the budget is kept on estimates; they must not be
// far below what the heap really holds, or the budget would not bound RSS.
func TestStateEstimateFollowsHeap(t *testing.T) {
	var buf bytes.Buffer
	tr, tg, _ := newBudgetTracer(t, &buf, 1<<40)
	tg.sink = output.NewLineSink(io.Discard, nil) // events must not grow the heap
	for _, tc := range []struct {
		name  string
		feed  func(i int)
		conns int
	}{
		{"idle after one exchange", func(i int) { wellBehaved(tr, uint64(1e6+i), 0) }, 5000},
		{"unfinished 12 KiB block", func(i int) {
			block := "GET /slow HTTP/1.1\r\nHost: web\r\nX-Slow: " + strings.Repeat("s", 12<<10)
			tr.handle(onConn(recSpec{dir: bpf.DirIngress, seq: 1, data: block[:4096]}, uint64(2e6+i), 1))
			tr.handle(onConn(recSpec{dir: bpf.DirIngress, seq: 4097, data: block[4096:]}, uint64(2e6+i), 1))
		}, 3000},
		{"pipelined 16 KiB requests", func(i int) {
			for k := range 20 {
				req := fmt.Sprintf("GET /p%d HTTP/1.1\r\nX-Pad: %s\r\n\r\n", k, strings.Repeat("p", 16000))
				for off := 0; off < len(req); off += 4096 {
					end := min(off+4096, len(req))
					tr.handle(onConn(recSpec{dir: bpf.DirIngress, seq: uint32(1 + k*len(req) + off), data: req[off:end]}, uint64(3e6+i), 1))
				}
			}
		}, 300},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		est0 := tr.stateBytes
		for i := range tc.conns {
			tc.feed(i)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		est := tr.stateBytes - est0
		t.Logf("%s: %d connections, heap +%d bytes, estimate +%d bytes (%.2f)", tc.name, tc.conns, heap, est, float64(est)/float64(heap))
		if est < heap*3/4 {
			t.Errorf("%s: estimate %d bytes, under 3/4 of the heap's growth %d", tc.name, est, heap)
		}
	}
	runtime.KeepAlive(tr)
}
