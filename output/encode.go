package output

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// AppendJSON appends the event as one compact JSON object (no trailing
// newline) to dst and returns the extended slice. Header values, cookies and
// query parameter values are redacted with the default rules (see Redactor);
// use AppendJSONWith to choose the redactor. With a reused dst of sufficient
// capacity it does not allocate (unless a header block holds more than 32
// fields).
func (e *Event) AppendJSON(dst []byte) []byte {
	return e.AppendJSONWith(dst, nil)
}

// AppendJSONWith is AppendJSON with an explicit redactor; a nil r applies the
// default redaction rules, NewRedactor(nil, true) disables redaction.
//
// When e.Identity holds an encoded Identity, its bytes are copied in place of
// the identity fields (see Identity), which must then have been encoded from
// the same values as e's. Redaction never applies to those fields.
func (e *Event) AppendJSONWith(dst []byte, r *Redactor) []byte {
	dst = append(dst, `{"timestamp":`...)
	dst = strconv.AppendInt(dst, e.Timestamp, 10)
	dst = append(dst, `,"threadStartTime":`...)
	dst = strconv.AppendInt(dst, e.ThreadStartTime, 10)
	dst = appendUintField(dst, `,"processorId":`, uint64(e.ProcessorID))
	if id := e.Identity; id != nil && id.valid {
		dst = append(dst, id.buf[:id.split]...)
		dst = strconv.AppendInt(dst, int64(e.ArgsNum()), 10)
		dst = append(dst, id.buf[id.split:]...)
	} else {
		dst = appendIdentityHead(dst, e)
		dst = strconv.AppendInt(dst, int64(e.ArgsNum()), 10)
		dst = appendIdentityTail(dst, e)
	}

	// args
	m := &e.Meta
	dst = append(dst, `,"args":[{"name":"metadata","type":"`+ArgTypePktMeta+`","value":{"src_ip":"`...)
	dst = appendAddr(dst, m.SrcIP)
	dst = append(dst, `","dst_ip":"`...)
	dst = appendAddr(dst, m.DstIP)
	dst = append(dst, '"')
	dst = appendUintField(dst, `,"src_port":`, uint64(m.SrcPort))
	dst = appendUintField(dst, `,"dst_port":`, uint64(m.DstPort))
	dst = appendUintField(dst, `,"protocol":`, uint64(m.Protocol))
	dst = appendUintField(dst, `,"packet_len":`, uint64(m.PacketLen))
	dst = appendStringField(dst, `,"iface":`, m.Iface)

	rs := &e.Response
	dst = appendStringField(dst, `}},{"name":"http_response","type":"`+ArgTypeHTTPResponse+`","value":{"status":`, rs.Status)
	dst = append(dst, `,"status_code":`...)
	dst = strconv.AppendInt(dst, int64(rs.StatusCode), 10)
	dst = appendStringField(dst, `,"protocol":`, rs.Protocol)
	dst = append(dst, `,"headers":`...)
	dst = appendHeaders(dst, rs.Headers, r)
	dst = append(dst, `,"content_length":`...)
	dst = strconv.AppendInt(dst, rs.ContentLength, 10)
	dst = append(dst, `}}`...)

	if rq := e.Request; rq != nil {
		dst = appendStringField(dst, `,{"name":"http_request","type":"`+ArgTypeHTTPRequest+`","value":{"method":`, rq.Method)
		dst = appendStringField(dst, `,"protocol":`, rq.Protocol)
		dst = appendStringField(dst, `,"host":`, rq.Host)
		dst = append(dst, `,"uri_path":"`...)
		dst = r.appendURI(dst, rq.URIPath)
		dst = append(dst, `","headers":`...)
		dst = appendHeaders(dst, rq.Headers, r)
		dst = append(dst, `,"content_length":`...)
		dst = strconv.AppendInt(dst, rq.ContentLength, 10)
		dst = append(dst, `}}`...)
	}
	if e.LatencyKnown {
		dst = append(dst, `,{"name":"latency_ns","type":"`+ArgTypeInt64+`","value":`...)
		dst = strconv.AppendInt(dst, int64(e.Latency), 10)
		dst = append(dst, '}')
	}
	switch e.Direction {
	case DirectionEgress:
		dst = append(dst, `,{"name":"direction","type":"`+ArgTypeString+`","value":"egress"}`...)
	case DirectionIngress:
		dst = append(dst, `,{"name":"direction","type":"`+ArgTypeString+`","value":"ingress"}`...)
	}
	dst = append(dst, `,{"name":"truncated","type":"`+ArgTypeBool+`","value":`...)
	dst = strconv.AppendBool(dst, e.Truncated)
	dst = append(dst, '}')
	if e.ContainerRuntime != "" {
		dst = appendStringField(dst, `,{"name":"container_runtime","type":"`+ArgTypeString+`","value":`, e.ContainerRuntime)
		dst = append(dst, '}')
	}
	if e.LostRecords > 0 {
		dst = append(dst, `,{"name":"lost_records","type":"`+ArgTypeInt64+`","value":`...)
		dst = strconv.AppendUint(dst, e.LostRecords, 10)
		dst = append(dst, '}')
	}
	if e.Evicted > 0 {
		dst = append(dst, `,{"name":"evicted","type":"`+ArgTypeInt64+`","value":`...)
		dst = strconv.AppendUint(dst, e.Evicted, 10)
		dst = append(dst, '}')
	}
	dst = e.HTTP2.appendArgs(dst)
	if e.TLS {
		dst = append(dst, `,{"name":"tls","type":"`+ArgTypeBool+`","value":true}`...)
	}
	return append(dst, `]}`...)
}

// MarshalPretty returns the event as indented JSON (two spaces), redacted
// with r (nil: default rules). It is meant for humans; use AppendJSON on hot
// paths.
func (e *Event) MarshalPretty(r *Redactor) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Indent(&buf, e.AppendJSONWith(nil, r), "", "  "); err != nil {
		return nil, fmt.Errorf("output: indent event JSON (encoder bug, please report): %w", err)
	}
	return buf.Bytes(), nil
}

func appendUintField(dst []byte, key string, v uint64) []byte {
	dst = append(dst, key...)
	return strconv.AppendUint(dst, v, 10)
}

func appendStringField(dst []byte, key string, v string) []byte {
	dst = append(dst, key...)
	return appendQuoted(dst, v)
}

// appendOptString writes key and v when v is not empty (omitempty); n counts
// fields written so far in the object, for the comma.
func appendOptString(dst []byte, n int, key, v string) ([]byte, int) {
	if v == "" {
		return dst, n
	}
	if n > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, key...)
	return appendQuoted(dst, v), n + 1
}

// appendAddr writes the address text without quotes: IPv4-mapped IPv6 as
// IPv4, IPv6 in RFC 5952 form, the zero Addr as nothing.
func appendAddr(dst []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return dst
	}
	a = a.Unmap()
	zone := a.Zone()
	if zone == "" {
		return a.AppendTo(dst)
	}
	dst = a.WithZone("").AppendTo(dst)
	dst = append(dst, '%')
	return appendEscaped(dst, zone)
}

const hexDigits = "0123456789abcdef"

func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s)
	return append(dst, '"')
}

// appendEscaped writes s as the body of a JSON string: '"' and '\\' are
// backslash-escaped, control characters use \n, \r, \t or \u00XX, U+2028 and
// U+2029 are escaped (safe to embed in JavaScript), every invalid UTF-8 byte
// becomes \ufffd. '<', '>' and '&' are written as is (unlike encoding/json's
// HTML-safe default): the output is JSON Lines, not HTML.
func appendEscaped(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		// Skip 8 bytes at a time while none needs attention.
		for i+8 <= len(s) && !needsEscape8(load64(s, i)) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		// Fewer than 8 bytes left: one overlapping word covers them. It
		// may include bytes already handled; if any of those needed
		// escaping the word says so and the bytes are checked one by one.
		if len(s)-i < 8 && len(s) >= 8 && !needsEscape8(load64(s, len(s)-8)) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// load64 reads 8 bytes of s at i as a little-endian word.
func load64(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// needsEscape8 reports whether any byte of x is a control character, '"',
// '\\' or non-ASCII (SWAR: "has byte less than" / "has zero byte" tests).
func needsEscape8(x uint64) bool {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	lt20 := (x - ones*0x20) &^ x
	quote := x ^ (ones * '"')
	quote = (quote - ones) &^ quote
	bslash := x ^ (ones * '\\')
	bslash = (bslash - ones) &^ bslash
	return (lt20|quote|bslash|x)&high != 0
}

// headerRef points at one header of the slice being encoded, packed in one
// word so that sorting moves and compares plain integers:
//
//	bits 63..32  first 4 bytes of the written name, big-endian, zero padded (valid when refFast)
//	bits 31..8   index of the header in the slice
//	bits  7..0   flags (refCanon, refAsIs, refFast)
type headerRef uint64

const (
	// refCanon: the name is a token, written canonicalized like
	// net/textproto.CanonicalMIMEHeaderKey.
	refCanon headerRef = 1 << iota
	// refAsIs: the written name is the raw name, byte for byte.
	refAsIs
	// refFast: the written name is plain ASCII, so the key and byte order
	// are valid.
	refFast
	// refKnown: the name is a well-known canonical name (see
	// wellKnownName) whose default redaction kind is in bits 6..4.
	refKnown
)

// refKindShift is the position of the default redaction kind of a
// refKnown name.
const refKindShift = 4

// maxHeaderFields is the most header fields one object can hold (the index
// has 24 bits); fields beyond it are not written.
const maxHeaderFields = 1<<24 - 1

func (h headerRef) idx() int    { return int(h >> 8 & maxHeaderFields) }
func (h headerRef) key() uint32 { return uint32(h >> 32) }

// defaultKind is the default redaction kind of a refKnown name.
func (h headerRef) defaultKind() redactKind { return redactKind(h>>refKindShift) & 7 }

// Bits of nameTable entries.
const (
	clsToken = 1 << iota // RFC 9110 tchar
	clsLower             // a-z
	clsUpper             // A-Z
	clsPlain             // ASCII written as is inside a JSON string
)

// nameTable classifies bytes of header names (a constant, not state).
const nameTable = "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x08\x09\x00\x09\x09\x09\x09\x09\x08\x08\x09\x09\x08\x09\x09\x08\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x08\x08\x08\x08\x08\x08" +
	"\x08\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x0d\x08\x00\x08\x09\x09" +
	"\x09\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x08\x09\x08\x09\x08" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// classifyName describes header hs[i]'s name: well-known canonical names
// by table, others in one pass over their bytes.
func classifyName(hs []Header, i int) headerRef {
	name := hs[i].Name
	kind, ok := wellKnownName(name)
	if !ok {
		return classifyAnyName(hs, i)
	}
	// A canonical token: written as is, key = first 4 bytes.
	var key uint32
	if len(name) >= 4 {
		key = uint32(name[0])<<24 | uint32(name[1])<<16 | uint32(name[2])<<8 | uint32(name[3])
	} else {
		for j := 0; j < len(name); j++ {
			key |= uint32(name[j]) << (24 - 8*j)
		}
	}
	return headerRef(key)<<32 | headerRef(i)<<8 | headerRef(kind)<<refKindShift |
		refKnown | refCanon | refAsIs | refFast
}

// wellKnownName reports whether name is, byte for byte, the canonical form
// of a common header field name, and if so its default redaction kind (what
// defaultKind returns for it; TestWellKnownNames checks every entry). Such
// names skip classification by bytes and the scan for secret-like words.
func wellKnownName(name string) (redactKind, bool) {
	none, yes := redactNone, true
	switch len(name) {
	case 3:
		return none, name == "Age" || name == "Via"
	case 4:
		return none, name == "Date" || name == "Host" || name == "Vary" || name == "Etag" || name == "Link"
	case 5:
		return none, name == "Range" || name == "Allow"
	case 6:
		switch name {
		case "Cookie":
			return redactCookie, yes
		case "Accept", "Server", "Origin", "Pragma", "Expect":
			return none, yes
		}
	case 7:
		switch name {
		case "Referer":
			return redactURI, yes
		case "Expires", "Upgrade":
			return none, yes
		}
	case 8:
		return redactURI, name == "Location"
	case 9:
		return redactWhole, name == "X-Api-Key"
	case 10:
		switch name {
		case "Set-Cookie":
			return redactSetCookie, yes
		case "Connection", "User-Agent", "Keep-Alive":
			return none, yes
		}
	case 12:
		return none, name == "Content-Type" || name == "X-Request-Id"
	case 13:
		switch name {
		case "Authorization":
			return redactAuthorization, yes
		case "Cache-Control", "Last-Modified", "Accept-Ranges", "If-None-Match":
			return none, yes
		}
	case 14:
		return none, name == "Content-Length"
	case 15:
		return none, name == "Accept-Encoding" || name == "Accept-Language" || name == "X-Forwarded-For"
	case 16:
		switch name {
		case "Www-Authenticate":
			return redactChallenge, yes
		case "Content-Encoding":
			return none, yes
		}
	case 17:
		return none, name == "Transfer-Encoding" || name == "If-Modified-Since" || name == "X-Forwarded-Proto"
	case 18:
		return redactChallenge, name == "Proxy-Authenticate"
	case 19:
		return redactAuthorization, name == "Proxy-Authorization"
	}
	return none, false
}

// classifyAnyName describes header hs[i]'s name in one pass over its bytes.
func classifyAnyName(hs []Header, i int) headerRef {
	name := hs[i].Name
	all := uint8(0xff)
	var mis, notDash uint8 // notDash is 0 where a letter should be upper case
	var key uint32
	head := min(len(name), 4)
	for j := 0; j < head; j++ {
		c := name[j]
		t := nameTable[c]
		all &= t
		m := (t >> (1 + notDash)) & 1 // wrong case for its position
		mis |= m
		key |= uint32(c^m<<5) << (24 - 8*j)
		notDash = 1
		if c == '-' {
			notDash = 0
		}
	}
	for j := head; j < len(name); j++ {
		c := name[j]
		t := nameTable[c]
		all &= t
		mis |= (t >> (1 + notDash)) & 1
		notDash = 1
		if c == '-' {
			notDash = 0
		}
	}
	ref := headerRef(i) << 8
	switch {
	case name != "" && all&clsToken != 0:
		ref |= headerRef(key)<<32 | refCanon | refFast
		if mis == 0 {
			ref |= refAsIs
		}
	case all&clsPlain != 0:
		key = 0
		for j := 0; j < head; j++ {
			key |= uint32(name[j]) << (24 - 8*j)
		}
		ref |= headerRef(key)<<32 | refAsIs | refFast
	}
	return ref
}

// compareNames orders two headers by their written names.
func compareNames(hs []Header, a, b headerRef) int {
	na, nb := hs[a.idx()].Name, hs[b.idx()].Name
	if a&b&refFast != 0 {
		if ka, kb := a.key(), b.key(); ka != kb {
			if ka < kb {
				return -1
			}
			return 1
		}
		if len(na) <= 4 && len(nb) <= 4 {
			// Equal keys of plain names (no zero bytes): equal names.
			return 0
		}
		if a&b&refAsIs != 0 {
			return strings.Compare(na[4:], nb[4:])
		}
	}
	return compareHeaderNames(na, a&refCanon != 0, nb, b&refCanon != 0)
}

// compareRefs orders by written name, then by wire order.
func compareRefs(hs []Header, a, b headerRef) int {
	if c := compareNames(hs, a, b); c != 0 {
		return c
	}
	return cmp.Compare(a.idx(), b.idx())
}

// maxStackHeaders is how many header fields are sorted without allocating.
const maxStackHeaders = 32

// appendHeaders writes headers as a JSON object mapping canonical name to
// the list of values (in wire order), keys sorted by their bytes like
// encoding/json sorts map keys. Values are redacted per r.
func appendHeaders(dst []byte, hs []Header, r *Redactor) []byte {
	if len(hs) > maxHeaderFields {
		hs = hs[:maxHeaderFields]
	}
	var stack [maxStackHeaders]headerRef
	var refs []headerRef
	if len(hs) <= maxStackHeaders {
		refs = stack[:len(hs)]
	} else {
		refs = make([]headerRef, len(hs))
	}
	for i := range hs {
		refs[i] = classifyName(hs, i)
	}
	sortHeaderRefs(hs, refs)
	// Redaction: a well-known name's default kind applies unless
	// redaction is off or extra names may match it.
	disabled := r.Disabled()
	noExtra := r == nil || len(r.extra) == 0

	dst = append(dst, '{')
	for i := 0; i < len(refs); {
		first := refs[i]
		name := hs[first.idx()].Name
		j := i + 1
		for j < len(refs) && sameName(hs, first, refs[j]) {
			j++
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		switch {
		case first&refAsIs != 0:
			dst = append(dst, name...)
		case first&refCanon != 0:
			dst = appendCanonicalName(dst, name)
		default:
			dst = appendEscaped(dst, name)
		}
		dst = append(dst, `":[`...)
		var kind redactKind
		switch {
		case disabled:
		case first&refKnown != 0 && (noExtra || first.defaultKind() != redactNone):
			kind = first.defaultKind()
		default:
			kind = r.kind(name)
		}
		for k := i; k < j; k++ {
			if k > i {
				dst = append(dst, ',')
			}
			dst = append(dst, '"')
			dst = appendRedacted(dst, kind, hs[refs[k].idx()].Value, true)
			dst = append(dst, '"')
		}
		dst = append(dst, ']')
		i = j
	}
	return append(dst, '}')
}

// maxInsertionSort is the most refs sorted by insertion.
const maxInsertionSort = 12

// sortHeaderRefs orders refs by written name, then wire order. Short lists
// (the common case) use an insertion sort, which costs one comparison per
// element when they are already sorted.
func sortHeaderRefs(hs []Header, refs []headerRef) {
	if len(refs) > maxInsertionSort {
		slices.SortFunc(refs, func(a, b headerRef) int {
			return compareRefs(hs, a, b)
		})
		return
	}
	for i := 1; i < len(refs); i++ {
		x := refs[i]
		j := i
		for ; j > 0; j-- {
			y := refs[j-1]
			// Refs of plain names whose keys differ compare as
			// integers (the key is in the top bits).
			if x&y&refFast != 0 && x.key() != y.key() {
				if x > y {
					break
				}
			} else if compareRefs(hs, x, y) >= 0 {
				break
			}
			refs[j] = y
		}
		refs[j] = x
	}
}

// sameName reports whether a and b have the same written name.
func sameName(hs []Header, a, b headerRef) bool {
	if a&b&refFast != 0 && a.key() != b.key() {
		return false
	}
	return compareNames(hs, a, b) == 0
}

// isToken reports whether s is a non-empty RFC 9110 token (valid field name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(c byte) bool { return nameTable[c]&clsToken != 0 }

// canonicalByte returns byte i of the canonical form of a token name: upper
// case at the start and after '-', lower case elsewhere.
func canonicalByte(name string, i int) byte {
	c := name[i]
	if i == 0 || name[i-1] == '-' {
		if 'a' <= c && c <= 'z' {
			return c - ('a' - 'A')
		}
		return c
	}
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

func appendCanonicalName(dst []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		dst = append(dst, canonicalByte(name, i))
	}
	return dst
}

// nameRune returns the rune at byte i of a header name as it is written:
// canonicalized for tokens, invalid UTF-8 read as U+FFFD otherwise.
func nameRune(name string, i int, canon bool) (rune, int) {
	if canon {
		return rune(canonicalByte(name, i)), 1
	}
	if c := name[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(name[i:])
}

// compareHeaderNames compares two names in their written form, so that names
// that are written identically group together and keys come out sorted.
func compareHeaderNames(a string, aCanon bool, b string, bCanon bool) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ra, na := nameRune(a, i, aCanon)
		rb, nb := nameRune(b, j, bCanon)
		if ra != rb {
			if ra < rb {
				return -1
			}
			return 1
		}
		i += na
		j += nb
	}
	switch {
	case i < len(a):
		return 1
	case j < len(b):
		return -1
	}
	return 0
}
