package h2stream

import (
	"encoding/binary"

	"golang.org/x/net/http2"

	"github.com/boxtap/boxtap/httpstream"
)

// Gaps. Bytes the capture missed (a full ring buffer, a reader that fell
// behind) are reported by Unknown. Inside a DATA payload they are only
// counted. Anywhere else the direction may have lost its frame boundaries
// and its HPACK state: before this, its connection gave no event from then
// on. It now rejoins as a connection joined midway does (midway.go): it
// waits for a captured segment that starts with a plausible frame header,
// then decodes with a shadow table, leaving empty and marking partial what
// depended on the bytes it missed, until the table is known again.

// hunt drops the direction's frame and header block state and waits for a
// segment that starts a frame. A gap in the client's bytes may have held
// requests: their responses are then partial, as for streams opened before
// a join. One in the server's may have held the rest of the responses begun
// before it (partial) or the heads of those not begun.
func (p *Parser) hunt(d *direction) {
	p.stats.Desyncs++
	if d.dir == p.client {
		p.joined = true
	} else {
		for _, st := range p.streams {
			st.partial = st.partial || st.hasResp // the rest of its response may be in the gap
			st.missed = st.missed || !st.hasResp  // not cut if it ends unanswered: its answer may be
		}
	}
	d.hunting = true
	d.preface, d.in, d.nhdr, d.left, d.padWait = 0, false, 0, 0, false
	d.payload, d.blk = d.payload[:0], d.blk[:0]
	d.inBlock, d.truncated, d.blockPartial = false, false, false
	d.fields, d.fieldBytes = d.fields[:0], 0
}

// resume starts decoding at a frame start found after a gap. The table is
// unknown from here: a shadow table takes over. The responses a server's
// gap cut are given now, partial: what ended them may have been missed.
func (p *Parser) resume(d *direction, emit func(*httpstream.Response)) {
	d.hunting, d.rejoined = false, true
	if d.shadow == nil {
		d.shadow = &shadowTable{max: maxTableSize, bound: maxTableSize}
	}
	if d.dir == p.client {
		return
	}
	p.settleWhere(func(id uint32) bool { return p.streams[id].hasResp }, emit)
}

// frameStart reports whether b, a segment captured after a gap, plausibly
// begins with a frame of direction d: a type it may send on a stream id
// that fits the type, a length within what its peer allows, and the same
// of the next frame when the segment holds its header. CONTINUATION never
// qualifies: the block it continues was missed.
func (p *Parser) frameStart(d *direction, b []byte) bool {
	if len(b) < frameHeaderLen {
		return false
	}
	for n := 0; n < 2 && len(b) >= frameHeaderLen; n++ {
		length := uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
		id := binary.BigEndian.Uint32(b[5:9])
		if id>>31 != 0 || length > max(d.maxFrame, defaultMaxFrame) || !p.fits(d, http2.FrameType(b[3]), id, length) {
			return false
		}
		b = b[min(len(b), frameHeaderLen+int(length)):]
	}
	return true
}

// fits checks a frame type's stream id and fixed length (RFC 9113 section 6).
func (p *Parser) fits(d *direction, t http2.FrameType, id, length uint32) bool {
	// Requests and their bodies go on odd streams; a server sends on the
	// even ones it promised as well.
	clientStream := p.roleUnknown || d.dir != p.client || id%2 == 1
	switch t {
	case http2.FrameData, http2.FrameHeaders:
		return id != 0 && clientStream
	case http2.FramePriority:
		return id != 0 && length == 5
	case http2.FrameRSTStream:
		return id != 0 && length == 4
	case http2.FrameSettings:
		return id == 0 && length%6 == 0
	case http2.FramePushPromise:
		return id != 0 && (p.roleUnknown || d.dir != p.client)
	case http2.FramePing:
		return id == 0 && length == 8
	case http2.FrameGoAway:
		return id == 0 && length >= 8
	case http2.FrameWindowUpdate:
		return length == 4
	}
	return false
}
