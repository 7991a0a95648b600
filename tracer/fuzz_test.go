package tracer

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
)

// Fragments the fuzzer strings together, so that most inputs reach the
// parser with plausible HTTP; raw bytes from the input are mixed in too.
var fuzzFragments = []string{
	"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
	"PROPFIND /dav HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
	"\r\nGET /crlf HTTP/1.1\r\n\r\n",
	"GE",
	"T /split HTTP/1.1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"HTTP/1.0 200 OK\r\n\r\nbody until close",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
	"\x16\x03\x01\x00\x05hello",
}

// fuzzRec is one record of a fuzzed sequence.
type fuzzRec struct {
	hdr   bpf.RecordHeader
	owner *bpf.Owner
	data  []byte
}

// Traced targets of the fuzzed tracer, and one cgroup that is not traced.
const (
	fuzzTargetA  = 42
	fuzzTargetB  = 44
	fuzzUntraced = 43
)

// decodeFuzzRecords turns fuzz input into records, 6 bytes of header per
// record: kind, cookie, cgroup, client port, sequence step, data choice
// (then, for raw data, a length and the bytes). Sequence numbers follow each
// stream, so most segments are in order and some overlap or leave holes.
func decodeFuzzRecords(b []byte) []fuzzRec {
	var out []fuzzRec
	next := map[[2]uint64]uint32{}
	for len(b) >= 6 && len(out) < 200 {
		kind, cookie, cg, port, step, pick := b[0], uint64(b[1]%4)+1, b[2]%3, b[3]%2, b[4], b[5]
		b = b[6:]
		var data []byte
		if int(pick) < len(fuzzFragments) {
			data = []byte(fuzzFragments[pick])
		} else if len(b) > 0 {
			n := min(int(b[0])%64, len(b)-1)
			data, b = bytes.Clone(b[1:1+n]), b[1+n:]
		}
		dir := kind & 1
		h := bpf.RecordHeader{Cookie: cookie, Dir: dir, Family: 4, Cpu: 1, TsTai: uint64(len(out)+1) * 1000}
		h.Ckey = [3]uint64{fuzzTargetA, fuzzTargetB, fuzzUntraced}[cg]
		// The container is 10.0.0.2:8080; clients are 10.0.0.1:40000+port.
		client, server := [4]uint8{10, 0, 0, 1}, [4]uint8{10, 0, 0, 2}
		cport := uint16(40000) + uint16(port)
		if dir == bpf.DirIngress {
			copy(h.Saddr[:], client[:])
			copy(h.Daddr[:], server[:])
			h.Sport, h.Dport = cport, 8080
		} else {
			copy(h.Saddr[:], server[:])
			copy(h.Daddr[:], client[:])
			h.Sport, h.Dport = 8080, cport
		}
		k := [2]uint64{cookie, uint64(dir)}
		seq := next[k] + uint32(int8(step)>>4) // mostly in order; sometimes back or ahead
		h.Seq = seq
		var owner *bpf.Owner
		switch kind >> 1 % 8 {
		case 1:
			h.Rflags |= bpf.FlagListener
			h.Dir, h.Cookie = bpf.DirIngress, 99 // the listener's cookie
		case 2:
			h.Rflags |= bpf.FlagFIN
		case 3:
			h.Rflags |= bpf.FlagRST
			data = nil
		case 4:
			h.Rflags |= bpf.FlagNotHTTP
			data = nil
		case 5:
			h.Rflags |= bpf.FlagGap
		case 6:
			h.Rflags |= bpf.FlagOwner
			owner = &bpf.Owner{Tid: uint32(step), Tgid: 1, Comm: [16]int8{'a', 'p', 'p'}}
		}
		h.SegLen, h.DataLen, h.PktLen = uint32(len(data)), uint16(len(data)), uint32(len(data)+52)
		next[k] = seq + uint32(len(data))
		out = append(out, fuzzRec{hdr: h, owner: owner, data: data})
	}
	return out
}

// runFuzzRecords feeds records to a fresh tracer with two targets and
// returns what each target's sink got.
func runFuzzRecords(t *testing.T, recs []fuzzRec, clk clock) [2]string {
	var bufs [2]bytes.Buffer
	tr := New(nil, Options{OnError: func(err error) { t.Errorf("tracer error: %v", err) }})
	tr.clock = clk
	for i, ckey := range []uint64{fuzzTargetA, fuzzTargetB} {
		tr.targets[ckey] = &Target{
			Info: container.Info{ID: strings.Repeat("ab", 32), Name: "web" + string(rune('a'+i)), Runtime: "docker"},
			sink: output.NewLineSink(&bufs[i], nil),
		}
	}
	for _, r := range recs {
		hdr := r.hdr
		rec := bpf.Record{RecordHeader: &hdr, Owner: r.owner, Data: bytes.Clone(r.data)}
		tr.handle(&rec)
		clear(rec.Data) // the ring buffer reuses the bytes once handle returns
	}
	tr.flush()
	return [2]string{bufs[0].String(), bufs[1].String()}
}

// FuzzRecordSequences drives record sequences through the tracer's handle
// path: listener segments (orphans), cookies reused after a reset or a
// not-HTTP verdict, two containers, records of an untraced cgroup. It checks:
//   - every line written is a net_packet_http_response event;
//   - records of an untraced cgroup change nothing;
//   - after a reset or a not-HTTP record, a cookie names a new connection:
//     renaming its later records to an unused cookie changes nothing.
func FuzzRecordSequences(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 5})                   // request in, response out
	f.Add([]byte{2, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 5})                   // request seen on the listener
	f.Add([]byte{0, 1, 0, 0, 0, 3, 8, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4}) // "GE", not HTTP, then cookie reuse
	f.Add([]byte{0, 1, 0, 0, 0, 2, 1, 1, 1, 0, 0, 6, 6, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs := decodeFuzzRecords(b)
		var clk clock
		clk.sync()
		got := runFuzzRecords(t, recs, clk)
		for i, out := range got {
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if line == "" {
					continue
				}
				var ev struct {
					EventName string `json:"eventName"`
				}
				if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.EventName != "net_packet_http_response" {
					t.Fatalf("target %d wrote %q (%v)", i, line, err)
				}
			}
		}

		var traced []fuzzRec
		for _, r := range recs {
			if r.hdr.Ckey != fuzzUntraced {
				traced = append(traced, r)
			}
		}
		if again := runFuzzRecords(t, traced, clk); again != got {
			t.Fatalf("records of an untraced cgroup changed the output:\nwith:    %q\nwithout: %q", got, again)
		}

		if renamed := renameAfterReset(traced); renamed != nil {
			if again := runFuzzRecords(t, renamed, clk); again != got {
				t.Fatalf("a cookie reused after a reset or not-HTTP record carried state over:\nreused:  %q\nrenamed: %q", got, again)
			}
		}
	})
}

// renameAfterReset gives the records of a cookie that follow its first RST
// or not-HTTP record (of a traced container) a cookie no record uses, or
// returns nil when there is no such record.
func renameAfterReset(recs []fuzzRec) []fuzzRec {
	for i, r := range recs {
		if r.hdr.Rflags&(bpf.FlagRST|bpf.FlagNotHTTP) == 0 || r.hdr.Rflags&bpf.FlagListener != 0 {
			continue
		}
		out := append([]fuzzRec(nil), recs...)
		for j := i + 1; j < len(out); j++ {
			if out[j].hdr.Cookie == r.hdr.Cookie && out[j].hdr.Rflags&bpf.FlagListener == 0 {
				out[j].hdr.Cookie = 1000
			}
		}
		return out
	}
	return nil
}
