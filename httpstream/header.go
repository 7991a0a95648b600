package httpstream

import (
	"bytes"
	"net/textproto"
	"unsafe"
)

const (
	// overflowLineCap bounds how much of one header line beyond MaxHeaderBytes is kept
	// for the Content-Length/Transfer-Encoding check.
	overflowLineCap = 1024
	// minHardHeaderCap is the least a header block may grow (unstored) before the
	// direction is declared out of sync.
	minHardHeaderCap = 1 << 20
)

type fieldSpan struct {
	nameStart, nameEnd, valStart, valEnd int
}

// foldSpan is an obsolete line-folding continuation of field.
type foldSpan struct {
	field, start, end int
}

// headerBlock incrementally collects and parses one start line + header block.
// Offsets refer to buf, which holds at most limit bytes of the block.
type headerBlock struct {
	limit     int
	buf       []byte
	lineStart int  // start in buf of the current, incomplete line (while !overflow)
	storedEnd int  // end in buf of the last complete stored line
	overflow  bool // the block went beyond limit
	ovLine    []byte
	ovLong    bool // current overflow line exceeded overflowLineCap
	total     int  // bytes of the block consumed so far
	lines     int
	done      bool

	fields []fieldSpan
	folds  []foldSpan

	kind        kind
	proto       string
	code        int
	statusStart int // into buf; status runs to statusEnd
	statusEnd   int
	method      string
	uriStart    int
	uriEnd      int

	clSeen, clBad     bool
	cl                int64
	teSeen, teChunked bool
}

func (h *headerBlock) reset(limit int) {
	*h = headerBlock{
		limit:  limit,
		buf:    h.buf[:0],
		ovLine: h.ovLine[:0],
		fields: h.fields[:0],
		folds:  h.folds[:0],
	}
}

func (h *headerBlock) hardCap() int {
	if c := 64 * h.limit; c > minHardHeaderCap {
		return c
	}
	return minHardHeaderCap
}

// write consumes data up to the end of the header block. It returns the bytes
// consumed, whether the block is complete, and false when the block is invalid
// (bad start line of the wanted kind, or far too long).
func (h *headerBlock) write(data []byte, want kind) (int, bool, bool) {
	i := 0
	for i < len(data) {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			h.appendBytes(data[i:])
			h.total += len(data) - i
			return len(data), false, h.total <= h.hardCap()
		}
		h.appendBytes(data[i : i+j+1])
		h.total += j + 1
		i += j + 1
		if !h.completeLine(want) {
			return i, false, false
		}
		if h.done {
			return i, true, true
		}
		if h.total > h.hardCap() {
			return i, false, false
		}
	}
	return i, false, true
}

func (h *headerBlock) appendBytes(p []byte) {
	if !h.overflow {
		room := h.limit - len(h.buf)
		if len(p) <= room {
			h.buf = append(h.buf, p...)
			return
		}
		h.buf = append(h.buf, p[:room]...)
		h.overflow = true
		h.ovLine = h.ovLine[:0]
		h.ovLong = false
		h.ovAppend(h.buf[h.lineStart:])
		p = p[room:]
	}
	h.ovAppend(p)
}

func (h *headerBlock) ovAppend(p []byte) {
	room := overflowLineCap - len(h.ovLine)
	if len(p) > room {
		h.ovLine = append(h.ovLine, p[:room]...)
		h.ovLong = true
		return
	}
	h.ovLine = append(h.ovLine, p...)
}

// completeLine handles the line that just ended with LF.
func (h *headerBlock) completeLine(want kind) bool {
	stored := !h.overflow
	var line []byte
	base := 0
	if stored {
		base = h.lineStart
		line = trimLineEnd(h.buf[base:])
		h.lineStart = len(h.buf)
		h.storedEnd = len(h.buf)
	} else {
		line = h.ovLine
		if !h.ovLong {
			line = trimLineEnd(line)
		}
		defer func() { h.ovLine = h.ovLine[:0]; h.ovLong = false }()
	}
	h.lines++
	if h.lines == 1 {
		return stored && h.parseStart(line, want)
	}
	if len(line) == 0 {
		h.done = true
		return true
	}
	if line[0] == ' ' || line[0] == '\t' {
		if stored && len(h.fields) > 0 {
			s, e := trimOWS(line)
			if s < e {
				h.folds = append(h.folds, foldSpan{field: len(h.fields) - 1, start: base + s, end: base + e})
			}
		}
		return true
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return true // malformed line: ignored
	}
	vs, ve := trimOWS(line[colon+1:])
	h.inspect(line[:colon], line[colon+1+vs:colon+1+ve])
	if stored {
		h.fields = append(h.fields, fieldSpan{base, base + colon, base + colon + 1 + vs, base + colon + 1 + ve})
	}
	return true
}

func (h *headerBlock) parseStart(l []byte, want kind) bool {
	if want != kindRequest {
		if code := responseLine(l); code != 0 {
			h.kind, h.code, h.proto = kindResponse, code, protoOf(l[:8])
			h.statusStart, h.statusEnd = 9, len(l)
			return true
		}
	}
	if want != kindResponse {
		if m, us, ue, p := requestLine(l); m != "" {
			h.kind, h.method, h.uriStart, h.uriEnd, h.proto = kindRequest, m, us, ue, p
			return true
		}
	}
	return false
}

func trimOWS(b []byte) (int, int) {
	s, e := 0, len(b)
	for s < e && (b[s] == ' ' || b[s] == '\t') {
		s++
	}
	for e > s && (b[e-1] == ' ' || b[e-1] == '\t' || b[e-1] == '\r') {
		e--
	}
	return s, e
}

func equalFoldASCII(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// inspect records what framing needs from a header line.
func (h *headerBlock) inspect(name, value []byte) {
	switch {
	case equalFoldASCII(name, "content-length"):
		h.parseContentLength(value)
	case equalFoldASCII(name, "transfer-encoding"):
		h.teSeen = true
		// The final coding decides: chunked must be the last one applied.
		last := value
		if i := bytes.LastIndexByte(value, ','); i >= 0 {
			last = value[i+1:]
		}
		s, e := trimOWS(last)
		h.teChunked = equalFoldASCII(last[s:e], "chunked")
	}
}

// parseContentLength accepts "N" and lists of identical values ("N, N"), across lines too.
func (h *headerBlock) parseContentLength(v []byte) {
	for first := true; first || len(v) > 0; first = false {
		tok := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		s, e := trimOWS(tok)
		tok = tok[s:e]
		if len(tok) == 0 || len(tok) > 18 {
			h.clBad = true
			return
		}
		var n int64
		for _, c := range tok {
			if c < '0' || c > '9' {
				h.clBad = true
				return
			}
			n = n*10 + int64(c-'0')
		}
		if h.clSeen && n != h.cl {
			h.clBad = true
			return
		}
		h.clSeen, h.cl = true, n
	}
}

// build appends the stored header fields to dst. b is the stored part of the block
// (buf[:storedEnd] or a copy of it) and s aliases it (aliasString(b)): names are
// canonicalised in place in b, and the strings put into dst are substrings of s, so
// they are only valid until b is next written.
func (h *headerBlock) build(b []byte, s string, dst []HeaderField) []HeaderField {
	first := len(dst)
	for _, f := range h.fields {
		if f.valEnd > len(s) {
			break
		}
		dst = append(dst, HeaderField{
			Name:  canonicalName(b[f.nameStart:f.nameEnd], s[f.nameStart:f.nameEnd]),
			Value: s[f.valStart:f.valEnd],
		})
	}
	for _, fo := range h.folds {
		if i := first + fo.field; i < len(dst) && fo.end <= len(s) {
			if dst[i].Value == "" {
				dst[i].Value = s[fo.start:fo.end]
			} else {
				// Obsolete line folding is rare: a fresh string is fine here.
				dst[i].Value = dst[i].Value + " " + s[fo.start:fo.end]
			}
		}
	}
	return dst
}

// aliasString returns a string sharing b's bytes (no copy). The string changes when b
// is written: only hand it out with a documented validity period.
func aliasString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// contentLength is the declared length in Response/Tracee semantics.
func (h *headerBlock) contentLength() int64 {
	if h.teSeen || h.clBad || !h.clSeen {
		return -1
	}
	return h.cl
}

// status returns the Status string for a response block; b is the stored block and s
// aliases it (see build). Without a reason phrase the byte after the code (the line's
// CR or LF, no longer needed) is overwritten with a space so that "NNN " is a
// substring of s too.
func (h *headerBlock) status(b []byte, s string) string {
	if h.statusEnd > 12 {
		return s[h.statusStart:h.statusEnd]
	}
	if i := h.statusStart + 3; i < len(b) {
		b[i] = ' '
		return s[h.statusStart : i+1]
	}
	return s[h.statusStart:h.statusStart+3] + " "
}

// tokenBytesLow and tokenBytesHigh are bitmaps of the token characters (RFC 9110)
// among bytes 0-63 and 64-127.
const (
	tokenBytesLow  = 0x03ff6cfa00000000
	tokenBytesHigh = 0x57ffffffc7fffffe
)

// validHeaderByte reports whether c is a token character (RFC 9110).
func validHeaderByte(c byte) bool {
	if c < 64 {
		return tokenBytesLow>>c&1 != 0
	}
	return c < 128 && tokenBytesHigh>>(c-64)&1 != 0
}

// canonicalName follows textproto.CanonicalMIMEHeaderKey: names with a byte that is
// not a token character are returned unchanged. b is the name's bytes and s aliases
// them: a name that is not canonical yet is rewritten in place, so nothing allocates.
func canonicalName(b []byte, s string) string {
	upper := true
	canonical := true
	for _, c := range b {
		if !validHeaderByte(c) {
			return s
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	if canonical {
		return s
	}
	foldCanonical(b, b)
	if k := commonHeader(b); k != "" {
		return k
	}
	return s
}

// foldCanonical writes the token name src to dst (its own bytes, or a buffer
// as long) in canonical case: upper case at the start and after each '-',
// lower case elsewhere.
func foldCanonical[S string | []byte](dst []byte, src S) {
	upper := true
	for i := 0; i < len(src); i++ {
		c := src[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
		upper = c == '-'
	}
}

// CanonicalName is textproto.CanonicalMIMEHeaderKey(name) that allocates
// nothing for the names commonHeader interns: HTTP/2 decodes names as
// lower-case strings of their own, so each would otherwise be copied.
func CanonicalName(name string) string {
	var buf [32]byte
	if len(name) > len(buf) {
		return textproto.CanonicalMIMEHeaderKey(name)
	}
	for i := 0; i < len(name); i++ {
		if !validHeaderByte(name[i]) {
			return name // as textproto leaves it
		}
	}
	foldCanonical(buf[:len(name)], name)
	if k := commonHeader(buf[:len(name)]); k != "" {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// commonHeader interns frequent canonical header names: HTTP/1's, every name
// of HPACK's static table, and gRPC's.
func commonHeader(b []byte) string {
	switch string(b) {
	case "Accept":
		return "Accept"
	case "Accept-Charset":
		return "Accept-Charset"
	case "Accept-Encoding":
		return "Accept-Encoding"
	case "Accept-Language":
		return "Accept-Language"
	case "Accept-Ranges":
		return "Accept-Ranges"
	case "Access-Control-Allow-Origin":
		return "Access-Control-Allow-Origin"
	case "Age":
		return "Age"
	case "Allow":
		return "Allow"
	case "Alt-Svc":
		return "Alt-Svc"
	case "Authorization":
		return "Authorization"
	case "Cache-Control":
		return "Cache-Control"
	case "Connection":
		return "Connection"
	case "Content-Disposition":
		return "Content-Disposition"
	case "Content-Encoding":
		return "Content-Encoding"
	case "Content-Language":
		return "Content-Language"
	case "Content-Length":
		return "Content-Length"
	case "Content-Location":
		return "Content-Location"
	case "Content-Range":
		return "Content-Range"
	case "Content-Type":
		return "Content-Type"
	case "Cookie":
		return "Cookie"
	case "Date":
		return "Date"
	case "Etag":
		return "Etag"
	case "Expect":
		return "Expect"
	case "Expires":
		return "Expires"
	case "From":
		return "From"
	case "Grpc-Accept-Encoding":
		return "Grpc-Accept-Encoding"
	case "Grpc-Encoding":
		return "Grpc-Encoding"
	case "Grpc-Message":
		return "Grpc-Message"
	case "Grpc-Status":
		return "Grpc-Status"
	case "Grpc-Timeout":
		return "Grpc-Timeout"
	case "Host":
		return "Host"
	case "If-Match":
		return "If-Match"
	case "If-Modified-Since":
		return "If-Modified-Since"
	case "If-None-Match":
		return "If-None-Match"
	case "If-Range":
		return "If-Range"
	case "If-Unmodified-Since":
		return "If-Unmodified-Since"
	case "Keep-Alive":
		return "Keep-Alive"
	case "Last-Modified":
		return "Last-Modified"
	case "Link":
		return "Link"
	case "Location":
		return "Location"
	case "Max-Forwards":
		return "Max-Forwards"
	case "Proxy-Authenticate":
		return "Proxy-Authenticate"
	case "Proxy-Authorization":
		return "Proxy-Authorization"
	case "Range":
		return "Range"
	case "Referer":
		return "Referer"
	case "Refresh":
		return "Refresh"
	case "Retry-After":
		return "Retry-After"
	case "Server":
		return "Server"
	case "Set-Cookie":
		return "Set-Cookie"
	case "Strict-Transport-Security":
		return "Strict-Transport-Security"
	case "Te":
		return "Te"
	case "Trailer":
		return "Trailer"
	case "Transfer-Encoding":
		return "Transfer-Encoding"
	case "Upgrade":
		return "Upgrade"
	case "User-Agent":
		return "User-Agent"
	case "Vary":
		return "Vary"
	case "Via":
		return "Via"
	case "Www-Authenticate":
		return "Www-Authenticate"
	case "X-Content-Type-Options":
		return "X-Content-Type-Options"
	case "X-Forwarded-For":
		return "X-Forwarded-For"
	case "X-Forwarded-Proto":
		return "X-Forwarded-Proto"
	case "X-Request-Id":
		return "X-Request-Id"
	}
	return ""
}
