package tracer

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/httpstream"
)

// listenerRecord is a request segment the kernel saw on the listening socket
// (cookie 3) before the accepted socket (cookie 7, record's default) existed.
func listenerRecord(data string, clientPort uint16) *bpf.Record {
	rec := record(recSpec{dir: bpf.DirIngress, seq: 1000, data: data})
	rec.Rflags |= bpf.FlagListener
	rec.Cookie = 3
	rec.Sport = clientPort
	return rec
}

func TestRequestSeenOnListeningSocketPairsWithAcceptedConnection(t *testing.T) {
	for _, tc := range []struct {
		name       string
		clientPort uint16 // of the listener's segment; the accepted connection's client is 40000
		wantPath   any
	}{
		{"same connection", 40000, "/from-listener"},
		{"another connection's segment is not taken", 40001, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tr, _ := newTestTracer(t, &buf)
			tr.handle(listenerRecord("GET /from-listener HTTP/1.1\r\nHost: web\r\n\r\n", tc.clientPort))
			if len(tr.conns) != 0 || len(tr.orphans.m) != 1 {
				t.Fatalf("a listener's segment made %d connections and %d orphan entries, want 0 and 1", len(tr.conns), len(tr.orphans.m))
			}
			tr.handle(record(recSpec{dir: bpf.DirEgress, seq: 5000, data: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", owner: true}))
			tr.flush()
			evs := decodeLines(t, &buf)
			if len(evs) != 1 {
				t.Fatalf("got %d events, want 1", len(evs))
			}
			var path any
			for _, a := range evs[0]["args"].([]any) {
				if m := a.(map[string]any); m["name"] == "http_request" {
					path = m["value"].(map[string]any)["uri_path"]
				}
			}
			if path != tc.wantPath {
				t.Errorf("response paired with request %v, want %v", path, tc.wantPath)
			}
			// Taken orphans are gone; another connection's stay until they expire.
			if wantLeft := map[bool]int{true: 0, false: 1}[tc.wantPath != nil]; len(tr.orphans.m) != wantLeft {
				t.Errorf("%d orphan entries left, want %d", len(tr.orphans.m), wantLeft)
			}
		})
	}
}

func TestConnKeyIsTheSameForBothDirections(t *testing.T) {
	in := record(recSpec{dir: bpf.DirIngress, seq: 1, data: "x"})
	out := record(recSpec{dir: bpf.DirEgress, seq: 1, data: "x"})
	if connKeyOf(in) != connKeyOf(out) {
		t.Fatalf("ingress key %+v, egress key %+v", connKeyOf(in), connKeyOf(out))
	}
	k := connKeyOf(out)
	if k.localPort != 8080 || k.remotePort != 40000 || k.local[0] != 10 || k.local[3] != 2 {
		t.Fatalf("key %+v: want the traced socket's side (local 10.0.0.2:8080)", k)
	}
}

func TestExecutablePathIsCachedPerProcessStart(t *testing.T) {
	x := exeCache{m: make(map[exeKey]string)}
	self, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	pid := uint32(os.Getpid())
	if got := x.path(pid, 1); got != self {
		t.Fatalf("path of this process = %q, want %q", got, self)
	}
	// A cached path is not read again; another start time of the same pid is.
	x.m[exeKey{pid, 1}] = "/cached"
	if got := x.path(pid, 1); got != "/cached" {
		t.Errorf("second lookup = %q, want the cached value", got)
	}
	if got := x.path(pid, 2); got != self {
		t.Errorf("lookup for another start = %q, want %q", got, self)
	}
	// A process that is gone has no path, and the cache stays bounded.
	for i := range 5000 {
		if got := x.path(0, uint64(i)); got != "" {
			t.Fatalf("path of pid 0 = %q", got)
		}
	}
	if len(x.m) > 4097 {
		t.Errorf("exe cache holds %d entries, want at most 4097", len(x.m))
	}
}

func TestReapDropsOnlyIdleConnections(t *testing.T) {
	var buf bytes.Buffer
	tr, _ := newTestTracer(t, &buf)
	now := time.Now().UnixNano()
	var stats httpstream.Stats
	idle := int64(tr.opts.IdleConn)
	for cookie, last := range map[uint64]int64{1: now - idle - int64(time.Minute), 2: now - idle/2, 3: now} {
		tr.conns[cookie] = &conn{hs: httpstream.NewConn(tr.opts.Limits, &stats), lastNs: last}
	}
	tr.lastReap = now // reaped just now: nothing happens for ten seconds
	tr.reap()
	if len(tr.conns) != 3 {
		t.Fatalf("reap within ten seconds of the last dropped %d connections", 3-len(tr.conns))
	}
	tr.lastReap = now - int64(11*time.Second)
	tr.reap()
	if _, ok := tr.conns[1]; ok || len(tr.conns) != 2 {
		t.Fatalf("after reap: connections %v, want 2 and 3", keys(tr.conns))
	}
}

func keys(m map[uint64]*conn) string {
	s := ""
	for k := range m {
		s += fmt.Sprint(k, " ")
	}
	return s
}
