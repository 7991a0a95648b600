package output

import "testing"

// TestChallengeParamsWithSpaceAroundEquals: RFC 9110 11.2 allows whitespace around the
// "=" of an auth-param (BWS). The parameter name stays readable and its value is hidden,
// as without the spaces; a parameter without a value hides the rest.
func TestChallengeParamsWithSpaceAroundEquals(t *testing.T) {
	r := NewRedactor(nil, false)
	for _, tc := range []struct{ in, want string }{
		{`Bearer realm = "example"`, "Bearer realm=<redacted>"},
		{"Bearer realm=  \"x\", error =\tinvalid", "Bearer realm=<redacted>, error=<redacted>"},
		{`Bearer realm = `, "Bearer <redacted>"},
	} {
		if got := r.Redact("WWW-Authenticate", tc.in); got != tc.want {
			t.Errorf("Redact(WWW-Authenticate, %q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
