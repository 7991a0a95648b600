package output

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"

	"github.com/aquasecurity/tracee/types/trace"
)

func TestRedactTable(t *testing.T) {
	def := NewRedactor(nil, false)
	extra := NewRedactor([]string{"X-Tenant", " x-internal "}, false)
	off := NewRedactor([]string{"X-Tenant"}, true)
	var nilR *Redactor
	cases := []struct {
		r           *Redactor
		name, value string
		want        string
	}{
		{def, "Set-Cookie", "session_id=abcdef123456; Path=/; Secure; HttpOnly; SameSite=Lax", "session_id=<redacted>; Path=/; Secure; HttpOnly; SameSite=Lax"},
		{def, "set-cookie", "NID=511=fhw31; expires=Tue, 02-Apr-2024 18:04:36 GMT; path=/", "NID=<redacted>; expires=Tue, 02-Apr-2024 18:04:36 GMT; path=/"},
		{def, "Set-Cookie", "novalue", "<redacted>"},
		{def, "Set-Cookie", "justvalue; Path=/", "<redacted>; Path=/"},
		{def, "Set-Cookie", "a=; Max-Age=0", "a=<redacted>; Max-Age=0"},
		{def, "Cookie", "a=1; b=2", "a=<redacted>; b=<redacted>"},
		{def, "COOKIE", " a=1;b=x=y ;; lone ", "a=<redacted>; b=<redacted>; <redacted>"},
		{def, "Cookie", "", ""},
		{def, "Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "Bearer <redacted>"},
		{def, "authorization", "Basic dXNlcjpwYXNz", "Basic <redacted>"},
		{def, "Authorization", "rawtokenwithoutscheme", "<redacted>"},
		{def, "Authorization", "Bearer ", "<redacted>"},
		{def, "Authorization", "we\"ird secret", "<redacted>"},
		{def, "Proxy-Authorization", "Digest username=\"u\", response=\"abc\"", "Digest <redacted>"},
		{def, "WWW-Authenticate", `Bearer realm="example", error="invalid_token", error_description="The access token expired"`, "Bearer realm=<redacted>, error=<redacted>, error_description=<redacted>"},
		{def, "WWW-Authenticate", `Basic realm="a, b", charset=UTF-8`, "Basic realm=<redacted>, charset=<redacted>"},
		{def, "WWW-Authenticate", `Negotiate oRswGaADCgEAoxIEEAEAAABDh+CIwTbjqQAAAAA=`, "Negotiate <redacted>"},
		{def, "WWW-Authenticate", `Negotiate`, "Negotiate"},
		{def, "Proxy-Authenticate", `Basic realm="p", Bearer realm="q" , scope="s"`, "Basic realm=<redacted>, Bearer realm=<redacted>, scope=<redacted>"},
		{def, "WWW-Authenticate", `Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple"`, "Newauth realm=<redacted>, type=<redacted>, title=<redacted>, Basic realm=<redacted>"},
		{def, "WWW-Authenticate", `Bearer realm=`, "Bearer <redacted>"},
		{def, "WWW-Authenticate", `Bearer realm="x" stray`, "Bearer realm=<redacted> <redacted>"},
		{def, "WWW-Authenticate", `"quoted` + "\x00", "<redacted>"},
		{def, "X-Api-Key", "k-123", "<redacted>"},
		{def, "x-api-key", "", "<redacted>"},
		{def, "X-Tenant", "abc", "abc"},
		{def, "Content-Type", "text/html", "text/html"},
		{extra, "x-tenant", "abc", "<redacted>"},
		{extra, "X-Internal", "abc", "<redacted>"},
		{extra, "Cookie", "a=1", "a=<redacted>"},
		{nilR, "Set-Cookie", "a=1", "a=<redacted>"},
		{nilR, "X-Tenant", "abc", "abc"},
		{off, "Set-Cookie", "a=1", "a=1"},
		{off, "Authorization", "Bearer x", "Bearer x"},
		{off, "X-Tenant", "abc", "abc"},
	}
	for _, tc := range cases {
		if got := tc.r.Redact(tc.name, tc.value); got != tc.want {
			t.Errorf("Redact(%q, %q) = %q, want %q", tc.name, tc.value, got, tc.want)
		}
	}
}

func TestRedactURI(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/", "/"},
		{"/index.html", "/index.html"},
		{"/search?q=secret&page=2", "/search?q=<redacted>&page=<redacted>"},
		{"/p?flag", "/p?<redacted>"},
		{"/p?", "/p?"},
		{"/p?a=1&&b=", "/p?a=<redacted>&&b=<redacted>"},
		{"/p?a=1=2", "/p?a=<redacted>"},
	}
	r := NewRedactor(nil, false)
	for _, tc := range cases {
		if got := r.RedactURI(tc.in); got != tc.want {
			t.Errorf("RedactURI(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := NewRedactor(nil, true).RedactURI("/p?a=1"); got != "/p?a=1" {
		t.Errorf("disabled RedactURI = %q", got)
	}
}

// TestRedactionEncodedMatchesRedact checks that the JSON path (escaped) and
// Redact (raw) agree, including on characters that need escaping.
func TestRedactionEncodedMatchesRedact(t *testing.T) {
	r := NewRedactor([]string{"X-Extra"}, false)
	hs := []Header{
		{"Set-Cookie", "n\"ame=v; Path=/\x01; Comment=\xff"},
		{"Cookie", "a\\b=1; c\n=2"},
		{"Authorization", "Bearer tok\"en"},
		{"WWW-Authenticate", "Bearer realm=\"r\\\"x\", err=e"},
		{"X-Extra", "\"quoted\""},
		{"X-Plain", "val\"ue"},
	}
	e := &Event{Response: Response{Headers: hs}, Request: &Request{URIPath: "/a\"b?x=\"y\"&z"}}
	out := e.AppendJSONWith(nil, r)
	ev := decodeTrace(t, out)
	resp := ev.Args[1].Value.(trace.ProtoHTTPResponse)
	for _, h := range hs {
		want := sanitizeUTF8(r.Redact(h.Name, h.Value))
		if got := resp.Headers[textproto.CanonicalMIMEHeaderKey(h.Name)]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: encoded %q, Redact gives %q", h.Name, got, want)
		}
	}
	req := ev.Args[2].Value.(trace.ProtoHTTPRequest)
	if want := r.RedactURI("/a\"b?x=\"y\"&z"); req.URIPath != want {
		t.Errorf("uri_path %q, want %q", req.URIPath, want)
	}
}

func randomSecret(rng *rand.Rand) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
	b := make([]byte, 12+rng.IntN(20))
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return "Zq" + string(b) // never a substring of names, markers or attributes below
}

// TestRedactionHidesSecrets is a property test: for random secrets placed
// where each format keeps secrets, no secret substring reaches the output.
func TestRedactionHidesSecrets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	templates := []struct {
		name   string
		format func(s []string) string
	}{
		{"Set-Cookie", func(s []string) string { return "sid=" + s[0] + "; Path=/; Secure; HttpOnly" }},
		{"Set-Cookie", func(s []string) string { return s[0] }},
		{"Cookie", func(s []string) string { return "a=" + s[0] + "; b=" + s[1] + ";c=" + s[2] }},
		{"Cookie", func(s []string) string { return s[0] + "; x=" + s[1] }},
		{"Authorization", func(s []string) string { return "Bearer " + s[0] }},
		{"Authorization", func(s []string) string { return "Basic " + s[0] + " " + s[1] }},
		{"Authorization", func(s []string) string { return s[0] }},
		{"Proxy-Authorization", func(s []string) string { return `Digest username="` + s[0] + `", response="` + s[1] + `"` }},
		{"WWW-Authenticate", func(s []string) string {
			return `Bearer realm="` + s[0] + `", error=` + s[1] + `, Negotiate ` + s[2]
		}},
		{"Proxy-Authenticate", func(s []string) string { return "Negotiate " + s[0] + "==, Basic realm=" + s[1] }},
		{"WWW-Authenticate", func(s []string) string { return `Basic realm="a \"` + s[0] + `\" b", Mutual ` + s[1] + "=" }},
		{"X-Api-Key", func(s []string) string { return s[0] }},
		{"X-Custom-Secret", func(s []string) string { return s[0] + " " + s[1] }},
	}
	r := NewRedactor([]string{"x-custom-secret"}, false)
	buf := make([]byte, 0, 4096)
	for i := 0; i < 2000; i++ {
		secrets := []string{randomSecret(rng), randomSecret(rng), randomSecret(rng)}
		tpl := templates[i%len(templates)]
		value := tpl.format(secrets)
		uriSecret := randomSecret(rng)
		e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
		e.Response.Headers = append(e.Response.Headers, Header{tpl.name, value})
		e.Request.Headers = append(e.Request.Headers, Header{strings.ToLower(tpl.name), value})
		e.Request.URIPath = "/x?token=" + uriSecret + "&" + secrets[0]
		for _, rr := range []*Redactor{r, nil} {
			if rr == nil && tpl.name == "X-Custom-Secret" {
				continue // not a default header
			}
			buf = e.AppendJSONWith(buf[:0], rr)
			if !json.Valid(buf) {
				t.Fatalf("invalid JSON for %s: %q", tpl.name, value)
			}
			for _, s := range append(secrets, uriSecret) {
				if bytes.Contains(buf, []byte(s)) {
					t.Fatalf("secret %q of %s: %q leaked:\n%s", s, tpl.name, value, buf)
				}
			}
		}
	}
}

// FuzzRedact surrounds a secret with fuzzed text in each format's secret
// position. Property: when the surrounding text does not itself contain the
// secret, the redacted output does not either.
func FuzzRedact(f *testing.F) {
	f.Add("sid", "Path=/", "Bearer", "realm", "S3cretValue")
	f.Add("", "", "", "", "token68")
	f.Add("a b", "x=\"y", "Ne gotiate", "re\"alm", "sEcReT")
	f.Add("n", ";", "B", "p,", "abcdef==")
	f.Fuzz(func(t *testing.T, cookieName, attrs, scheme, param, secret string) {
		r := NewRedactor(nil, false)
		// Shape properties on arbitrary values.
		for _, v := range []string{attrs, cookieName, scheme + " " + param} {
			if out := r.Redact("WWW-Authenticate", v); strings.Contains(out, `"`) {
				t.Errorf("challenge %q -> %q keeps a quoted string", v, out)
			}
			if out := r.Redact("Authorization", v); out != RedactedMarker &&
				!(strings.HasSuffix(out, " "+RedactedMarker) && isToken(strings.TrimSuffix(out, " "+RedactedMarker))) {
				t.Errorf("authorization %q -> %q is not [scheme ]<redacted>", v, out)
			}
			if out := r.Redact("Cookie", v); out != "" {
				for _, p := range strings.Split(out, "; ") {
					if !strings.HasSuffix(p, RedactedMarker) {
						t.Errorf("cookie %q -> %q has a pair without marker", v, out)
					}
				}
			}
			if out := r.Redact("X-Api-Key", v); out != RedactedMarker {
				t.Errorf("x-api-key %q -> %q", v, out)
			}
		}

		if len(secret) < 6 || strings.ContainsAny(secret, " \t,;=\"\\") || strings.Contains(RedactedMarker, secret) {
			return
		}
		inputs := []struct{ name, value string }{
			{"Set-Cookie", strings.ReplaceAll(cookieName, ";", "") + "=" + secret + "; " + attrs},
			{"Cookie", strings.ReplaceAll(cookieName, ";", "") + "=" + secret + "; " + attrs},
			{"Authorization", scheme + " " + secret},
			{"X-Api-Key", attrs + secret},
		}
		if isToken(scheme) && isToken(param) {
			// Challenges keep every scheme, so a secret is only hidden
			// where the grammar puts a value: the fuzzed names must be
			// well-formed for the property to hold.
			inputs = append(inputs,
				struct{ name, value string }{"WWW-Authenticate", scheme + " " + param + `="` + secret + `"`},
				struct{ name, value string }{"WWW-Authenticate", scheme + " " + secret},
				struct{ name, value string }{"Proxy-Authenticate", scheme + " " + param + "=" + secret + ", " + attrs},
			)
		}
		for _, in := range inputs {
			out := r.Redact(in.name, in.value)
			rest := strings.Replace(in.value, secret, "", 1)
			if strings.Contains(rest, secret) || strings.Contains(strings.ToLower(in.name), strings.ToLower(secret)) {
				continue // the secret also appears where formats keep text
			}
			// Kept text (names, attributes, schemes) may join with the marker
			// or each other to spell the secret only if the secret is made of
			// their pieces; require the secret to be absent from the kept text.
			if strings.Contains(rest+RedactedMarker, secret) {
				continue
			}
			if strings.Contains(out, secret) {
				t.Errorf("%s: %q -> %q leaks %q", in.name, in.value, out, secret)
			}
			enc := appendRedacted(nil, r.kind(in.name), in.value, true)
			if !json.Valid(append(append([]byte{'"'}, enc...), '"')) {
				t.Errorf("%s: escaped output %q is not a valid JSON string body", in.name, enc)
			}
		}
	})
}
