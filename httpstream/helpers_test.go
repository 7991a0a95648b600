package httpstream

import (
	"fmt"
	"net/textproto"
	"strings"
)

// cont as a step offset means "right after the highest byte fed so far in this direction".
const cont = ^uint32(0)

// step is one segment of a scripted exchange. off is relative to the direction's ISN.
type step struct {
	dir         Direction
	off         uint32
	data        string
	uncaptured  uint32 // Len - len(data)
	skipTo      uint32 // offset; used when hasSkip
	hasSkip     bool
	fin, rst    bool
	filtered    bool   // a response the kernel left out (Segment.Filtered)
	status      int    // its status code
	filteredEnd uint32 // offset of its end
}

// recorded is a comparable deep copy of a Response: the Response's strings alias
// the Conn's buffers, so every string is cloned.
type recorded struct {
	Dir           Direction
	Proto, Status string
	Code          int
	Headers       []HeaderField
	CL            int64
	HeaderBytes   int
	Truncated     bool
	Info          PacketInfo
	HasReq        bool
	Req           Request
	Latency       int64
}

func record(r *Response) recorded {
	rec := recorded{
		Dir: r.Dir, Proto: strings.Clone(r.Proto), Status: strings.Clone(r.Status), Code: r.StatusCode,
		Headers: cloneHeaders(r.Headers), CL: r.ContentLength,
		HeaderBytes: r.HeaderBytes, Truncated: r.Truncated, Info: r.Info, Latency: r.LatencyNs,
	}
	if q := r.Request; q != nil {
		rec.HasReq = true
		rec.Req = *q
		rec.Req.Method, rec.Req.URI = strings.Clone(q.Method), strings.Clone(q.URI)
		rec.Req.Proto, rec.Req.Host = strings.Clone(q.Proto), strings.Clone(q.Host)
		rec.Req.Headers = cloneHeaders(q.Headers)
	}
	return rec
}

func cloneHeaders(hs []HeaderField) []HeaderField {
	if len(hs) == 0 {
		return nil
	}
	out := make([]HeaderField, len(hs))
	for i, h := range hs {
		out[i] = HeaderField{Name: strings.Clone(h.Name), Value: strings.Clone(h.Value)}
	}
	return out
}

// summary renders an event compactly for table expectations.
func (r recorded) summary() string {
	req := "-"
	if r.HasReq {
		req = r.Req.Method + " " + r.Req.URI
	}
	tr := ""
	if r.Truncated {
		tr = " truncated"
	}
	return fmt.Sprintf("%s %s %q cl=%d%s <- %s", r.Dir, r.Proto, r.Status, r.CL, tr, req)
}

func (r recorded) header(name string) []string {
	var out []string
	for _, f := range r.Headers {
		if f.Name == name {
			out = append(out, f.Value)
		}
	}
	return out
}

type runner struct {
	conn   *Conn
	stats  Stats
	isn    [2]uint32
	events []recorded
	n      int
	end    [2]uint32 // highest offset fed per direction
}

func newRunner(lim Limits, isnEgress, isnIngress uint32) *runner {
	r := &runner{isn: [2]uint32{isnEgress, isnIngress}}
	r.conn = NewConn(lim, &r.stats)
	return r
}

func (r *runner) emit(resp *Response) { r.events = append(r.events, record(resp)) }

func (r *runner) feed(st step) {
	r.n++
	if st.off == cont {
		st.off = r.end[st.dir]
	}
	if e := st.off + uint32(len(st.data)) + st.uncaptured; e > r.end[st.dir] {
		r.end[st.dir] = e
	}
	if st.hasSkip && st.skipTo > r.end[st.dir] {
		r.end[st.dir] = st.skipTo
	}
	seg := Segment{
		Dir:            st.dir,
		Seq:            r.isn[st.dir] + st.off,
		Len:            uint32(len(st.data)) + st.uncaptured,
		Data:           []byte(st.data),
		FIN:            st.fin,
		RST:            st.rst,
		Filtered:       st.filtered,
		FilteredStatus: st.status,
		FilteredEnd:    r.isn[st.dir] + st.filteredEnd,
		Info:           PacketInfo{TimestampNs: uint64(r.n) * 1000, PacketLen: uint32(len(st.data)) + 52, Ifindex: 1},
	}
	if st.hasSkip {
		seg.HasSkip, seg.SkipTo = true, r.isn[st.dir]+st.skipTo
	}
	r.conn.Feed(&seg, r.emit)
	// The caller's buffer is only valid during Feed: scribble over it.
	for i := range seg.Data {
		seg.Data[i] = 'X'
	}
}

func (r *runner) summaries() []string {
	out := make([]string, len(r.events))
	for i, e := range r.events {
		out[i] = e.summary()
	}
	return out
}

// split cuts s into consecutive steps of dir starting at off, at the given sizes
// (the last piece takes the rest).
func split(dir Direction, off uint32, s string, sizes ...int) []step {
	var out []step
	for _, n := range sizes {
		if n > len(s) {
			n = len(s)
		}
		out = append(out, step{dir: dir, off: off, data: s[:n]})
		off += uint32(n)
		s = s[n:]
	}
	if len(s) > 0 {
		out = append(out, step{dir: dir, off: off, data: s})
	}
	return out
}

// seq lays out pieces of one direction back to back after what was fed before.
func seq(dir Direction, pieces ...string) []step {
	var out []step
	for _, p := range pieces {
		out = append(out, step{dir: dir, off: cont, data: p})
	}
	return out
}

// at is one segment of dir at an explicit offset.
func at(dir Direction, off int, data string) step {
	return step{dir: dir, off: uint32(off), data: data}
}

func cat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func crlf(lines ...string) string { return strings.Join(lines, "\r\n") }

func resp200(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

const getA = "GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"
const getB = "GET /b HTTP/1.1\r\nHost: example.com\r\n\r\n"

func canonicalMIME(s string) string { return textproto.CanonicalMIMEHeaderKey(s) }
