package display

import (
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	cases := []struct{ in, want string }{
		{"web", "web"},
		{"api/v1", "api/v1"},
		{"café-1", "café-1"},
		{"", `""`},
		{"evil\nboxtap: 0 events", `"evil\nboxtap: 0 events"`},
		{"red\x1b[31mname", `"red\x1b[31mname"`},
		{"a b", `"a b"`},
		{`"quoted"`, `"\"quoted\""`},
		{"bad\xffbyte", `"bad\xffbyte"`},
		{"cr\rreturn", `"cr\rreturn"`},
		{"rtl\u202eoverride", `"rtl\u202eoverride"`},
		{"c1\u009bcsi", `"c1\u009bcsi"`},
		{"nbsp\u00a0", `"nbsp\u00a0"`},
		{"tab\tname", `"tab\tname"`},
	}
	for _, tc := range cases {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// FuzzQuote: whatever the value, the result holds no control, format or
// other non-printable character (so no newline and no ANSI escape), is
// valid UTF-8, and gives the value back.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "web", "a\nb", "\x1b[2J", "\xff", `"x"`, "\u2028", "\u202e", "\x00", "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Quote(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Quote(%q) = %q is not valid UTF-8", s, out)
		}
		for _, r := range out {
			if r != ' ' && !unicode.IsPrint(r) {
				t.Fatalf("Quote(%q) = %q holds %U", s, out, r)
			}
		}
		if strings.ContainsAny(out, "\n\r\x1b") {
			t.Fatalf("Quote(%q) = %q holds a line end or an escape", s, out)
		}
		if strings.HasPrefix(out, `"`) {
			back, err := strconv.Unquote(out)
			if err != nil || back != s {
				t.Fatalf("Quote(%q) = %s unquotes to %q, %v", s, out, back, err)
			}
		} else if out != s {
			t.Fatalf("Quote(%q) = %q changed an unquoted value", s, out)
		}
	})
}
