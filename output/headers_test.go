package output

import (
	"fmt"
	"math/rand/v2"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// referenceEscape is a rune-by-rune JSON string body writer with the rules
// appendEscaped documents, used to check its word-at-a-time fast paths.
func referenceEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\ufffd`)
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		case r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// refRedaction is what the reference knows of a Redactor: its extra names
// and whether it is off. It decides redaction without the code under test.
type refRedaction struct {
	extra []string
	off   bool
}

// Reference redaction kinds, named for readability of the tables below.
const (
	refNone      = "none"
	refWhole     = "whole"
	refSetCookie = "set-cookie"
	refCookie    = "cookie"
	refAuth      = "authorization"
	refChallenge = "challenge"
	refURI       = "uri"
)

// refStructured are the default headers whose values keep some structure,
// written down here independently of defaultKind.
var refStructured = map[string]string{
	"set-cookie": refSetCookie, "cookie": refCookie,
	"authorization": refAuth, "proxy-authorization": refAuth,
	"www-authenticate": refChallenge, "proxy-authenticate": refChallenge,
	"location": refURI, "referer": refURI, "content-location": refURI,
}

// refTchars are the RFC 9110 token characters besides letters and digits.
const refTchars = "!#$%&'*+-.^_`|~"

func refIsToken(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(refTchars, r))
	})
}

// kind is the reference's redaction rule for a header name: the README's
// list, read literally.
func (rr refRedaction) kind(name string) string {
	lower := strings.ToLower(name)
	switch {
	case rr.off:
		return refNone
	case refStructured[lower] != "":
		return refStructured[lower]
	case !refIsToken(name):
		return refWhole
	}
	for _, w := range []string{"token", "secret", "password", "passwd", "api-key", "apikey", "session", "credential"} {
		if strings.Contains(lower, w) {
			return refWhole
		}
	}
	for _, x := range rr.extra {
		if strings.EqualFold(strings.TrimSpace(x), name) {
			return refWhole
		}
	}
	return refNone
}

// refRedactedValues are the redacted forms of headerValuePool's values by
// kind, worked out by hand from the formats documented on Redactor.
var refRedactedValues = map[string]map[string]string{
	refSetCookie: {
		"": "<redacted>", "a=1; Path=/": "a=<redacted>; Path=/", `Basic realm="x", charset=UTF-8`: `Basic realm=<redacted>`,
		"/p;jsessionid=1?code=2#tok=3": "<redacted>; <redacted>", "sid=abc;SECRET": "sid=<redacted>; <redacted>",
		"a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT, b=2": "a=<redacted>; Expires=<redacted>",
	},
	refCookie: {
		"": "", "a=1; Path=/": "a=<redacted>; Path=<redacted>", `Basic realm="x", charset=UTF-8`: `Basic realm=<redacted>`,
		"/p;jsessionid=1?code=2#tok=3": "<redacted>; jsessionid=<redacted>", "sid=abc;SECRET": "sid=<redacted>; <redacted>",
		"a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT, b=2": "a=<redacted>; Expires=<redacted>",
	},
	refAuth: {
		"Bearer abc.def": "Bearer <redacted>", `Basic realm="x", charset=UTF-8`: "Basic <redacted>", "tab\there": "tab <redacted>",
	},
	refChallenge: {
		"": "", "a=1; Path=/": "a=<redacted> Path=<redacted>", "Bearer abc.def": "Bearer <redacted>",
		`Basic realm="x", charset=UTF-8`: "Basic realm=<redacted>, charset=<redacted>",
		// Words after a scheme are token68 data or stray: hidden; a word
		// after a comma starts a new challenge: kept.
		"Mon, 02 Oct 2023 18:04:38 GMT": "Mon, 02 <redacted> <redacted> <redacted> <redacted>",
		"v\x00\"\\":                     "v <redacted>", "12345678": "12345678", "1234567": "1234567", "123456789": "123456789",
		"tab\there": "tab <redacted>", "/p;jsessionid=1?code=2#tok=3": "<redacted> <redacted>",
		"text/html": "<redacted>", "\u2028é\xff": "<redacted>", "nginx/1.25.3": "<redacted>", // not tokens: hidden
		"http://u:p@h/x": "http <redacted>", "sid=abc;SECRET": "sid=<redacted>",
		"a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT, b=2": "a=<redacted> Expires=<redacted>, 21 <redacted> <redacted> <redacted> <redacted>",
	},
	refURI: {
		"a=1; Path=/": "a=1; Path=<redacted>/", "/p;jsessionid=1?code=2#tok=3": "/p;jsessionid=<redacted>?code=<redacted>#tok=<redacted>",
		"http://u:p@h/x": "http://<redacted>@h/x", "sid=abc;SECRET": "sid=abc;<redacted>",
		"a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT, b=2": "a=1; Expires=<redacted>",
	},
}

// value is the reference's redacted form of v under kind. Values that
// independentValue cannot decide (fuzzed values of the challenge kind, say)
// are taken from Redact on a header of that kind: that checks the escaping
// path against the plain one, the kind having been decided independently.
func (rr refRedaction) value(kind, v string) string {
	if want, ok := independentValue(kind, v); ok {
		return want
	}
	names := map[string]string{refSetCookie: "Set-Cookie", refCookie: "Cookie", refAuth: "Authorization", refChallenge: "WWW-Authenticate", refURI: "Location"}
	return NewRedactor(nil, false).Redact(names[kind], v)
}

// independentValue is the redacted form of v under kind when the tables and
// rules of this file decide it.
func independentValue(kind, v string) (string, bool) {
	switch kind {
	case refNone:
		return v, true
	case refWhole:
		return RedactedMarker, true
	}
	if want, ok := refRedactedValues[kind][v]; ok {
		return want, true
	}
	switch kind {
	case refAuth:
		return refAuthFallback(v)
	case refURI:
		if !strings.ContainsAny(v, "@;?#") {
			return v, true
		}
	case refSetCookie, refCookie:
		if kind == refCookie && strings.Trim(v, " \t") == "" {
			return "", true // no pair at all
		}
		if !strings.ContainsAny(v, ";=") {
			return RedactedMarker, true // one nameless pair
		}
	}
	return "", false
}

// refAuth: "scheme credentials" keeps the scheme when it is a token;
// anything else (one word, no token first) is hidden whole.
func refAuthFallback(v string) (string, bool) {
	f := strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(f) < 2 || !refIsToken(f[0]) {
		return RedactedMarker, true
	}
	return f[0] + " " + RedactedMarker, true
}

// referenceHeaderJSON encodes a header block the slow, obvious way: written
// name = canonical form for tokens, the name itself otherwise (invalid UTF-8
// read as U+FFFD); stable sort by written name; one key per written name
// with its values in wire order, redacted per the first name's kind.
func referenceHeaderJSON(hs []Header, rr refRedaction) string {
	type field struct{ written, name, value string }
	fs := make([]field, 0, len(hs))
	for _, h := range hs {
		w := sanitizeUTF8(h.Name)
		if refIsToken(h.Name) {
			w = textproto.CanonicalMIMEHeaderKey(h.Name)
		}
		fs = append(fs, field{w, h.Name, h.Value})
	}
	slices.SortStableFunc(fs, func(a, b field) int { return strings.Compare(a.written, b.written) })
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < len(fs); {
		j := i + 1
		for j < len(fs) && fs[j].written == fs[i].written {
			j++
		}
		if i > 0 {
			b.WriteByte(',')
		}
		key := fs[i].written
		if !refIsToken(fs[i].name) {
			key = fs[i].name // invalid UTF-8 is written as \ufffd escapes
		}
		b.WriteString(`"` + referenceEscape(key) + `":[`)
		kind := rr.kind(fs[i].name)
		for k := i; k < j; k++ {
			if k > i {
				b.WriteByte(',')
			}
			b.WriteString(`"` + referenceEscape(rr.value(kind, fs[k].value)) + `"`)
		}
		b.WriteByte(']')
		i = j
	}
	b.WriteByte('}')
	return b.String()
}

// headerNamePool mixes well-known names in several spellings with unusual
// ones, so that generated blocks exercise the table path, the byte path and
// grouping across them.
var headerNamePool = []string{
	"Content-Type", "content-type", "CONTENT-TYPE", "Content-Length", "Content-Encoding", "Content-Language",
	"Date", "date", "Server", "Vary", "Etag", "ETag", "Age", "Via", "Host", "Link", "Range", "Allow",
	"Set-Cookie", "set-cookie", "Cookie", "COOKIE", "Authorization", "authorization", "Proxy-Authorization",
	"Www-Authenticate", "WWW-Authenticate", "Proxy-Authenticate", "X-Api-Key", "x-api-key",
	"Connection", "Keep-Alive", "User-Agent", "Accept", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
	"Cache-Control", "Last-Modified", "If-None-Match", "If-Modified-Since", "Transfer-Encoding",
	"X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id", "X-Secret", "x-secret", "Location", "Referer",
	"Expires", "Upgrade", "Pragma", "Origin", "Expect", "Cont", "Content", "Content-", "X", "x", "",
	"bad name", "bad\xffname", "é", "Dat\x00e", "Conte\"nt", "A-", "-a", "X-Internal", "x-internal",
	"Content-Location", "content-location", "X-Auth-Token", "Private-Token", "Api-Key", "X-Csrf-Token",
	"Authorization ", "X-Api-Key\t", "Proxy-Authorization ",
}

var headerValuePool = []string{
	"", "text/html", "a=1; Path=/", "Bearer abc.def", `Basic realm="x", charset=UTF-8`, "Mon, 02 Oct 2023 18:04:38 GMT",
	"v\x00\"\\", "\u2028é\xff", "12345678", "1234567", "123456789", "tab\there", "nginx/1.25.3",
	"/p;jsessionid=1?code=2#tok=3", "http://u:p@h/x", "sid=abc;SECRET", "a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT, b=2",
}

// TestHeadersMatchReference encodes random header blocks with every kind of
// redactor and compares them byte for byte with referenceHeaderJSON.
func TestHeadersMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	redactors := []*Redactor{nil, NewRedactor(nil, false), NewRedactor([]string{"x-internal", "content-type"}, false), NewRedactor(nil, true)}
	refs := []refRedaction{{}, {}, {extra: []string{"x-internal", "content-type"}}, {off: true}}
	for _, kind := range []string{refNone, refWhole, refSetCookie, refCookie, refAuth, refChallenge, refURI} {
		for _, v := range headerValuePool {
			if _, ok := independentValue(kind, v); !ok {
				t.Fatalf("the reference has no independent %s form of pool value %q: add it to refRedactedValues", kind, v)
			}
		}
	}
	for iter := 0; iter < 3000; iter++ {
		n := rng.IntN(16)
		if iter%100 == 0 {
			n = maxInsertionSort + 1 + rng.IntN(30) // the slices.SortFunc path
		}
		hs := make([]Header, n)
		for i := range hs {
			hs[i] = Header{headerNamePool[rng.IntN(len(headerNamePool))], headerValuePool[rng.IntN(len(headerValuePool))]}
		}
		for k, r := range redactors {
			got := string(appendHeaders(nil, hs, r))
			if want := referenceHeaderJSON(hs, refs[k]); got != want {
				t.Fatalf("headers %q (redactor %+v)\n got %s\nwant %s", hs, r, got, want)
			}
		}
	}
}

// FuzzHeadersMatchReference: fuzzed names and values, mixed with well-known
// names, encode exactly like referenceHeaderJSON with each redactor.
func FuzzHeadersMatchReference(f *testing.F) {
	f.Add("Content-Type", "text/html", "content-type", "a=1", uint8(3))
	f.Add("Set-Cookie", "a=1; Path=/", "X-Secret", "s", uint8(7))
	f.Add("bad\xffname", "\u2028", "", "v\x00", uint8(0))
	f.Add("Cont", "12345678", "Content-", "1234567", uint8(200))
	f.Fuzz(func(t *testing.T, name1, value1, name2, value2 string, pick uint8) {
		known := headerNamePool[int(pick)%len(headerNamePool)]
		hs := []Header{{name1, value1}, {known, value2}, {name2, value2}, {name1, value1 + value2}, {known, value1}}
		redactors := []*Redactor{nil, NewRedactor([]string{name2, "x-internal"}, false), NewRedactor(nil, true)}
		refs := []refRedaction{{}, {extra: []string{name2, "x-internal"}}, {off: true}}
		for k, r := range redactors {
			got := string(appendHeaders(nil, hs, r))
			if want := referenceHeaderJSON(hs, refs[k]); got != want {
				t.Fatalf("headers %q\n got %s\nwant %s", hs, got, want)
			}
		}
	})
}

// FuzzAppendEscaped: appendEscaped agrees with referenceEscape on any
// string and after any prefix (the tail check reads bytes already written).
func FuzzAppendEscaped(f *testing.F) {
	for _, s := range []string{"", "abcdefg", "abcdefgh", "abcdefghi", "a\"bcdefghij", "0123456789\n", "é漢🙂12345", "\xff1234567", "1234567\xe2\x80", "\u2028abcdefgh"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i := 0; i <= len(s) && i < 16; i++ {
			if got, want := string(appendEscaped(nil, s[i:])), referenceEscape(s[i:]); got != want {
				t.Fatalf("appendEscaped(%q) = %q, want %q", s[i:], got, want)
			}
		}
	})
}

// TestWellKnownNames: every name the table knows is canonical, classifies
// like the byte-by-byte path, and carries its default redaction kind.
func TestWellKnownNames(t *testing.T) {
	// Every entry of the table: its kind must be defaultKind's.
	table := []string{"Age", "Via", "Date", "Host", "Vary", "Etag", "Link", "Range", "Allow",
		"Cookie", "Accept", "Server", "Origin", "Pragma", "Expect", "Referer", "Expires", "Upgrade",
		"Location", "X-Api-Key", "Set-Cookie", "Connection", "User-Agent", "Keep-Alive",
		"Content-Type", "X-Request-Id", "Authorization", "Cache-Control", "Last-Modified", "Accept-Ranges",
		"If-None-Match", "Content-Length", "Accept-Encoding", "Accept-Language", "X-Forwarded-For",
		"Www-Authenticate", "Content-Encoding", "Transfer-Encoding", "If-Modified-Since", "X-Forwarded-Proto",
		"Proxy-Authenticate", "Proxy-Authorization"}
	for _, name := range table {
		kind, ok := wellKnownName(name)
		if !ok {
			t.Errorf("wellKnownName(%q) = false, want true (common header)", name)
		}
		if want := defaultKind(name); kind != want {
			t.Errorf("wellKnownName(%q) kind %d, defaultKind %d", name, kind, want)
		}
	}
	known := 0
	for _, name := range append(slices.Clone(headerNamePool), table...) {
		for _, v := range []string{name, strings.ToLower(name), strings.ToUpper(name), textproto.CanonicalMIMEHeaderKey(name)} {
			kind, ok := wellKnownName(v)
			if !ok {
				continue
			}
			if want := defaultKind(v); kind != want {
				t.Errorf("wellKnownName(%q) kind %d, defaultKind %d", v, kind, want)
			}
			known++
			if c := textproto.CanonicalMIMEHeaderKey(v); c != v {
				t.Errorf("well-known %q is not canonical (%q)", v, c)
			}
			hs := []Header{{Name: v}}
			got, want := classifyName(hs, 0), classifyAnyName(hs, 0)
			if got != want|refKnown|headerRef(kind)<<refKindShift {
				t.Errorf("classifyName(%q) = %#x, byte path %#x", v, got, want)
			}
		}
	}
	if known == 0 {
		t.Fatal("no pool name is well known")
	}
}
