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
