package httpstream

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// src hands out fuzz bytes as choices; exhausted input reads as zeros.
type src struct {
	b []byte
	i int
}

func (s *src) byte() byte {
	if s.i >= len(s.b) {
		return 0
	}
	c := s.b[s.i]
	s.i++
	return c
}

func (s *src) n(max int) int { return int(s.byte()) % max }

// raw returns up to max arbitrary bytes, sometimes with a fake response inside.
func (s *src) raw(max int) []byte {
	n := s.n(max + 1)
	out := make([]byte, 0, n+40)
	for range n {
		out = append(out, s.byte())
	}
	if s.n(4) == 0 {
		out = append(out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"...)
	}
	return out
}

// text returns up to max printable bytes (no CR/LF) from the input.
func (s *src) text(max int) string {
	n := 1 + s.n(max)
	b := make([]byte, n)
	for i := range b {
		c := s.byte()%94 + 33
		b[i] = c
	}
	return string(b)
}

func (s *src) token(max int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	n := 1 + s.n(max)
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[int(s.byte())%len(chars)]
	}
	return string(b)
}

// span is a byte range [a, b) of one direction's stream whose content the framer
// never needs (body bytes of known extent).
type span struct{ a, b int }

// wantEvent is what the generator expects for one response head.
type wantEvent struct {
	Status string
	Code   int
	CL     int64
	Method string // "" when no request is paired
	URI    string
	Start  int // offset of the status line in the response stream
	reqEnd int // end of its request in the request stream
}

type exchangeScript struct {
	reqs, resps     []byte
	reqSkip, rspSkp []span
	want            []wantEvent
	closeDelimited  bool
}

var reasons = map[int]string{100: "Continue", 103: "Early Hints", 200: "OK", 201: "Created", 204: "No Content",
	304: "Not Modified", 404: "Not Found", 500: "Internal Server Error"}

// genExchange builds a well-formed keep-alive exchange driven by fuzz bytes.
func genExchange(in []byte) exchangeScript {
	s := &src{b: in}
	var sc exchangeScript
	n := 1 + s.n(8)
	for i := range n {
		last := i == n-1
		// Request.
		method := [...]string{"GET", "HEAD", "POST", "PUT", "DELETE"}[s.n(5)]
		uri := "/" + s.text(20)
		var rq bytes.Buffer
		fmt.Fprintf(&rq, "%s %s HTTP/1.1\r\n", method, uri)
		for range s.n(4) {
			fmt.Fprintf(&rq, "%s: %s\r\n", s.token(12), s.text(30))
		}
		switch method {
		case "POST":
			body := s.raw(60)
			fmt.Fprintf(&rq, "Content-Length: %d\r\n\r\n", len(body))
			sc.reqSkip = append(sc.reqSkip, span{len(sc.reqs) + rq.Len(), len(sc.reqs) + rq.Len() + len(body)})
			rq.Write(body)
		case "PUT":
			rq.WriteString("Transfer-Encoding: chunked\r\n\r\n")
			sc.reqSkip = appendChunked(s, &rq, len(sc.reqs), sc.reqSkip)
		default:
			rq.WriteString("\r\n")
		}
		sc.reqs = append(sc.reqs, rq.Bytes()...)
		reqEnd := len(sc.reqs)

		// Optional 1xx, then the final response.
		addHead := func(code int, extra string) {
			sc.want = append(sc.want, wantEvent{Status: fmt.Sprintf("%d %s", code, reasons[code]), Code: code, CL: -1, Method: method, URI: uri, Start: len(sc.resps), reqEnd: reqEnd})
			sc.resps = fmt.Appendf(sc.resps, "HTTP/1.1 %d %s\r\n%s", code, reasons[code], extra)
		}
		if s.n(5) == 0 {
			addHead([...]int{100, 103}[s.n(2)], "\r\n")
		}
		code := [...]int{200, 201, 204, 304, 404, 500}[s.n(6)]
		var hdr strings.Builder
		for range s.n(4) {
			fmt.Fprintf(&hdr, "%s: %s\r\n", s.token(12), s.text(30))
		}
		body := s.raw(80)
		noBody := method == "HEAD" || code == 204 || code == 304
		framing := s.n(3) // 0 Content-Length, 1 chunked, 2 close-delimited (last only)
		if framing == 2 && !last {
			framing = 0
		}
		switch {
		case framing == 1 && !noBody:
			hdr.WriteString("Transfer-Encoding: chunked\r\n\r\n")
			addHead(code, hdr.String())
			var b bytes.Buffer
			sc.rspSkp = appendChunked(s, &b, len(sc.resps), sc.rspSkp)
			sc.resps = append(sc.resps, b.Bytes()...)
		case framing == 2 && !noBody:
			hdr.WriteString("\r\n")
			addHead(code, hdr.String())
			sc.rspSkp = append(sc.rspSkp, span{len(sc.resps), len(sc.resps) + len(body)})
			sc.resps = append(sc.resps, body...)
			sc.closeDelimited = true
		default:
			fmt.Fprintf(&hdr, "Content-Length: %d\r\n\r\n", len(body))
			addHead(code, hdr.String())
			sc.want[len(sc.want)-1].CL = int64(len(body))
			if !noBody {
				sc.rspSkp = append(sc.rspSkp, span{len(sc.resps), len(sc.resps) + len(body)})
				sc.resps = append(sc.resps, body...)
			}
		}
		if sc.closeDelimited {
			break
		}
	}
	return sc
}

// appendChunked writes a chunked body with extensions and trailers, recording the
// chunk data spans (offset base is the stream length before b).
func appendChunked(s *src, b *bytes.Buffer, base int, skips []span) []span {
	for range s.n(4) {
		data := s.raw(40)
		if len(data) == 0 {
			continue
		}
		fmt.Fprintf(b, "%x", len(data))
		if s.n(3) == 0 {
			b.WriteString(";ext=" + s.token(5))
		}
		b.WriteString("\r\n")
		skips = append(skips, span{base + b.Len(), base + b.Len() + len(data)})
		b.Write(data)
		b.WriteString("\r\n")
	}
	b.WriteString("0\r\n")
	for range s.n(3) {
		fmt.Fprintf(b, "%s: %s\r\n", s.token(8), s.text(20))
	}
	b.WriteString("\r\n")
	return skips
}

// wireSeg is one segment of a direction's stream: [off, off+n) with data captured
// for [off, off+len(data)).
type wireSeg struct {
	dir  Direction
	off  int
	n    int
	data []byte
	fin  bool
}

// segmentize cuts a stream into random segments; with mess it also reorders nearby
// segments, duplicates some, adds partial overlaps and leaves skippable tails
// uncaptured.
func segmentize(rng *rand.Rand, dir Direction, stream []byte, skips []span, fin, mess bool) []wireSeg {
	var segs []wireSeg
	for off := 0; off < len(stream); {
		n := 1 + rng.IntN(64)
		if rng.IntN(8) == 0 {
			n = 1 + rng.IntN(3000)
		}
		if off+n > len(stream) {
			n = len(stream) - off
		}
		seg := wireSeg{dir: dir, off: off, n: n, data: stream[off : off+n]}
		if mess && rng.IntN(3) == 0 {
			// Leave a tail uncaptured when it lies inside a skippable span.
			end := off + n
			for _, sp := range skips {
				if sp.a < end && end <= sp.b {
					cut := max(off, sp.a)
					cut += rng.IntN(end - cut + 1)
					seg.data = stream[off:cut]
					break
				}
			}
		}
		segs = append(segs, seg)
		off += n
	}
	if fin {
		segs = append(segs, wireSeg{dir: dir, off: len(stream), fin: true})
	}
	if !mess {
		return segs
	}
	var out []wireSeg
	for i, sg := range segs {
		out = append(out, sg)
		switch rng.IntN(10) {
		case 0: // plain retransmit
			out = append(out, sg)
		case 1: // an earlier segment again
			out = append(out, segs[rng.IntN(i+1)])
		case 2: // partial overlap covering the previous and this segment
			if i > 0 && segs[i-1].fin == false && !sg.fin {
				p := segs[i-1]
				a := p.off + rng.IntN(p.n+1)
				b := sg.off + rng.IntN(sg.n+1)
				out = append(out, wireSeg{dir: dir, off: a, n: b - a, data: stream[a:b]})
			}
		}
	}
	// Reorder nearby segments (out-of-order arrival), never moving the first one.
	for i := 1; i+1 < len(out); i++ {
		if rng.IntN(6) == 0 {
			out[i], out[i+1] = out[i+1], out[i]
		}
	}
	return out
}

type fedEvent struct {
	recorded
	start int // offset range of the segment that carried the start line
	end   int
}

func feedAll(t *testing.T, lim Limits, isn [2]uint32, segs []wireSeg) ([]fedEvent, Stats) {
	var stats Stats
	c := NewConn(lim, &stats)
	var evs []fedEvent
	for _, sg := range segs {
		seg := Segment{
			Dir: sg.dir, Seq: isn[sg.dir] + uint32(sg.off), Len: uint32(sg.n),
			Data: append([]byte(nil), sg.data...), FIN: sg.fin,
			Info: PacketInfo{TimestampNs: uint64(sg.off) + 1, PacketLen: uint32(sg.n)},
		}
		c.Feed(&seg, func(r *Response) {
			evs = append(evs, fedEvent{recorded: record(r), start: int(r.Info.TimestampNs) - 1, end: int(r.Info.TimestampNs) - 1 + int(r.Info.PacketLen)})
		})
		clear(seg.Data)
	}
	if stats.Responses != uint64(len(evs)) {
		t.Fatalf("Stats.Responses = %d, events = %d", stats.Responses, len(evs))
	}
	return evs, stats
}

// comparable strips what legitimately depends on segmentation (Info, latency).
func comparable(evs []fedEvent) []recorded {
	out := make([]recorded, len(evs))
	for i, e := range evs {
		r := e.recorded
		r.Info, r.Latency, r.Req.Info = PacketInfo{}, 0, PacketInfo{}
		out[i] = r
	}
	return out
}

// interleave merges the two directions in a random order that a real
// connection allows: a response segment comes only after every request
// segment that starts before the end of the request it answers (a server
// answers what it received). Later requests may follow earlier responses.
func interleave(rng *rand.Rand, reqs, resps []wireSeg, want []wantEvent) []wireSeg {
	out := make([]wireSeg, 0, len(reqs)+len(resps))
	qi := 0
	for _, rs := range resps {
		// The request bytes this segment's response heads need.
		need := 0
		for _, w := range want {
			if w.Start < rs.off+max(rs.n, 1) {
				need = max(need, w.reqEnd)
			}
		}
		last := qi - 1 // last request segment that must come first
		for i := qi; i < len(reqs); i++ {
			if reqs[i].off < need {
				last = i
			}
		}
		for qi <= last || qi < len(reqs) && rng.IntN(3) == 0 {
			out = append(out, reqs[qi])
			qi++
		}
		out = append(out, rs)
	}
	return append(out, reqs[qi:]...)
}

func FuzzStream(f *testing.F) {
	f.Add([]byte{}, uint64(1), uint32(0))
	f.Add([]byte("\x03\x01\x02abc\x04\x05\x06\x07\x00\x01\x02\x03\x04\x05\x06\x07"), uint64(7), uint32(0xFFFFFF00))
	f.Add([]byte("\x07\x02\x01\x05POST body with HTTP/1.1 200 OK\x02\x01\x00\x03"), uint64(42), uint32(0xFFFFFFFF))
	f.Add(bytes.Repeat([]byte{0x11, 0x22, 0x33, 0x44, 0x55}, 60), uint64(99), uint32(12345))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64, isnBase uint32) {
		sc := genExchange(in)
		isn := [2]uint32{isnBase, isnBase ^ 0x80000001}
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

		runA := interleave(rng, segmentize(rng, Egress, sc.reqs, sc.reqSkip, false, false),
			segmentize(rng, Ingress, sc.resps, sc.rspSkp, sc.closeDelimited, false), sc.want)
		runB := interleave(rng, segmentize(rng, Egress, sc.reqs, sc.reqSkip, false, true),
			segmentize(rng, Ingress, sc.resps, sc.rspSkp, sc.closeDelimited, true), sc.want)
		evA, stA := feedAll(t, Limits{}, isn, runA)
		evB, stB := feedAll(t, Limits{}, isn, runB)

		if stA.Desyncs != 0 || stB.Desyncs != 0 || stA.GapBytes != 0 || stB.GapBytes != 0 {
			t.Fatalf("well-formed exchange lost sync: %+v / %+v", stA, stB)
		}
		if !reflect.DeepEqual(comparable(evA), comparable(evB)) {
			t.Fatalf("segmentations disagree:\nA %+v\nB %+v", comparable(evA), comparable(evB))
		}
		if got, limit := len(evA), bytes.Count(sc.resps, []byte("HTTP/1.")); got > limit {
			t.Fatalf("%d events but only %d HTTP/1. occurrences", got, limit)
		}
		if len(evA) != len(sc.want) {
			t.Fatalf("got %d events, want %d\n got %+v\nwant %+v", len(evA), len(sc.want), comparable(evA), sc.want)
		}
		for i, w := range sc.want {
			for _, e := range []fedEvent{evA[i], evB[i]} {
				if e.Code != w.Code || e.Status != w.Status || e.CL != w.CL || !e.HasReq || e.Req.Method != w.Method || e.Req.URI != w.URI {
					t.Fatalf("event %d = %+v, want %+v", i, e.recorded, w)
				}
				if w.Start < e.start || w.Start >= e.end {
					t.Fatalf("event %d: Info from segment [%d,%d) which does not hold the status line at %d", i, e.start, e.end, w.Start)
				}
			}
		}
		// Feeding every segment twice, plus a random earlier one again, changes nothing.
		var dup []wireSeg
		for i, sg := range runA {
			dup = append(dup, sg, sg, runA[rng.IntN(i+1)])
		}
		evD, _ := feedAll(t, Limits{}, isn, dup)
		if !reflect.DeepEqual(evA, evD) {
			t.Fatalf("duplicates changed the events:\n%+v\n%+v", evA, evD)
		}
	})
}

// arbitrarySegments turns fuzz bytes into segments of both directions.
func arbitrarySegments(in []byte) []Segment {
	s := &src{b: in}
	var segs []Segment
	var next [2]uint32
	for s.i < len(s.b) && len(segs) < 200 {
		op := s.byte()
		dir := Direction(op & 1)
		n := int(s.byte())
		if n > len(s.b)-s.i {
			n = len(s.b) - s.i
		}
		data := s.b[s.i : s.i+n]
		s.i += n
		seg := Segment{Dir: dir, Seq: next[dir], Len: uint32(n), Data: data, Info: PacketInfo{TimestampNs: uint64(len(segs))}}
		switch op >> 5 {
		case 1:
			seg.Seq -= uint32(s.byte()) // overlap / retransmit
		case 2:
			seg.Seq += uint32(s.byte()) // hole
		case 3:
			seg.Len += uint32(s.byte()) * 16 // uncaptured tail
		case 4:
			seg.HasSkip, seg.SkipTo = true, seg.Seq+seg.Len+uint32(s.byte())*64
		case 5:
			seg.FIN = true
		case 6:
			seg.Len = 0 // inconsistent: Len < len(Data)
		case 7:
			// a response the kernel left out, maybe with a body to come
			// (the kernel sends no Data with it; the Conn must not need any)
			seg.Filtered, seg.FilteredStatus = true, 100+int(s.byte())*2
			seg.Len += uint32(s.byte())
			seg.FilteredEnd = seg.Seq + seg.Len + uint32(s.byte())*32
		}
		if op&0x1e == 0x1e {
			seg.RST = true
		}
		if end := seg.Seq + seg.Len; seqLT(next[dir], end) {
			next[dir] = end
		}
		if seg.HasSkip && seqLT(next[dir], seg.SkipTo) {
			next[dir] = seg.SkipTo
		}
		segs = append(segs, seg)
	}
	return segs
}

func FuzzArbitrary(f *testing.F) {
	f.Add([]byte("\x00\x27GET / HTTP/1.1\r\nHost: a\r\n\r\n\x01\x26HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("\x01\x14HTTP/1.1 200 OK\r\nA: b\x21\x05\x01\x20\x02\r\n\x41\x03\x0a\x0d\x0a"))
	f.Add([]byte("\x61\x20HTTP/1.1 200 OK\r\nContent-Length:\x81\x05 100\r\n\x01\x02\r\n"))
	f.Add([]byte("\x01\x2bHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\x01\x0a5\r\nabcde\r\n\x01\x05" + "0\r\n\r\n"))
	f.Add([]byte("\x00\x4eGET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n" +
		"\xe1\x00\x32\x26\x00\xe1\x00\x32\x10\x41\x01\x26HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		segs := arbitrarySegments(in)
		lim := Limits{MaxHeaderBytes: 128, MaxPendingRequests: 4, MaxOutOfOrderBytes: 1024}
		run := func(segs []Segment) ([]recorded, Stats) {
			var stats Stats
			c := NewConn(lim, &stats)
			var evs []recorded
			for i := range segs {
				seg := segs[i]
				seg.Data = append([]byte(nil), seg.Data...)
				c.Feed(&seg, func(r *Response) {
					if r.StatusCode < 100 || r.StatusCode > 599 || !strings.HasPrefix(r.Status, r.Proto[:0]+fmt.Sprint(r.StatusCode)) {
						t.Fatalf("bad status %d %q", r.StatusCode, r.Status)
					}
					if r.Proto != proto10 && r.Proto != proto11 {
						t.Fatalf("bad proto %q", r.Proto)
					}
					if r.HeaderBytes < 13 || !r.Truncated && r.HeaderBytes > lim.MaxHeaderBytes {
						t.Fatalf("HeaderBytes %d truncated=%v", r.HeaderBytes, r.Truncated)
					}
					for _, h := range r.Headers {
						if canonicalMIME(h.Name) != h.Name {
							t.Fatalf("header name %q not canonical", h.Name)
						}
					}
					evs = append(evs, record(r))
				})
			}
			c.Done()
			c.Close()
			return evs, stats
		}
		evs, st := run(segs)
		var captured uint64
		for _, s := range segs {
			captured += uint64(len(s.Data))
		}
		if st.Responses != uint64(len(evs)) || st.Truncated > st.Requests+st.Responses || st.DuplicateBytes > captured {
			t.Fatalf("inconsistent stats %+v (events %d, captured %d)", st, len(evs), captured)
		}
		var httpCount int
		for _, s := range segs {
			httpCount += bytes.Count(s.Data, []byte("HTTP/1."))
		}
		if len(evs) > httpCount {
			t.Fatalf("%d events from %d HTTP/1. occurrences", len(evs), httpCount)
		}
		// Every segment twice, plus an earlier one again: same events.
		var dup []Segment
		for i := range segs {
			dup = append(dup, segs[i], segs[i], segs[i/2])
		}
		evD, _ := run(dup)
		if !reflect.DeepEqual(evs, evD) {
			t.Fatalf("duplicates changed events:\n%+v\n%+v", evs, evD)
		}
	})
}

// TestInterleaveMixesDirections: FuzzStream's interleave puts responses
// between requests (not all requests first), yet never a response head
// before the request it answers.
func TestInterleaveMixesDirections(t *testing.T) {
	sc := genExchange(bytes.Repeat([]byte{0x03, 0x00, 0x05, 0x11, 0x02, 0x00, 0x01}, 40))
	if len(sc.want) < 2 {
		t.Fatalf("the generator made %d exchanges, want at least 2", len(sc.want))
	}
	mixed := 0
	const runs = 200
	for seed := range uint64(runs) {
		rng := rand.New(rand.NewPCG(seed, 1))
		reqs := segmentize(rng, Egress, sc.reqs, sc.reqSkip, false, false)
		resps := segmentize(rng, Ingress, sc.resps, sc.rspSkp, sc.closeDelimited, false)
		run := interleave(rng, reqs, resps, sc.want)
		if len(run) != len(reqs)+len(resps) {
			t.Fatalf("interleave returned %d segments, want %d", len(run), len(reqs)+len(resps))
		}
		sentReq, lastReq, firstResp := 0, -1, -1
		for i, sg := range run {
			if sg.dir == Egress {
				sentReq = max(sentReq, sg.off+sg.n)
				lastReq = i
				continue
			}
			if firstResp < 0 {
				firstResp = i
			}
			for _, w := range sc.want {
				if w.Start < sg.off+max(sg.n, 1) && sentReq < w.reqEnd {
					t.Fatalf("seed %d: response bytes at %d before its request (sent %d of %d)", seed, sg.off, sentReq, w.reqEnd)
				}
			}
		}
		if firstResp < lastReq {
			mixed++
		}
	}
	if mixed == 0 || mixed == runs {
		t.Fatalf("a response came before the last request segment in %d of %d runs, want some but not all", mixed, runs)
	}
}
