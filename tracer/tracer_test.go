package tracer

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
)

// newTestTracer returns a tracer with one target (cgroup id 42) writing JSON
// lines to buf, without a kernel collection: records are fed to handle.
func newTestTracer(t *testing.T, buf *bytes.Buffer) (*Tracer, *Target) {
	t.Helper()
	tr := New(nil, Options{OnError: func(err error) { t.Errorf("tracer error: %v", err) }})
	tg := &Target{
		Info: container.Info{ID: strings.Repeat("ab", 32), Name: "web", Image: "nginx:1", Runtime: "docker", Hostname: "web-host"},
		sink: output.NewLineSink(buf, nil),
	}
	tr.targets[42] = tg
	return tr, tg
}

type recSpec struct {
	dir       uint8
	seq       uint32
	data      string
	owner     bool
	ckey      uint64
	v6        bool
	gap, skip bool
	skipTo    uint32
}

func record(r recSpec) *bpf.Record {
	h := &bpf.RecordHeader{Cookie: 7, Ckey: 42, Seq: r.seq, SegLen: uint32(len(r.data)), DataLen: uint16(len(r.data)), Dir: r.dir, PktLen: uint32(len(r.data) + 52), Cpu: 1}
	if r.ckey != 0 {
		h.Ckey = r.ckey
	}
	// The server (container) is 10.0.0.2:8080, the client 10.0.0.1:40000.
	src, dst := [4]uint8{10, 0, 0, 1}, [4]uint8{10, 0, 0, 2}
	h.Sport, h.Dport = 40000, 8080
	if r.dir == bpf.DirEgress {
		src, dst = dst, src
		h.Sport, h.Dport = 8080, 40000
	}
	h.Family = 4
	copy(h.Saddr[:], src[:])
	copy(h.Daddr[:], dst[:])
	if r.v6 {
		h.Family = 6
		h.Saddr, h.Daddr = [16]uint8{15: 1}, [16]uint8{15: 1}
	}
	for i, c := range "eth0" {
		h.Iface[i] = int8(c)
	}
	var owner *bpf.Owner
	if r.owner {
		h.Rflags |= bpf.FlagOwner
		owner = &bpf.Owner{Tid: 101, Tgid: 100, Ppid: 1, NsTid: 2, NsTgid: 1, Uid: 33, Mntns: 4026531840, Pidns: 4026531836, CgroupId: 42}
		for i, c := range "nginx" {
			owner.Comm[i] = int8(c)
		}
	}
	if r.gap {
		h.Rflags |= bpf.FlagGap
	}
	if r.skip {
		h.Rflags |= bpf.FlagSkip
		h.SkipTo = r.skipTo
	}
	return &bpf.Record{RecordHeader: h, Owner: owner, Data: []byte(r.data)}
}

func decodeLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("invalid JSON line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func argValue(t *testing.T, ev map[string]any, name string) any {
	t.Helper()
	for _, a := range ev["args"].([]any) {
		m := a.(map[string]any)
		if m["name"] == name {
			return m["value"]
		}
	}
	t.Fatalf("event has no arg %q", name)
	return nil
}

func TestServerResponseIsAttributedToSocketOwner(t *testing.T) {
	var buf bytes.Buffer
	tr, tg := newTestTracer(t, &buf)
	req := "GET /a HTTP/1.1\r\nHost: web\r\n\r\n"
	resp := "HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Id: 9\r\n\r\nok"
	tr.handle(record(recSpec{dir: bpf.DirIngress, seq: 1000, data: req}))
	tr.handle(record(recSpec{dir: bpf.DirEgress, seq: 5000, data: resp, owner: true}))
	tr.flush()
	evs := decodeLines(t, &buf)
	if len(evs) != 1 || tg.Events() != 1 {
		t.Fatalf("got %d events (target counts %d), want 1", len(evs), tg.Events())
	}
	ev := evs[0]
	checks := map[string]any{
		"hostProcessId": 100.0, "hostThreadId": 101.0, "processId": 1.0, "threadId": 2.0,
		"processName": "nginx", "userId": 33.0, "hostName": "web-host", "containerId": tg.Info.ID,
		"eventId": "2011", "processorId": 1.0,
	}
	for k, want := range checks {
		if ev[k] != want {
			t.Errorf("%s = %v, want %v", k, ev[k], want)
		}
	}
	meta := argValue(t, ev, "metadata").(map[string]any)
	if meta["src_ip"] != "10.0.0.2" || meta["src_port"] != 8080.0 || meta["dst_ip"] != "10.0.0.1" || meta["iface"] != "eth0" {
		t.Errorf("metadata = %v", meta)
	}
	if meta["packet_len"] != float64(len(resp)+52) {
		t.Errorf("packet_len = %v, want %d", meta["packet_len"], len(resp)+52)
	}
	hr := argValue(t, ev, "http_response").(map[string]any)
	if hr["status_code"] != 201.0 || hr["status"] != "201 Created" {
		t.Errorf("http_response = %v", hr)
	}
	if argValue(t, ev, "direction") != "egress" {
		t.Errorf("direction = %v", argValue(t, ev, "direction"))
	}
	if q := argValue(t, ev, "http_request").(map[string]any); q["uri_path"] != "/a" || q["method"] != "GET" {
		t.Errorf("http_request = %v", q)
	}
}

func TestRecordsOfUntracedCgroupAreDropped(t *testing.T) {
	var buf bytes.Buffer
	tr, _ := newTestTracer(t, &buf)
	tr.handle(record(recSpec{dir: bpf.DirEgress, seq: 1, data: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", ckey: 99}))
	tr.flush()
	if buf.Len() != 0 || len(tr.conns) != 0 {
		t.Fatalf("untraced record produced output %q / state %d", buf.String(), len(tr.conns))
	}
}

func TestIPv6AddressesAndIngressDirection(t *testing.T) {
	var buf bytes.Buffer
	tr, _ := newTestTracer(t, &buf)
	tr.handle(record(recSpec{dir: bpf.DirEgress, seq: 1, data: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", v6: true, owner: true}))
	tr.handle(record(recSpec{dir: bpf.DirIngress, seq: 9, data: "HTTP/1.1 204 No Content\r\n\r\n", v6: true}))
	tr.flush()
	evs := decodeLines(t, &buf)
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	meta := argValue(t, evs[0], "metadata").(map[string]any)
	if meta["src_ip"] != "::1" || meta["dst_ip"] != "::1" {
		t.Errorf("metadata = %v", meta)
	}
	if argValue(t, evs[0], "direction") != "ingress" {
		t.Errorf("direction = %v", argValue(t, evs[0], "direction"))
	}
}

func TestGapFlagResumesAtNextResponse(t *testing.T) {
	var buf bytes.Buffer
	tr, _ := newTestTracer(t, &buf)
	reqs := "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n"
	r1 := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	lost := "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
	r3 := "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
	tr.handle(record(recSpec{dir: bpf.DirIngress, seq: 1, data: reqs}))
	tr.handle(record(recSpec{dir: bpf.DirEgress, seq: 100, data: r1}))
	tr.handle(record(recSpec{dir: bpf.DirEgress, seq: 100 + uint32(len(r1)+len(lost)), data: r3, gap: true}))
	tr.flush()
	evs := decodeLines(t, &buf)
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2 (the lost response gives none)", len(evs))
	}
	if code := argValue(t, evs[1], "http_response").(map[string]any)["status_code"]; code != 404.0 {
		t.Errorf("second event status %v, want 404", code)
	}
}

func TestKernelSkipPromiseFramesNextResponse(t *testing.T) {
	var buf bytes.Buffer
	tr, _ := newTestTracer(t, &buf)
	tr.handle(record(recSpec{dir: bpf.DirIngress, seq: 1, data: "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\n\r\n"}))
	head := "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
	tr.handle(record(recSpec{dir: bpf.DirEgress, seq: 1000, data: head}))
	bodyStart := 1000 + uint32(len(head))
	// The kernel captured 10 body bytes of a 5000-byte segment and skips the rest of the body.
	r := record(recSpec{dir: bpf.DirEgress, seq: bodyStart, data: "0123456789", skip: true, skipTo: bodyStart + 100000})
	r.SegLen = 5000
	tr.handle(r)
	tr.handle(record(recSpec{dir: bpf.DirEgress, seq: bodyStart + 100000, data: "HTTP/1.1 304 Not Modified\r\n\r\n"}))
	tr.flush()
	evs := decodeLines(t, &buf)
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2", len(evs))
	}
	if code := argValue(t, evs[1], "http_response").(map[string]any)["status_code"]; code != 304.0 {
		t.Errorf("second event status %v, want 304", code)
	}
	if ps := tr.ParserStats(); ps.Desyncs != 0 {
		t.Errorf("desyncs = %d, want 0", ps.Desyncs)
	}
}

// TestRequestSeenOnListenerIsPairedWithItsResponse: when the client's
// handshake ACK is lost, the kernel shows the first request on the listening
// socket (another cookie). It still pairs with the accepted connection's
// first response, matched by addresses.
func TestRequestSeenOnListenerIsPairedWithItsResponse(t *testing.T) {
	var buf bytes.Buffer
	tr, _ := newTestTracer(t, &buf)
	req := record(recSpec{dir: bpf.DirIngress, seq: 1000, data: "GET /first HTTP/1.1\r\nHost: x\r\n\r\n"})
	req.Cookie = 99 // the listener's
	req.Rflags |= bpf.FlagListener
	tr.handle(req)
	if len(tr.conns) != 0 {
		t.Fatalf("a listener segment created connection state: %d", len(tr.conns))
	}
	tr.handle(record(recSpec{dir: bpf.DirEgress, seq: 5000, data: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", owner: true}))
	tr.flush()
	evs := decodeLines(t, &buf)
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	if q := argValue(t, evs[0], "http_request").(map[string]any); q["uri_path"] != "/first" {
		t.Errorf("http_request = %v, want the request seen on the listener", q)
	}
	if len(tr.orphans.m) != 0 {
		t.Errorf("%d orphan entries left after pairing", len(tr.orphans.m))
	}
}

// The kernel sends a connection's owner only when it changes (or once a
// minute), so a container that is removed and traced again by the same
// tracer keeps the owner its connections already had.
func TestOwnerSurvivesContainerTracedAgain(t *testing.T) {
	var buf bytes.Buffer
	tr, tg := newTestTracer(t, &buf)
	req := "GET /a HTTP/1.1\r\nHost: web\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	tr.handle(record(recSpec{dir: bpf.DirIngress, seq: 1000, data: req}))
	tr.handle(record(recSpec{dir: bpf.DirEgress, seq: 5000, data: resp, owner: true}))

	again := &Target{Info: tg.Info, sink: tg.sink}
	tr.targets[42] = again
	tr.handle(record(recSpec{dir: bpf.DirIngress, seq: 1000 + uint32(len(req)), data: req}))
	tr.handle(record(recSpec{dir: bpf.DirEgress, seq: 5000 + uint32(len(resp)), data: resp}))
	tr.flush()
	evs := decodeLines(t, &buf)
	if len(evs) != 2 || again.Events() != 1 {
		t.Fatalf("got %d events (%d for the target traced again), want 2 (1)", len(evs), again.Events())
	}
	for i, ev := range evs {
		if ev["processName"] != "nginx" || ev["hostProcessId"] != 100.0 {
			t.Errorf("event %d: processName %v, hostProcessId %v, want nginx, 100", i, ev["processName"], ev["hostProcessId"])
		}
	}
}

// A record that does not decode is skipped and counted; the warning names
// it as a bug, once per ten seconds, and the summary reports the count.
func TestMalformedRecordsAreSkippedCountedAndReportedOnce(t *testing.T) {
	var warnings []string
	tr := New(nil, Options{OnError: func(err error) { warnings = append(warnings, err.Error()) }})
	var rec bpf.Record
	for _, raw := range [][]byte{nil, make([]byte, 3)} {
		err := bpf.DecodeRecord(raw, &rec)
		if !errors.Is(err, bpf.ErrMalformedRecord) {
			t.Fatalf("DecodeRecord(%d bytes) = %v, want ErrMalformedRecord", len(raw), err)
		}
		tr.skipMalformed(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "boxtap bug") {
		t.Fatalf("warnings = %q, want one naming a boxtap bug", warnings)
	}
	s := tr.Summary()
	if s.Malformed != 2 || !strings.Contains(s.String(), "2 malformed records skipped") {
		t.Fatalf("summary %+v (%q), want 2 malformed records", s, s)
	}
}

// The fields computed from the owner once per connection (executable path,
// entity ids) follow the owner when it changes on the same connection.
func TestOwnerChangeUpdatesDerivedFields(t *testing.T) {
	var buf bytes.Buffer
	tr, _ := newTestTracer(t, &buf)
	req := "GET /a HTTP/1.1\r\nHost: web\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	self := uint32(os.Getpid())
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	seqIn, seqOut := uint32(1000), uint32(5000)
	for i, o := range []bpf.Owner{
		{Tid: 4194301, Tgid: 4194301, Ppid: 1, StartNs: 10, LeaderStartNs: 10, ParentStartNs: 1}, // no such process: no path
		{Tid: self, Tgid: self, Ppid: 1, StartNs: 20, LeaderStartNs: 20, ParentStartNs: 2},
	} {
		tr.handle(record(recSpec{dir: bpf.DirIngress, seq: seqIn, data: req}))
		out := record(recSpec{dir: bpf.DirEgress, seq: seqOut, data: resp})
		out.Rflags |= bpf.FlagOwner
		out.Owner = &o
		tr.handle(out)
		tr.flush()
		evs := decodeLines(t, &buf)
		if len(evs) != i+1 {
			t.Fatalf("%d events after exchange %d", len(evs), i+1)
		}
		ev := evs[i]
		wantExe := ""
		if i == 1 {
			wantExe = exe
		}
		if path := ev["executable"].(map[string]any)["path"]; path != wantExe {
			t.Errorf("exchange %d: executable path %q, want %q", i+1, path, wantExe)
		}
		for k, want := range map[string]uint32{
			"threadEntityId":  output.EntityID(o.Tid, o.StartNs),
			"processEntityId": output.EntityID(o.Tgid, o.LeaderStartNs),
			"parentEntityId":  output.EntityID(o.Ppid, o.ParentStartNs),
		} {
			if ev[k] != float64(want) {
				t.Errorf("exchange %d: %s = %v, want %d", i+1, k, ev[k], want)
			}
		}
		seqIn += uint32(len(req))
		seqOut += uint32(len(resp))
	}
}
