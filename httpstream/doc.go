// Package httpstream turns the TCP payload segments of one connection, as the kernel's
// cgroup_skb programs saw them, into exactly one Response per HTTP/1.0 or HTTP/1.1
// response head, paired with its request.
//
// # Model
//
// A Conn holds two directions (Egress, Ingress). Each direction goes through three
// stages:
//
// Reassembly. The first segment of a direction fixes its starting sequence number;
// all sequence arithmetic is modulo 2^32. Bytes already delivered (retransmits,
// duplicates, overlapping parts) are dropped and counted in Stats.DuplicateBytes, so a
// retransmitted segment never yields a second event. Segments beyond the expected
// sequence are copied and buffered (Limits.MaxOutOfOrderBytes per direction) until
// the hole fills. When the bound is exceeded the oldest hole is given up
// (Stats.GapBytes) and delivered as unknown bytes. Uncaptured bytes (Len >
// len(Data), and the span up to SkipTo) are delivered in order as unknown bytes too.
//
// Framing (RFC 9112). A direction's role comes from its first start line: status
// lines make it a response direction, request lines a request direction. Requests
// have a chunked, Content-Length or empty body. Responses have no body after HEAD,
// for 1xx, 204 and 304; otherwise chunked, Content-Length, or close-delimited (until
// FIN). 101 Switching Protocols and a 2xx to CONNECT end HTTP on the connection;
// later bytes are ignored both ways, unless the 101 switches to h2c and
// Limits.NewHTTP2 is set: then, as when a direction's first bytes are the
// HTTP/2 client preface or a server's SETTINGS frame, the Conn hands every
// later byte of both directions to that Protocol (see protocol.go). A
// direction whose first bytes are none of these but a chain of HTTP/2 frame
// headers (H2FrameChain: a connection that opened before tracing) goes to
// Limits.NewHTTP2Midway instead; the other direction is handed over from
// its first segment that starts a frame. The event is emitted as soon as the header
// block is complete. Unknown bytes inside a body of known extent (Content-Length
// body, chunk data, close-delimited body, the CRLF after chunk data) are simply
// consumed; anywhere else the framer needed to read them, so the direction loses
// sync (Stats.Desyncs).
//
// Resync. A direction out of sync (and any direction at first) discards bytes until
// a segment whose first captured byte starts a complete, valid start line
// ("HTTP/1.x NNN" or a method, target and "HTTP/1.x"; a method is any RFC 9110
// token, the grammar the kernel classifies connections with). A direction whose very
// first byte starts a start line, or an empty line (CR or LF) before one, is in sync
// at once, even when that line continues in the next segment. While in sync, body bytes that look like a response never
// produce an event. When a response direction resynchronises after losing bytes,
// queued requests but the newest are dropped (Stats.DroppedRequests): with
// non-pipelined traffic the next response answers the newest request.
//
// Pairing. Requests queue in FIFO order, bounded in count (Limits.MaxPendingRequests)
// and in bytes (Limits.MaxPendingBytes); when full, the oldest are dropped
// (Stats.DroppedRequests) and the final responses that answer them are emitted
// without a request, so a response never carries another request's. A 1xx response
// is paired with the head request without consuming it; a final response consumes it. Without a known request, Request is nil and the body is
// framed as for GET.
//
// Truncation. A header block of up to Limits.MaxHeaderBytes is kept whole however
// it is split. A longer block still yields an event, with Truncated set and the
// header lines that fit completely within the limit; Content-Length and
// Transfer-Encoding lines beyond the limit are still honoured for framing. A start
// line longer than the limit is treated as invalid (resync).
//
// Status is "NNN reason" as sent; without a reason phrase it is "NNN " (code and a
// space), as in Tracee's events.
//
// # Lifetime of events
//
// To keep the steady state free of allocations, nothing is copied for an event: the
// Response, the Request it points to, their Headers slices and every string in them
// (Status, URI, Host, header names and values) share memory that the Conn rewrites
// for later messages. They are valid only until the emit callback returns; a string
// kept after that silently changes content. Copy what you keep (strings.Clone, or
// encode it during the callback). Proto, and Method when it is a common one (GET,
// POST, WebDAV's...), are constants and safe to keep; a rarer method is a new string.
package httpstream
