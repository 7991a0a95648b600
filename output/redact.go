package output

import (
	"strings"
	"time"
)

// RedactedMarker replaces every secret value in the output.
const RedactedMarker = "<redacted>"

// Redactor decides which header values (and request target parts) are
// replaced by RedactedMarker when an event is encoded. A nil *Redactor
// applies the default rules, so secrets are hidden unless redaction is
// disabled explicitly with NewRedactor(nil, true). A Redactor is immutable
// and safe for concurrent use.
//
// Formats (names are matched case-insensitively):
//
//	Set-Cookie           name=<redacted>; Path=/; Secure; HttpOnly   cookie name and known attributes kept;
//	                     <redacted>; Path=/                          (cookie without a name)
//	                     a=<redacted>; <redacted>; Expires=<redacted> unknown attributes and attribute
//	                                                                 values of an unexpected shape replaced
//	Cookie               a=<redacted>; b=<redacted>                  names kept, pairs joined with "; "
//	Authorization,       Bearer <redacted>                           scheme kept
//	Proxy-Authorization  <redacted>                                  (a single word: may be a bare token)
//	WWW-Authenticate,    Bearer realm=<redacted>, error=<redacted>   schemes and parameter names kept
//	Proxy-Authenticate   Negotiate <redacted>                        token68 replaced
//	Location, Referer,   like uri_path below
//	Content-Location
//	secret-like names    <redacted>                                  whole value (see secretLikeName)
//	and extra names
//	names that are not   <redacted>                                  whole value: a lenient peer may read
//	RFC 9110 tokens                                                  "Authorization :" as Authorization
//	request uri_path     /p;jsessionid=<redacted>?user=<redacted>#access_token=<redacted>
//	                     http://<redacted>@host/                     path and parameter names kept;
//	                                                                 userinfo, path parameter, query and
//	                                                                 fragment values replaced
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
	redactURI
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

// defaultKind holds the default redaction rules for a header name.
func defaultKind(name string) redactKind {
	eq := func(s string) bool { return len(name) == len(s) && strings.EqualFold(name, s) }
	switch len(name) {
	case len("Cookie"):
		if eq("Cookie") {
			return redactCookie
		}
	case len("Referer"):
		if eq("Referer") {
			return redactURI
		}
	case len("Location"):
		if eq("Location") {
			return redactURI
		}
	case len("Set-Cookie"):
		if eq("Set-Cookie") {
			return redactSetCookie
		}
	case len("Authorization"):
		if eq("Authorization") {
			return redactAuthorization
		}
	case len("Content-Location"):
		if eq("Content-Location") {
			return redactURI
		}
		if eq("WWW-Authenticate") {
			return redactChallenge
		}
	case len("Proxy-Authorization"):
		if eq("Proxy-Authorization") {
			return redactAuthorization
		}
	case len("Proxy-Authenticate"):
		if eq("Proxy-Authenticate") {
			return redactChallenge
		}
	}
	if !isToken(name) || secretLikeName(name) {
		return redactWhole
	}
	return redactNone
}

// secretLikeName reports whether a header name contains, ignoring case,
// one of the words that mark a credential: token, secret, session,
// password, passwd, api-key, apikey, credential (X-Api-Key, Api-Key,
// X-Goog-Api-Key, X-Auth-Token, Private-Token, X-Amz-Security-Token,
// X-Vault-Token, X-CSRF-Token, X-Client-Secret, X-Session-Id, ...). It
// runs for every header name that is not in the well-known table, so it
// looks for a word only where its first letter is.
func secretLikeName(name string) bool {
	for i := 0; i < len(name); i++ {
		switch name[i] | 0x20 {
		case 't':
			if hasFoldAt(name, i, "token") {
				return true
			}
		case 's':
			if hasFoldAt(name, i, "secret") || hasFoldAt(name, i, "session") {
				return true
			}
		case 'p':
			if hasFoldAt(name, i, "password") || hasFoldAt(name, i, "passwd") {
				return true
			}
		case 'a':
			if hasFoldAt(name, i, "api-key") || hasFoldAt(name, i, "apikey") {
				return true
			}
		case 'c':
			if hasFoldAt(name, i, "credential") {
				return true
			}
		}
	}
	return false
}

// hasFoldAt reports whether s holds the lower-case ASCII word w at i,
// ignoring case.
func hasFoldAt(s string, i int, w string) bool {
	if len(s)-i < len(w) {
		return false
	}
	for j := 0; j < len(w); j++ {
		c := s[i+j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[j] {
			return false
		}
	}
	return true
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
	case redactURI:
		return appendURIRedacted(dst, value, esc)
	default:
		return append(dst, RedactedMarker...)
	}
}

// appendSetCookieRedacted keeps the cookie name and the attributes whose
// name is known (RFC 6265bis) and whose value has the expected shape.
// Anything else after a ';' may be part of the secret (a value that itself
// holds ';'): it is replaced.
func appendSetCookieRedacted(dst []byte, v string, esc bool) []byte {
	pair, rest := v, ""
	if i := strings.IndexByte(v, ';'); i >= 0 {
		pair, rest = v[:i], v[i+1:]
	}
	if i := strings.IndexByte(pair, '='); i >= 0 {
		dst = appendPiece(dst, pair[:i+1], esc)
	}
	dst = append(dst, RedactedMarker...)
	for rest != "" {
		var attr string
		if i := strings.IndexByte(rest, ';'); i >= 0 {
			attr, rest = rest[:i], rest[i+1:]
		} else {
			attr, rest = rest, ""
		}
		attr = strings.Trim(attr, " \t")
		if attr == "" {
			continue
		}
		dst = append(dst, "; "...)
		name, value, hasValue := strings.Cut(attr, "=")
		name = strings.TrimRight(name, " \t")
		check, known := cookieAttribute(name)
		switch {
		case !known:
			dst = append(dst, RedactedMarker...)
		case !hasValue && check == nil:
			dst = append(dst, name...) // a known name is a token
		case hasValue && check != nil && check(strings.TrimLeft(value, " \t")):
			dst = append(dst, name...)
			dst = append(dst, '=')
			dst = append(dst, strings.TrimLeft(value, " \t")...) // checked: plain ASCII
		default:
			dst = append(dst, name...)
			dst = append(dst, '=')
			dst = append(dst, RedactedMarker...)
		}
	}
	return dst
}

// cookieAttributes are the Set-Cookie attributes browsers know, with the
// check of their value (nil for a flag, which takes none).
var cookieAttributes = [...]struct {
	name  string
	check func(string) bool
}{
	{"Path", isCookiePath}, {"Domain", isCookieDomain}, {"Expires", isCookieDate}, {"Max-Age", isCookieMaxAge},
	{"Secure", nil}, {"HttpOnly", nil}, {"Partitioned", nil},
	{"SameSite", func(v string) bool { return oneOfFold(v, "Strict", "Lax", "None") }},
	{"Priority", func(v string) bool { return oneOfFold(v, "Low", "Medium", "High") }},
}

// cookieAttribute returns the value check of a known Set-Cookie attribute
// and whether name is one.
func cookieAttribute(name string) (check func(string) bool, known bool) {
	for _, a := range cookieAttributes {
		if strings.EqualFold(name, a.name) {
			return a.check, true
		}
	}
	return nil, false
}

func oneOfFold(v string, words ...string) bool {
	for _, w := range words {
		if strings.EqualFold(v, w) {
			return true
		}
	}
	return false
}

// isCookiePath accepts an absolute path of visible ASCII without ',' or '='
// (which would hint at a second cookie folded into the line).
func isCookiePath(v string) bool {
	if v == "" || v[0] != '/' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f || c == ',' || c == '=' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// isCookieDomain accepts a host name: letters, digits, '.' and '-'.
func isCookieDomain(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// isCookieMaxAge accepts an optionally negative decimal number.
func isCookieMaxAge(v string) bool {
	v = strings.TrimPrefix(v, "-")
	if v == "" || len(v) > 20 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

// cookieDateLayouts are the Expires formats servers send, in GMT (RFC 1123,
// the Netscape form with dashes, RFC 850, asctime). A date in another zone
// is hidden: rare, and parsing zone names allocates.
var cookieDateLayouts = [...]string{
	"Mon, 02 Jan 2006 15:04:05 GMT", "Mon, 02-Jan-2006 15:04:05 GMT", "Monday, 02-Jan-06 15:04:05 GMT", time.ANSIC,
}

// isCookieDate accepts a date in one of cookieDateLayouts.
func isCookieDate(v string) bool {
	for _, l := range cookieDateLayouts {
		if _, err := time.Parse(l, v); err == nil {
			return true
		}
	}
	return false
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

// appendURI writes a request target, redacted unless disabled.
func (r *Redactor) appendURI(dst []byte, uri string) []byte {
	if r.Disabled() {
		return appendEscaped(dst, uri)
	}
	return appendURIRedacted(dst, uri, true)
}

// appendURIRedacted keeps the scheme, host, path and parameter names of a
// URI (a request target, Location, Referer, ...) and replaces userinfo, path
// parameter values (";jsessionid=..."), query values and fragment values.
func appendURIRedacted(dst []byte, uri string, esc bool) []byte {
	head, frag, hasFrag := strings.Cut(uri, "#")
	path, query, hasQuery := strings.Cut(head, "?")
	dst = appendURIPathRedacted(dst, path, esc)
	if hasQuery {
		dst = append(dst, '?')
		dst = appendParamsRedacted(dst, query, '&', esc)
	}
	if hasFrag {
		dst = append(dst, '#')
		dst = appendParamsRedacted(dst, frag, '&', esc)
	}
	return dst
}

// appendURIPathRedacted writes the part of a URI before '?' and '#': the
// userinfo of an authority and the values of path parameters are replaced.
func appendURIPathRedacted(dst []byte, p string, esc bool) []byte {
	isSlash := func(c byte) bool { return c == '/' || c == '\\' }
	// Origin form ("/a/b") has no authority. Anything else may: absolute
	// form ("http://u:p@h/"), a network-path reference ("//u:p@h/"),
	// authority form ("u:p@h:443") or a sloppy "http:u:p@h". Browsers read
	// '\\' like '/' there.
	if p == "" || !isSlash(p[0]) || len(p) > 1 && isSlash(p[1]) {
		auth := schemeAndSlashes(p)
		end := auth
		for end < len(p) && !isSlash(p[end]) {
			end++
		}
		if at := strings.LastIndexByte(p[auth:end], '@'); at >= 0 {
			dst = appendPiece(dst, p[:auth], esc)
			dst = append(dst, RedactedMarker...)
			p = p[auth+at:]
		}
	}
	// Path parameters: "/a;k=v;flag/b" keeps "k=" and replaces v and flag
	// (a ';' in a host name is no less suspicious).
	for p != "" {
		semi := strings.IndexByte(p, ';')
		if semi < 0 {
			return appendPiece(dst, p, esc)
		}
		dst = appendPiece(dst, p[:semi+1], esc)
		p = p[semi+1:]
		end := 0
		for end < len(p) && !isSlash(p[end]) {
			end++
		}
		dst = appendParamsRedacted(dst, p[:end], ';', esc)
		p = p[end:]
	}
	return dst
}

// schemeAndSlashes returns the length of a leading "scheme:" followed by
// one or more slashes, or of leading slashes alone; 0 when p starts
// otherwise (then a "word:" may be a user name, not a scheme).
func schemeAndSlashes(p string) int {
	i := 0
	if p != "" && ('a' <= p[0]|0x20 && p[0]|0x20 <= 'z') {
		i = 1
		for i < len(p) && (isAlnum(p[i]) || p[i] == '+' || p[i] == '-' || p[i] == '.') {
			i++
		}
		if i >= len(p) || p[i] != ':' {
			i = 0
		} else {
			i++
		}
	}
	j := i
	for j < len(p) && (p[j] == '/' || p[j] == '\\') {
		j++
	}
	if j == i {
		return 0
	}
	return j
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// appendParamsRedacted writes sep-separated "name=value" parameters with
// their names kept and values replaced; a parameter without '=' is
// replaced whole.
func appendParamsRedacted(dst []byte, params string, sep byte, esc bool) []byte {
	first := true
	for {
		var p string
		i := strings.IndexByte(params, sep)
		if i >= 0 {
			p, params = params[:i], params[i+1:]
		} else {
			p = params
		}
		if !first {
			dst = append(dst, sep)
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
