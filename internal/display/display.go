// Package display writes values that come from outside boxtap (container
// names and labels, annotations, paths, runtime answers) into its own
// messages on stderr and in the hook log, so that no value can forge a line
// or drive the terminal.
package display

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Quote returns s as it is when it is plainly readable: valid UTF-8, not
// empty, only printable characters other than the space (unicode.IsPrint),
// and not starting with '"'. Otherwise it returns s as a Go string literal
// (strconv.Quote), whose escapes show control characters, newlines, ANSI
// escapes, invalid bytes and invisible format characters instead of
// sending them.
//
// The result never holds a control or format character, so it cannot end a
// line or move the cursor. It round-trips: a result starting with '"'
// unquotes (strconv.Unquote) to s, any other result is s.
func Quote(s string) string {
	if plain(s) {
		return s
	}
	return strconv.Quote(s)
}

// plain reports whether s may be written without quotes.
func plain(s string) bool {
	if s == "" || s[0] == '"' || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == ' ' || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
