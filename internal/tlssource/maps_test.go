package tlssource

import (
	"slices"
	"strings"
	"testing"
)

func TestOpenSSLPaths(t *testing.T) {
	for _, tc := range []struct {
		name, maps string
		want       []string
	}{
		{"debian openssl 3 once per file", `7f00-7f01 r--p 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f01-7f02 r-xp 00001000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f03-7f04 r-xp 00001000 08:01 124 /usr/lib/x86_64-linux-gnu/libcrypto.so.3`, []string{"/usr/lib/x86_64-linux-gnu/libssl.so.3"}},
		{"openssl 1.1 and a path with spaces", `7f00-7f01 r-xp 00000000 08:01 1 /opt/my app/libssl.so.1.1`, []string{"/opt/my app/libssl.so.1.1"}},
		{"deleted file left out", `7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libssl.so.3 (deleted)`, nil},
		{"anonymous and special mappings", `7f00-7f01 rw-p 00000000 00:00 0
7ffd-7ffe rw-p 00000000 00:00 0                          [stack]`, nil},
		{"libssl3.so of NSS is not OpenSSL", `7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libssl3.so`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := OpenSSLPaths(strings.NewReader(tc.maps))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzOpenSSLPaths(f *testing.F) {
	f.Add("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libssl.so.3\n")
	f.Add("7f00-7f01 r-xp 00000000 08:01 1 /a b/libssl.so.3 (deleted)\n")
	f.Fuzz(func(t *testing.T, maps string) {
		got, err := OpenSSLPaths(strings.NewReader(maps))
		if err != nil {
			return
		}
		for _, p := range got {
			if !strings.HasPrefix(p, "/") || !strings.Contains(p, "libssl.so") || strings.Contains(p, "\n") {
				t.Fatalf("bad path %q", p)
			}
		}
	})
}
