package httpstream

import "bytes"

// kind of a start line.
type kind uint8

const (
	kindNone kind = iota
	kindRequest
	kindResponse
)

const (
	proto10 = "HTTP/1.0"
	proto11 = "HTTP/1.1"
)

// knownMethod returns the method name for b, or "" when b is not a method this
// package accepts at a start line: any RFC 9110 token, as the kernel's classifier
// accepts (bpf/include/classify.h). Common names are interned.
func knownMethod(b []byte) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "CONNECT":
		return "CONNECT"
	case "OPTIONS":
		return "OPTIONS"
	case "TRACE":
		return "TRACE"
	case "PATCH":
		return "PATCH"
	case "PROPFIND":
		return "PROPFIND"
	case "PROPPATCH":
		return "PROPPATCH"
	case "MKCOL":
		return "MKCOL"
	case "COPY":
		return "COPY"
	case "MOVE":
		return "MOVE"
	case "LOCK":
		return "LOCK"
	case "UNLOCK":
		return "UNLOCK"
	case "REPORT":
		return "REPORT"
	case "PURGE":
		return "PURGE"
	}
	if !isToken(b) {
		return ""
	}
	return string(b)
}

// isToken reports whether b is an RFC 9110 token: one or more tchar.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tchar(c) {
			return false
		}
	}
	return true
}

// tchar reports whether c is an RFC 9110 tchar: "!" / "#" / "$" / "%" / "&" / "'" /
// "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA.
func tchar(c byte) bool {
	switch {
	case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// isMethodPrefix reports whether b can begin a method: it is a token so far.
func isMethodPrefix(b []byte) bool { return isToken(b) }

// reasonByte reports whether c may appear in a reason phrase (HTAB, SP, VCHAR, obs-text).
func reasonByte(c byte) bool { return c == '\t' || c >= 0x20 && c != 0x7f }

// targetByte reports whether c may appear in a request target (visible, no SP/CTL).
func targetByte(c byte) bool { return c > 0x20 && c != 0x7f }

func protoOf(b []byte) string {
	if len(b) == 8 && string(b[:7]) == "HTTP/1." {
		switch b[7] {
		case '0':
			return proto10
		case '1':
			return proto11
		}
	}
	return ""
}

// responseLine validates a complete status line (without line end).
// It returns the status code or 0 when invalid.
func responseLine(l []byte) int {
	if len(l) < 12 || protoOf(l[:8]) == "" || l[8] != ' ' {
		return 0
	}
	d0, d1, d2 := l[9], l[10], l[11]
	if d0 < '1' || d0 > '5' || d1 < '0' || d1 > '9' || d2 < '0' || d2 > '9' {
		return 0
	}
	if len(l) > 12 {
		if l[12] != ' ' {
			return 0
		}
		for _, c := range l[13:] {
			if !reasonByte(c) {
				return 0
			}
		}
	}
	return int(d0-'0')*100 + int(d1-'0')*10 + int(d2-'0')
}

// requestLine validates a complete request line (without line end).
func requestLine(l []byte) (method string, uriStart, uriEnd int, proto string) {
	sp1 := bytes.IndexByte(l, ' ')
	if sp1 <= 0 || len(l) < sp1+1+1+1+8 {
		return "", 0, 0, ""
	}
	method = knownMethod(l[:sp1])
	if method == "" {
		return "", 0, 0, ""
	}
	protoStart := len(l) - 8
	if l[protoStart-1] != ' ' {
		return "", 0, 0, ""
	}
	proto = protoOf(l[protoStart:])
	if proto == "" {
		return "", 0, 0, ""
	}
	uriStart, uriEnd = sp1+1, protoStart-1
	if uriStart >= uriEnd {
		return "", 0, 0, ""
	}
	for _, c := range l[uriStart:uriEnd] {
		if !targetByte(c) {
			return "", 0, 0, ""
		}
	}
	return method, uriStart, uriEnd, proto
}

// lineKind classifies a complete start line (without line end).
func lineKind(l []byte) kind {
	if responseLine(l) != 0 {
		return kindResponse
	}
	if m, _, _, _ := requestLine(l); m != "" {
		return kindRequest
	}
	return kindNone
}

// trimLineEnd removes a trailing LF and an optional CR before it.
func trimLineEnd(l []byte) []byte {
	if n := len(l); n > 0 && l[n-1] == '\n' {
		l = l[:n-1]
		if n := len(l); n > 0 && l[n-1] == '\r' {
			l = l[:n-1]
		}
	}
	return l
}

// startLineAt reports whether data begins with a complete, valid start line of a kind
// compatible with want (kindNone accepts both).
func startLineAt(data []byte, want kind) bool {
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return false
	}
	k := lineKind(trimLineEnd(data[:nl+1]))
	return k != kindNone && (want == kindNone || want == k)
}

// maxPrefixLine bounds how long a start line may be when it is accepted as a prefix.
const maxPrefixLine = 8192

// startLinePrefixAt is startLineAt, but also accepts data that ends before the line
// does when what is there is a valid beginning of a start line.
func startLinePrefixAt(data []byte, want kind) bool {
	if bytes.IndexByte(data, '\n') >= 0 {
		return startLineAt(data, want)
	}
	if len(data) == 0 || len(data) > maxPrefixLine {
		return false
	}
	if want != kindRequest && responsePrefix(data) {
		return true
	}
	return want != kindResponse && requestPrefix(data)
}

func responsePrefix(b []byte) bool {
	const pat = "HTTP/1.x DDD "
	for i, c := range b {
		if i >= len(pat) {
			return reasonByte(c) || c == '\r'
		}
		switch p := pat[i]; p {
		case 'x':
			if c != '0' && c != '1' {
				return false
			}
		case 'D':
			if c < '0' || c > '9' || i == 9 && (c < '1' || c > '5') {
				return false
			}
		default:
			if c != p {
				return i == 12 && c == '\r' // "HTTP/1.1 200\r" with the LF still to come
			}
		}
	}
	return true
}

func requestPrefix(b []byte) bool {
	sp1 := bytes.IndexByte(b, ' ')
	if sp1 < 0 {
		return isMethodPrefix(b)
	}
	if knownMethod(b[:sp1]) == "" {
		return false
	}
	rest := b[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		for _, c := range rest {
			if !targetByte(c) {
				return false
			}
		}
		return true
	}
	if sp2 == 0 {
		return false
	}
	for _, c := range rest[:sp2] {
		if !targetByte(c) {
			return false
		}
	}
	p := rest[sp2+1:]
	if len(p) > 0 && p[len(p)-1] == '\r' {
		p = p[:len(p)-1]
		if len(p) != 8 {
			return false
		}
	}
	const pat = "HTTP/1.x"
	if len(p) > len(pat) {
		return false
	}
	for i, c := range p {
		if pat[i] == 'x' {
			if c != '0' && c != '1' {
				return false
			}
		} else if c != pat[i] {
			return false
		}
	}
	return true
}
