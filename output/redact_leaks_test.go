package output

import "testing"

// TestRedactionClosesKnownLeaks lists values a probe found in default output
// (issue 10, section 3), each with what must be written instead. Every row
// leaked before the rule that covers it existed.
func TestRedactionClosesKnownLeaks(t *testing.T) {
	cases := []struct {
		what, name, value, want string
	}{
		// A peer that accepts whitespace before the colon reads these as
		// the credential headers they spell: the value is hidden whole.
		{"space before colon", "Authorization ", "Bearer S1", "<redacted>"},
		{"tab before colon", "X-Api-Key\t", "S2", "<redacted>"},
		{"other non-token name", "Author ization", "S3", "<redacted>"},

		{"X-Auth-Token", "X-Auth-Token", "S4", "<redacted>"},
		{"Private-Token", "Private-Token", "S5", "<redacted>"},
		{"X-Amz-Security-Token", "X-Amz-Security-Token", "S6", "<redacted>"},
		{"Api-Key", "Api-Key", "S7", "<redacted>"},
		{"X-Goog-Api-Key", "x-goog-api-key", "S8", "<redacted>"},
		{"X-Vault-Token", "X-Vault-Token", "S9", "<redacted>"},
		{"X-CSRF-Token", "X-CSRF-Token", "S10", "<redacted>"},

		{"Set-Cookie attribute without space", "Set-Cookie", "sid=abc;S11", "sid=<redacted>; <redacted>"},
		{"Set-Cookie unknown attribute", "Set-Cookie", "sid=abc; Path=/; S12=x; Secure", "sid=<redacted>; Path=/; <redacted>; Secure"},
		{"Set-Cookie folded second cookie in Expires", "Set-Cookie", "a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT, b=S13", "a=<redacted>; Expires=<redacted>"},
		{"Set-Cookie path with a second cookie", "Set-Cookie", "a=1; Path=/, b=S14", "a=<redacted>; Path=<redacted>"},
		{"Set-Cookie flag with a value", "Set-Cookie", "a=1; Secure=S15", "a=<redacted>; Secure=<redacted>"},
		{"Set-Cookie known attributes kept", "Set-Cookie", "a=1; expires=Tue, 02-Apr-2024 18:04:36 GMT;Max-Age=-1;Domain=ex.test;SameSite=Lax;HttpOnly",
			"a=<redacted>; expires=Tue, 02-Apr-2024 18:04:36 GMT; Max-Age=-1; Domain=ex.test; SameSite=Lax; HttpOnly"},

		{"Location query", "Location", "https://app.test/cb?code=S16&state=S17", "https://app.test/cb?code=<redacted>&state=<redacted>"},
		{"Location fragment", "Location", "https://app.test/cb#access_token=S18&token_type=bearer", "https://app.test/cb#access_token=<redacted>&token_type=<redacted>"},
		{"Location userinfo", "Location", "http://u:S19@host.test:8080/x", "http://<redacted>@host.test:8080/x"},
		{"Location path parameter", "Location", "/app;jsessionid=S20", "/app;jsessionid=<redacted>"},
		{"Referer query and fragment", "Referer", "https://a.test/p?x=S21#S22", "https://a.test/p?x=<redacted>#<redacted>"},
		{"Content-Location query", "content-location", "/doc?sig=S23", "/doc?sig=<redacted>"},
	}
	def := NewRedactor(nil, false)
	for _, tc := range cases {
		for _, r := range []*Redactor{nil, def} {
			got := r.Redact(tc.name, tc.value)
			if got != tc.want {
				t.Errorf("%s: Redact(%q, %q) = %q, want %q", tc.what, tc.name, tc.value, got, tc.want)
			}
		}
		if got := NewRedactor(nil, true).Redact(tc.name, tc.value); got != tc.value {
			t.Errorf("%s: with redaction off, Redact(%q, %q) = %q, want the value", tc.what, tc.name, tc.value, got)
		}
	}
}

// TestRedactURIClosesKnownLeaks: the request target (uri_path) hides
// userinfo, path parameters, query and fragment values.
func TestRedactURIClosesKnownLeaks(t *testing.T) {
	cases := []struct{ in, want string }{
		{"http://user:S1@host.test/", "http://<redacted>@host.test/"},
		{"http://user@host.test/p?q=S2", "http://<redacted>@host.test/p?q=<redacted>"},
		{"HTTP://a:b@c:S3@host.test/", "HTTP://<redacted>@host.test/"},
		{"//user:S4@host.test/x", "//<redacted>@host.test/x"},
		{"http:\\\\user:S5@host.test/", "http:\\\\<redacted>@host.test/"},
		{"http:user:S6@host.test/", "<redacted>@host.test/"},
		{"user:S7@host.test:443", "<redacted>@host.test:443"},
		{"/app;jsessionid=S8", "/app;jsessionid=<redacted>"},
		{"/app;jsessionid=S9/next;S10?x=S11", "/app;jsessionid=<redacted>/next;<redacted>?x=<redacted>"},
		{"/a;k=S12;j=S13/b", "/a;k=<redacted>;j=<redacted>/b"},
		{"/cb#access_token=S14", "/cb#access_token=<redacted>"},
		{"/cb?x=1#S15", "/cb?x=<redacted>#<redacted>"},
		{"/cb#a?b=S16", "/cb#a?b=<redacted>"},
		// Kept as they are: nothing secret in them.
		{"/@alice/posts", "/@alice/posts"},
		{"http://host.test/p@q", "http://host.test/p@q"},
		{"host.test:443", "host.test:443"},
		{"*", "*"},
	}
	r := NewRedactor(nil, false)
	for _, tc := range cases {
		got := r.RedactURI(tc.in)
		if got != tc.want {
			t.Errorf("RedactURI(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestSetCookieRedactionDoesNotAllocate: checking attribute values
// (Expires dates included) stays off the heap like the rest of encoding.
func TestSetCookieRedactionDoesNotAllocate(t *testing.T) {
	v := "a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Path=/; Domain=ex.test; Max-Age=5; SameSite=Strict; Secure; HttpOnly; odd=1"
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		buf = appendRedacted(buf[:0], redactSetCookie, v, true)
	})
	if allocs != 0 {
		t.Errorf("Set-Cookie redaction allocates %.1f times, want 0", allocs)
	}
}
