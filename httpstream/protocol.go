package httpstream

// Protocol is a parser that takes over a connection from the HTTP/1 framer once
// the connection switches protocols (HTTP/2). The Conn keeps doing reassembly
// and hands it each direction's bytes in order; emit has the same contract as
// for Conn.Feed. A Protocol is not safe for concurrent use.
type Protocol interface {
	// Consume takes in-order captured bytes of one direction.
	Consume(dir Direction, data []byte, info PacketInfo, emit func(*Response))
	// Unknown reports n in-order bytes of dir that were not captured.
	Unknown(dir Direction, n uint64)
	// Finish reports that dir ended (FIN); emit receives what the end completes.
	Finish(dir Direction, emit func(*Response))
	// Footprint is the parser's buffered memory in bytes.
	Footprint() int
}

// Upgrade describes how a connection switched to HTTP/2.
type Upgrade struct {
	// Client is the direction of the client's bytes (the one sending requests).
	Client Direction
	// Request, for the h2c upgrade route, is the HTTP/1.1 request that asked for
	// it: HTTP/2 stream 1 answers it. Only valid during Start.
	Request *Request
}

// Starter is implemented by a Protocol that must know how the switch happened
// before its first bytes.
type Starter interface {
	Start(u Upgrade)
}

// h2Preface is the HTTP/2 client connection preface (RFC 9113 section 3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// h2Start reports whether the very first bytes of a direction start HTTP/2:
// the client preface (at least "PRI" of it), or a server's first frame, a
// SETTINGS frame on stream 0 without ACK (the server may send it before the
// client's preface is seen). client is the direction that sent the preface.
func h2Start(data []byte) (isPreface, ok bool) {
	n := min(len(data), len(h2Preface))
	if n >= 3 && string(data[:n]) == h2Preface[:n] {
		return true, true
	}
	if len(data) >= 9 && data[3] == 0x4 && data[4]&1 == 0 &&
		data[5]|data[6]|data[7]|data[8] == 0 && (int(data[0])<<16|int(data[1])<<8|int(data[2]))%6 == 0 {
		return false, true
	}
	return false, false
}

// h2Detect looks at a direction's first bytes. When they start HTTP/2 it
// hands the connection over; when they are too few to tell (a prefix of the
// preface shorter than "PRI", or of a SETTINGS frame header) it holds them
// until the next bytes, so that the decision never depends on segmentation.
// It returns the bytes to go on with, the held ones first (nil: held).
func (c *Conn) h2Detect(s *stream, data []byte) []byte {
	if held := c.h2hold[s.dir]; len(held) > 0 {
		data = append(held, data...) // only at a connection's start
		c.h2hold[s.dir] = nil
		s.atStart = true // the framer sees the held bytes as the first ones
	}
	if preface, ok := h2Start(data); ok {
		client := s.dir
		if !preface {
			client ^= 1
		}
		if c.switchToH2(Upgrade{Client: client}) && !preface {
			c.h2expect = client + 1
		}
		return data
	}
	if h2Undecided(data) {
		c.h2hold[s.dir] = append([]byte(nil), data...)
		return nil
	}
	if c.lim.NewHTTP2Midway != nil && H2FrameChain(data) {
		// Frames, but no start: a connection that opened before tracing.
		c.proto = c.lim.NewHTTP2Midway(c.stats)
		c.h2wait[s.dir^1] = true
	}
	return data
}

// h2Rejoin handles the first bytes of the client direction of a connection
// taken for HTTP/2 from a server's SETTINGS frame: the client preface is
// expected. When they are frames instead, the SETTINGS was not the
// connection's first (a connection joined midway, whose first segment
// seen was a SETTINGS frame): the midway parser takes over, and the
// SETTINGS direction waits for its next segment that starts a frame.
func (c *Conn) h2Rejoin(s *stream, data []byte, segStart bool) {
	if Direction(c.h2expect-1) != s.dir {
		return
	}
	c.h2expect = 0
	if preface, _ := h2Start(data); preface || !s.atStart || !segStart || c.lim.NewHTTP2Midway == nil || !H2FrameChain(data) {
		return
	}
	c.proto = c.lim.NewHTTP2Midway(c.stats)
	c.h2wait[s.dir^1] = true
}

// h2Synced reports whether a direction of a connection joined midway can be
// handed to the parser from data on: data starts a segment, and the segment
// starts a chain of frames. Until then the direction's bytes are dropped,
// never parsed from inside a frame.
func (c *Conn) h2Synced(s *stream, data []byte, segStart bool) bool {
	if !segStart || !H2FrameChain(data) {
		return false
	}
	c.h2wait[s.dir] = false
	return true
}

// H2 frame header rules, as the kernel checks them (bpf/include/classify_h2.h).
const (
	h2FrameHeader = 9
	h2MaxFrame    = 16384 // SETTINGS_MAX_FRAME_SIZE's initial value
	h2Chain       = 4     // frame headers checked in one segment
)

// H2FrameChain reports whether a segment starts a chain of plausible HTTP/2
// frame headers, by the rules the kernel takes a connection joined midway
// for HTTP/2 with (bpf/include/classify_h2.h): known type, defined flags,
// reserved bit clear, stream id and length allowed by the type, at most 16
// KiB; the chain ends at the segment's end, or H2_CHAIN headers were
// plausible, or a DATA, HEADERS or CONTINUATION frame runs past the end.
func H2FrameChain(seg []byte) bool {
	pos := 0
	for i := range h2Chain {
		if pos+h2FrameHeader > len(seg) {
			return i > 0
		}
		h := seg[pos : pos+h2FrameHeader]
		if !h2HeaderOK(h) {
			return false
		}
		pos += h2FrameHeader + (int(h[0])<<16 | int(h[1])<<8 | int(h[2]))
		switch {
		case pos == len(seg):
			return true
		case pos > len(seg):
			return h[3] == 0x0 || h[3] == 0x1 || h[3] == 0x9
		}
	}
	return true
}

// h2HeaderOK checks one 9-byte frame header (RFC 9113 section 6).
func h2HeaderOK(h []byte) bool {
	typ, flags := h[3], h[4]
	n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	id := uint32(h[5]&0x7f)<<24 | uint32(h[6])<<16 | uint32(h[7])<<8 | uint32(h[8])
	if typ > 0x9 || h[5]&0x80 != 0 || n > h2MaxFrame {
		return false
	}
	// Defined flags, the stream id rule and the length rule of each type.
	var okFlags byte
	stream, length := id != 0, true
	switch typ {
	case 0x0: // DATA
		okFlags = 0x09
	case 0x1: // HEADERS
		okFlags = 0x2d
	case 0x2: // PRIORITY
		length = n == 5
	case 0x3: // RST_STREAM
		length = n == 4
	case 0x4: // SETTINGS
		okFlags, stream = 0x01, id == 0
		length = flags&0x01 == 0 && n%6 == 0 || flags&0x01 != 0 && n == 0
	case 0x5: // PUSH_PROMISE
		okFlags, length = 0x0c, n >= 4
	case 0x6: // PING
		okFlags, stream, length = 0x01, id == 0, n == 8
	case 0x7: // GOAWAY
		stream, length = id == 0, n >= 8
	case 0x8: // WINDOW_UPDATE
		stream, length = true, n == 4
	case 0x9: // CONTINUATION
		okFlags = 0x04
	}
	return flags&^okFlags == 0 && stream && length
}

// h2Undecided reports that data may still become the preface or a SETTINGS
// frame header with more bytes.
func h2Undecided(data []byte) bool {
	if len(data) >= 9 {
		return false
	}
	if len(data) < 3 && string(data) == h2Preface[:len(data)] {
		return true
	}
	for i, b := range data {
		switch {
		case i == 3 && b != 0x4, i == 4 && b&1 != 0, i >= 5 && b != 0:
			return false
		}
	}
	return len(data) < 3 || (int(data[0])<<16|int(data[1])<<8|int(data[2]))%6 == 0
}

// switchToH2 hands the connection to an HTTP/2 parser; false when none is
// configured.
func (c *Conn) switchToH2(u Upgrade) bool {
	if c.lim.NewHTTP2 == nil {
		return false
	}
	p := c.lim.NewHTTP2(c.stats)
	if st, ok := p.(Starter); ok {
		st.Start(u)
	}
	c.proto = p
	return true
}

// isH2cUpgrade reports whether a 101 response switches to h2c.
func isH2cUpgrade(h []HeaderField) bool {
	for _, f := range h {
		if f.Name == "Upgrade" && equalFoldASCII([]byte(f.Value), "h2c") {
			return true
		}
	}
	return false
}

// ProtocolFootprint is the memory held by the parser the connection was
// handed to (0 while it is HTTP/1), for memory budgets.
func (c *Conn) ProtocolFootprint() int {
	if c.proto == nil {
		return 0
	}
	return c.proto.Footprint()
}
