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

// referenceHeaderJSON encodes a header block the slow, obvious way: written
// name = canonical form for tokens, the name itself otherwise (invalid UTF-8
// read as U+FFFD); stable sort by written name; one key per written name
// with its values in wire order, redacted per r.kind of the first name.
func referenceHeaderJSON(hs []Header, r *Redactor) string {
	type field struct{ written, name, value string }
	fs := make([]field, 0, len(hs))
	for _, h := range hs {
		w := sanitizeUTF8(h.Name)
		if isToken(h.Name) {
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
		if !isToken(fs[i].name) {
			key = fs[i].name // invalid UTF-8 is written as \ufffd escapes
		}
		b.WriteString(`"` + referenceEscape(key) + `":[`)
		kind := r.kind(fs[i].name)
		for k := i; k < j; k++ {
			if k > i {
				b.WriteByte(',')
			}
			b.WriteString(`"` + referenceEscape(string(appendRedacted(nil, kind, fs[k].value, false))) + `"`)
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
	"bad name", "bad\xffname", "é", "Dat\x00e", "Conte\"nt", "A-", "-a",
}

var headerValuePool = []string{
	"", "text/html", "a=1; Path=/", "Bearer abc.def", `Basic realm="x", charset=UTF-8`, "Mon, 02 Oct 2023 18:04:38 GMT",
	"v\x00\"\\", "\u2028é\xff", "12345678", "1234567", "123456789", "tab\there", "nginx/1.25.3",
}

// TestHeadersMatchReference encodes random header blocks with every kind of
// redactor and compares them byte for byte with referenceHeaderJSON.
func TestHeadersMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	redactors := []*Redactor{nil, NewRedactor(nil, false), NewRedactor([]string{"x-secret", "content-type"}, false), NewRedactor(nil, true)}
	for iter := 0; iter < 3000; iter++ {
		n := rng.IntN(16)
		if iter%100 == 0 {
			n = maxInsertionSort + 1 + rng.IntN(30) // the slices.SortFunc path
		}
		hs := make([]Header, n)
		for i := range hs {
			hs[i] = Header{headerNamePool[rng.IntN(len(headerNamePool))], headerValuePool[rng.IntN(len(headerValuePool))]}
		}
		for _, r := range redactors {
			got := string(appendHeaders(nil, hs, r))
			if want := referenceHeaderJSON(hs, r); got != want {
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
		redactors := []*Redactor{nil, NewRedactor([]string{name2, "x-secret"}, false), NewRedactor(nil, true)}
		for _, r := range redactors {
			got := string(appendHeaders(nil, hs, r))
			if want := referenceHeaderJSON(hs, r); got != want {
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

// TestWellKnownNames: every name the table knows is canonical and
// classifies like the byte-by-byte path, plus its default redaction kind.
func TestWellKnownNames(t *testing.T) {
	mustKnow := []string{"Date", "Server", "Content-Type", "Content-Length", "Connection", "Host", "User-Agent",
		"Accept", "Set-Cookie", "Cookie", "Authorization", "Proxy-Authorization", "Www-Authenticate", "Proxy-Authenticate", "X-Api-Key"}
	for _, name := range mustKnow {
		if !wellKnownName(name) {
			t.Errorf("wellKnownName(%q) = false, want true (common header)", name)
		}
	}
	known := 0
	for _, name := range headerNamePool {
		for _, v := range []string{name, strings.ToLower(name), strings.ToUpper(name), textproto.CanonicalMIMEHeaderKey(name)} {
			if !wellKnownName(v) {
				continue
			}
			kind := defaultKind(v)
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
