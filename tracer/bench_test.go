package tracer

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
)

// benchRecord builds one ring-buffer record of a keep-alive connection
// between wrk (127.0.0.1:40000) and nginx (127.0.0.1:8080) in container
// cgroup 7, as the kernel side would send it: without an owner (the kernel
// sends it only when it changed).
func benchRecord(dir uint8, seq uint32, data []byte) bpf.Record {
	h := &bpf.RecordHeader{Cookie: 99, Ckey: 7, Seq: seq, SegLen: uint32(len(data)), DataLen: uint16(len(data)),
		Dir: dir, PktLen: uint32(len(data) + 52), Family: 4, Cpu: 1}
	h.Saddr = [16]uint8{127, 0, 0, 1}
	h.Daddr = [16]uint8{127, 0, 0, 1}
	h.Sport, h.Dport = 40000, 8080
	if dir == bpf.DirEgress {
		h.Sport, h.Dport = 8080, 40000
	}
	for i, c := range "lo" {
		h.Iface[i] = int8(c)
	}
	return bpf.Record{RecordHeader: h, Data: data}
}

// benchOwner is nginx's worker, as the first response record carries it.
func benchOwner() *bpf.Owner {
	o := &bpf.Owner{Tid: 2001, Tgid: 2001, Ppid: 2000, NsTid: 8, NsTgid: 8, NsPpid: 1, Uid: 65534,
		Mntns: 4026532253, Pidns: 4026532256, CgroupId: 7, StartNs: 1e9, LeaderStartNs: 1e9, ParentStartNs: 5e8}
	for i, c := range "nginx" {
		o.Comm[i] = int8(c)
	}
	return o
}

// BenchmarkHandleSmallResponses is the user-space hot path of `boxtap
// trace` against the bench's nginx: one op is the request record and the
// response record of one keep-alive exchange, through handle (connection
// lookup, reassembly, HTTP framing, pairing) and emit (event assembly,
// JSON encoding into a LineSink). The sink writes to io.Discard, so the
// write syscall is not included.
func BenchmarkHandleSmallResponses(b *testing.B) {
	req := []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
	body := "hello from boxtap bench\n"
	resp := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 17:05:39 GMT\r\n"+
		"Content-Type: text/plain\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n%s", len(body), body))
	tr := New(nil, Options{OnError: func(err error) { b.Fatalf("tracer error: %v", err) }})
	tg := &Target{
		Info: container.Info{ID: strings.Repeat("d2", 32), Name: "nginx", Image: "boxtap-bench-nginx:1", Runtime: "docker", Hostname: "vm"},
		sink: output.NewLineSink(io.Discard, nil),
	}
	tr.targets[7] = tg
	in := benchRecord(bpf.DirIngress, 1000, req)
	out := benchRecord(bpf.DirEgress, 5000, resp)
	out.Rflags |= bpf.FlagOwner
	out.Owner = benchOwner()
	b.ReportAllocs()
	for b.Loop() {
		in.TsTai += 1000
		tr.handle(&in)
		in.Seq += uint32(len(req))
		out.TsTai += 1000
		tr.handle(&out)
		out.Seq += uint32(len(resp))
		out.Rflags &^= bpf.FlagOwner
		out.Owner = nil
	}
	b.StopTimer()
	if got := tg.Events(); got != uint64(b.N) {
		b.Fatalf("%d events for %d exchanges", got, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
