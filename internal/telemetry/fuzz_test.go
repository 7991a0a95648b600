package telemetry

import (
	"strings"
	"testing"
)

// FuzzParseHeaders: any --otlp-header value is accepted as KEY=VALUE or
// refused with an error, never a panic; an accepted key is never empty.
func FuzzParseHeaders(f *testing.F) {
	for _, s := range []string{"a=b", "authorization=Bearer x=y", "=x", "novalue", " k = v ", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		m, err := parseHeaders([]string{h})
		if err != nil {
			return
		}
		for k := range m {
			if k == "" {
				t.Fatalf("%q gave an empty key", h)
			}
		}
	})
}

// FuzzURLPath: the span's url.path never carries a query or fragment.
func FuzzURLPath(f *testing.F) {
	for _, s := range []string{"/a?b=c", "http://h/p?q#f", "https://h", "*", "", "/x#y?z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		if p := URLPath(uri); strings.ContainsAny(p, "?#") {
			t.Fatalf("URLPath(%q) = %q keeps a query or fragment", uri, p)
		}
	})
}
