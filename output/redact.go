package output

import (
	"strings"
)

// RedactedMarker replaces every secret value in the output.
const RedactedMarker = "<redacted>"

// Redactor decides which header values (and request query values) are
// replaced by RedactedMarker when an event is encoded. A nil *Redactor
// applies the default rules, so secrets are hidden unless redaction is
// disabled explicitly with NewRedactor(nil, true). A Redactor is immutable
// and safe for concurrent use.
//
// Formats (names are matched case-insensitively):
//
//	Set-Cookie           name=<redacted>; Path=/; Secure; HttpOnly   cookie name and attributes kept
//	                     <redacted>; Path=/                          (cookie without a name)
//	Cookie               a=<redacted>; b=<redacted>                  names kept, pairs joined with "; "
//	Authorization,       Bearer <redacted>                           scheme kept
//	Proxy-Authorization  <redacted>                                  (a single word: may be a bare token)
//	WWW-Authenticate,    Bearer realm=<redacted>, error=<redacted>   schemes and parameter names kept
//	Proxy-Authenticate   Negotiate <redacted>                        token68 replaced
//	X-Api-Key and extra  <redacted>                                  whole value
//	request uri_path     /p?user=<redacted>&flag=<redacted>          path and parameter names kept,
//	                                                                 bare parameters (no '=') replaced
//
// When a value cannot be parsed confidently, the remainder is replaced as a
// whole: the rules err toward hiding more.
type Redactor struct {
	disabled bool
	extra    []string
}

// NewRedactor returns a Redactor for the default headers plus extra header
// names (case-insensitive). disabled turns all redaction off (extra is then
// ignored).
func NewRedactor(extra []string, disabled bool) *Redactor {
	r := &Redactor{disabled: disabled}
	for _, name := range extra {
		name = strings.TrimSpace(name)
		if name != "" {
			r.extra = append(r.extra, name)
		}
	}
	return r
}

// Disabled reports whether the redactor leaves values untouched.
func (r *Redactor) Disabled() bool { return r != nil && r.disabled }

// Redact returns value as it will be written for a header called name.
func (r *Redactor) Redact(name, value string) string {
	return string(appendRedacted(nil, r.kind(name), value, false))
}

// RedactURI returns a request target as it will be written in uri_path.
func (r *Redactor) RedactURI(uri string) string {
	if r.Disabled() {
		return uri
	}
	return string(appendURIRedacted(nil, uri, false))
}

type redactKind uint8

const (
	redactNone redactKind = iota
	redactWhole
	redactSetCookie
	redactCookie
	redactAuthorization
	redactChallenge
)

// kind returns the redaction rule for a header name.
func (r *Redactor) kind(name string) redactKind {
	if r.Disabled() {
		return redactNone
	}
	if k := defaultKind(name); k != redactNone {
		return k
	}
	if r != nil {
		for _, x := range r.extra {
			if len(x) == len(name) && strings.EqualFold(x, name) {
				return redactWhole
			}
		}
	}
	return redactNone
}

// defaultKind holds the default list of redacted headers.
func defaultKind(name string) redactKind {
	eq := func(s string) bool { return len(name) == len(s) && strings.EqualFold(name, s) }
	switch len(name) {
	case len("Cookie"):
		if eq("Cookie") {
			return redactCookie
		}
	case len("Set-Cookie"):
		if eq("Set-Cookie") {
			return redactSetCookie
		}
	case len("Authorization"):
		if eq("Authorization") {
			return redactAuthorization
		}
	case len("Proxy-Authorization"):
		if eq("Proxy-Authorization") {
			return redactAuthorization
		}
	case len("Proxy-Authenticate"):
		if eq("Proxy-Authenticate") {
			return redactChallenge
		}
	case len("WWW-Authenticate"):
		if eq("WWW-Authenticate") {
			return redactChallenge
		}
	case len("X-Api-Key"):
		if eq("X-Api-Key") {
			return redactWhole
		}
	}
	return redactNone
}

// appendPiece appends s, JSON-escaped when esc is set.
func appendPiece(dst []byte, s string, esc bool) []byte {
	if esc {
		return appendEscaped(dst, s)
	}
	return append(dst, s...)
}

// appendRedacted appends value redacted according to kind.
func appendRedacted(dst []byte, kind redactKind, value string, esc bool) []byte {
	switch kind {
	case redactNone:
		return appendPiece(dst, value, esc)
	case redactSetCookie:
		return appendSetCookieRedacted(dst, value, esc)
	case redactCookie:
		return appendCookieRedacted(dst, value, esc)
	case redactAuthorization:
		return appendAuthorizationRedacted(dst, value, esc)
	case redactChallenge:
		return appendChallengeRedacted(dst, value, esc)
	default:
		return append(dst, RedactedMarker...)
	}
}

// appendSetCookieRedacted keeps the cookie name and the attributes.
func appendSetCookieRedacted(dst []byte, v string, esc bool) []byte {
	pair, rest := v, ""
	if i := strings.IndexByte(v, ';'); i >= 0 {
		pair, rest = v[:i], v[i:]
	}
	if i := strings.IndexByte(pair, '='); i >= 0 {
		dst = appendPiece(dst, pair[:i+1], esc)
	}
	dst = append(dst, RedactedMarker...)
	return appendPiece(dst, rest, esc)
}

// appendCookieRedacted keeps the cookie names.
func appendCookieRedacted(dst []byte, v string, esc bool) []byte {
	n := 0
	for v != "" {
		var pair string
		if i := strings.IndexByte(v, ';'); i >= 0 {
			pair, v = v[:i], v[i+1:]
		} else {
			pair, v = v, ""
		}
		pair = strings.Trim(pair, " \t")
		if pair == "" {
			continue
		}
		if n > 0 {
			dst = append(dst, "; "...)
		}
		n++
		if i := strings.IndexByte(pair, '='); i >= 0 {
			dst = appendPiece(dst, pair[:i+1], esc)
		}
		dst = append(dst, RedactedMarker...)
	}
	return dst
}

// appendAuthorizationRedacted keeps the scheme of "scheme credentials".
func appendAuthorizationRedacted(dst []byte, v string, esc bool) []byte {
	v = strings.TrimLeft(v, " \t")
	i := strings.IndexAny(v, " \t")
	if i > 0 && isToken(v[:i]) && strings.Trim(v[i:], " \t") != "" {
		dst = append(dst, v[:i]...) // a token needs no escaping
		dst = append(dst, ' ')
	}
	return append(dst, RedactedMarker...)
}

// appendChallengeRedacted keeps auth schemes and parameter names of
// WWW-Authenticate / Proxy-Authenticate challenges (RFC 9110 11.6.1) and
// replaces parameter values and token68 data.
func appendChallengeRedacted(dst []byte, v string, esc bool) []byte {
	const (
		prevNone = iota
		prevScheme
		prevParam
	)
	prev := prevNone
	i, n := 0, len(v)
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' }
	for {
		comma := false
		for i < n && (isSpace(v[i]) || v[i] == ',') {
			if v[i] == ',' {
				comma = true
			}
			i++
		}
		if i >= n {
			return dst
		}
		switch {
		case prev == prevNone:
		case comma:
			dst = append(dst, ", "...)
		default:
			dst = append(dst, ' ')
		}
		start := i
		for i < n && (isTokenByte(v[i]) || v[i] == '/') {
			i++
		}
		word := v[start:i]
		if word == "" {
			// Unexpected character: hide the rest.
			return append(dst, RedactedMarker...)
		}
		j := i
		for j < n && isSpace(v[j]) {
			j++
		}
		if j < n && v[j] == '=' {
			k := j + 1
			for k < n && isSpace(v[k]) {
				k++
			}
			if k < n && v[k] != ',' && v[k] != '=' && isToken(word) {
				// auth-param: name = ( token / quoted-string )
				dst = append(dst, word...)
				dst = append(dst, '=')
				dst = append(dst, RedactedMarker...)
				i = skipParamValue(v, k)
				prev = prevParam
				continue
			}
			// token68 with '=' padding, or an ambiguous "word=": hide it.
			for j < n && (v[j] == '=' || isSpace(v[j])) {
				j++
			}
			i = j
			dst = append(dst, RedactedMarker...)
			prev = prevParam
			continue
		}
		if prev == prevNone || comma {
			if isToken(word) {
				dst = append(dst, word...)
				prev = prevScheme
				continue
			}
		}
		// token68 after a scheme, or a stray word: hide it.
		dst = append(dst, RedactedMarker...)
		prev = prevParam
	}
}

// skipParamValue returns the index after the parameter value starting at i
// (a quoted-string or a token).
func skipParamValue(v string, i int) int {
	n := len(v)
	if i < n && v[i] == '"' {
		i++
		for i < n {
			switch v[i] {
			case '\\':
				i += 2
			case '"':
				return i + 1
			default:
				i++
			}
		}
		return n
	}
	for i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t' {
		i++
	}
	return i
}

// appendURI writes a request target, query values redacted unless disabled.
func (r *Redactor) appendURI(dst []byte, uri string) []byte {
	if r.Disabled() {
		return appendEscaped(dst, uri)
	}
	return appendURIRedacted(dst, uri, true)
}

// appendURIRedacted keeps the path and the query parameter names.
func appendURIRedacted(dst []byte, uri string, esc bool) []byte {
	q := strings.IndexByte(uri, '?')
	if q < 0 {
		return appendPiece(dst, uri, esc)
	}
	dst = appendPiece(dst, uri[:q+1], esc)
	query := uri[q+1:]
	first := true
	for {
		var p string
		i := strings.IndexByte(query, '&')
		if i >= 0 {
			p, query = query[:i], query[i+1:]
		} else {
			p = query
		}
		if !first {
			dst = append(dst, '&')
		}
		first = false
		if p != "" {
			if eq := strings.IndexByte(p, '='); eq >= 0 {
				dst = appendPiece(dst, p[:eq+1], esc)
			}
			dst = append(dst, RedactedMarker...)
		}
		if i < 0 {
			return dst
		}
	}
}
