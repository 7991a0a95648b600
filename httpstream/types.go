package httpstream

import "strconv"

// Direction says which way bytes travelled relative to the traced container's socket.
type Direction uint8

const (
	Egress  Direction = 0 // bytes sent by the traced container's socket
	Ingress Direction = 1 // bytes received by it
)

// String returns "egress" or "ingress".
func (d Direction) String() string {
	switch d {
	case Egress:
		return "egress"
	case Ingress:
		return "ingress"
	}
	return "direction(" + strconv.Itoa(int(d)) + ")"
}

// PacketInfo describes the kernel packet that carried a segment. It is copied into the
// Request/Response whose first byte (start line) was in that segment.
type PacketInfo struct {
	TimestampNs uint64 // epoch ns
	PacketLen   uint32 // length of the whole IP packet (skb len)
	Ifindex     uint32
}

// Segment is one TCP payload segment of one direction as the kernel saw it.
type Segment struct {
	Dir Direction
	// Seq is the TCP sequence number of the first payload byte (wraps modulo 2^32).
	Seq uint32
	// Len is the number of payload bytes this segment covers from Seq; Len >= len(Data).
	// Bytes [Seq+len(Data), Seq+Len) exist on the wire but were not captured.
	// A Len smaller than len(Data) is treated as len(Data).
	Len uint32
	// Data is the captured payload; it is only read during Feed (copied when buffered).
	Data []byte
	// SkipTo, when HasSkip, is a kernel promise: after this segment no bytes of this
	// direction below SkipTo are sent; bytes [Seq+Len, SkipTo) are uncaptured and are
	// treated exactly like uncaptured bytes delivered in order. Ignored together with FIN.
	SkipTo  uint32
	HasSkip bool
	// Gap reports that bytes of this direction before Seq were lost for good
	// (the kernel had no room for them): holes before Seq are given up at once
	// instead of waiting for data that will never come.
	Gap bool
	// Filtered is a kernel promise that a response which a filter left out
	// starts at Seq, at a message boundary (so it answers the oldest queued
	// request), and ends at FilteredEnd; none of [Seq, Seq+Len) is captured.
	// The Conn pairs it and passes its bytes, the body bytes that follow
	// included, without parsing or emitting it. FilteredStatus is its code.
	Filtered       bool
	FilteredStatus int
	FilteredEnd    uint32
	FIN            bool // sender finished after Seq+Len
	RST            bool // connection reset: the whole connection is finished at once
	Info           PacketInfo
}

// HeaderField is one header line. Name is in canonical MIME form
// (textproto.CanonicalMIMEHeaderKey rules); Value has surrounding whitespace removed.
type HeaderField struct{ Name, Value string }

// Request is a parsed HTTP/1.x request head. It, its Headers and its strings are only
// valid during the emit callback of the Response it is attached to: the Conn reuses
// them, and the bytes the strings share, afterwards (see the package doc).
type Request struct {
	Method, URI, Proto, Host string // Host from the first Host header
	Headers                  []HeaderField
	// ContentLength is the declared body length: 0 when no body, -1 when chunked or
	// the Content-Length is invalid.
	ContentLength int64
	Truncated     bool // header block exceeded Limits.MaxHeaderBytes
	Info          PacketInfo
}

// Response is one HTTP/1.x response head. It and everything it points to, strings
// included, are only valid during the emit callback: the strings share bytes the Conn
// overwrites with later messages. Copy what you keep (strings.Clone).
type Response struct {
	Dir        Direction // direction the response bytes travelled
	Proto      string    // "HTTP/1.1" or "HTTP/1.0"
	StatusCode int
	// Status is "NNN reason" as sent. When the status line has no reason phrase
	// ("HTTP/1.1 200") it is "NNN " (code and one space), like Tracee's events.
	Status  string
	Headers []HeaderField // wire order, canonical names, repeated names kept
	// ContentLength is the declared Content-Length; -1 when chunked (or any
	// Transfer-Encoding), absent or invalid.
	ContentLength int64
	HeaderBytes   int  // bytes of status line + header block including the final empty line
	Truncated     bool // header block exceeded the limit: Headers holds the lines up to the limit
	Info          PacketInfo
	Request       *Request // paired request, nil when unknown
	LatencyNs     int64    // Info.TimestampNs - Request.Info.TimestampNs, 0 without a request

	// HTTP/2 only (zero for HTTP/1): the stream the response came on, and for
	// gRPC the grpc-status and grpc-message of its trailers (HasGRPCStatus).
	StreamID      uint32
	HasGRPCStatus bool
	GRPCStatus    int
	GRPCMessage   string
	// Partial marks an event decoded without the full HPACK state (connection
	// joined midway): fields that could not be decoded are left empty.
	Partial bool
}

// Limits bound the memory one Conn uses. Zero (or negative) fields mean the defaults.
type Limits struct {
	MaxHeaderBytes     int // default 16384; a header block of up to this size is kept whole
	MaxPendingRequests int // default 64 per connection (pipelining queue)
	// MaxPendingBytes bounds the bytes the queued requests of one connection
	// keep (their start lines and header blocks); the oldest are dropped first.
	MaxPendingBytes int // default 128 KiB
	// MaxOutOfOrderBytes bounds, per direction, the captured bytes buffered while waiting
	// for a hole to fill (each buffered segment also counts a 64-byte overhead).
	MaxOutOfOrderBytes int // default 256 KiB
	// NewHTTP2, when set, makes the parser that takes over a connection once it
	// switches to HTTP/2 (prior-knowledge preface, or Upgrade: h2c and 101).
	// Without it such a connection is not parsed after the switch.
	NewHTTP2 func(stats *Stats) Protocol
	// NewHTTP2Midway, when set, makes the parser of an HTTP/2 connection
	// joined midway: a direction whose first bytes are neither HTTP/1 nor
	// an HTTP/2 start but a chain of plausible frame headers (a connection
	// that opened before tracing). Its client side is not known; each
	// direction is handed over from its first segment that starts a frame.
	NewHTTP2Midway func(stats *Stats) Protocol
}

// Default limits.
const (
	DefaultMaxHeaderBytes     = 16384
	DefaultMaxPendingRequests = 64
	DefaultMaxPendingBytes    = 128 << 10
	DefaultMaxOutOfOrderBytes = 256 << 10
)

func (l Limits) withDefaults() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxPendingRequests <= 0 {
		l.MaxPendingRequests = DefaultMaxPendingRequests
	}
	if l.MaxPendingBytes <= 0 {
		l.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if l.MaxOutOfOrderBytes <= 0 {
		l.MaxOutOfOrderBytes = DefaultMaxOutOfOrderBytes
	}
	return l
}

// Stats are counters. The caller owns it; it may be shared by many Conns of one goroutine.
type Stats struct {
	Requests  uint64 // request heads parsed
	Responses uint64 // response events emitted
	Truncated uint64 // header blocks (requests and responses) that exceeded MaxHeaderBytes
	// DuplicateBytes counts captured bytes dropped as retransmits/duplicates.
	DuplicateBytes uint64
	// Desyncs counts times a direction lost framing and had to resynchronise.
	Desyncs uint64
	// GapBytes counts sequence bytes given up as lost (holes never filled).
	GapBytes uint64
	// DroppedRequests counts queued requests discarded unanswered: the oldest when the
	// pipelining queue is full (in count or bytes), and those whose responses were
	// lost to a resync. The responses to requests dropped from a full queue are
	// emitted without a request.
	DroppedRequests uint64
	// CutStreams counts HTTP/2 streams ended (RST_STREAM, GOAWAY, connection end)
	// before any response: they give no event.
	CutStreams uint64
	// Filtered counts responses the kernel left out (Segment.Filtered) that
	// were paired and passed; one that did not fit the framing is a Desync.
	Filtered uint64
}
