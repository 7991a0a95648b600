package tlssource

import (
	"bytes"
	"os"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
)

// DefinesOpenSSL tells an ELF file that carries SSL_read and SSL_write
// (libssl itself, as a static executable would) from one that only imports
// them (nginx) or has none (this test's Go binary), and from non-ELF data.
func TestDefinesOpenSSL(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path string
		want bool
	}{
		{"/usr/lib/x86_64-linux-gnu/libssl.so.3", true},
		{"/usr/sbin/nginx", false},
		{self, false},
		{"/etc/passwd", false},
	} {
		f, err := os.Open(tt.path)
		itest.Require(t, err == nil, "needs %s (Debian's libssl3 and nginx): %v", tt.path, err)
		if got := DefinesOpenSSL(f); got != tt.want {
			t.Errorf("DefinesOpenSSL(%s) = %t, want %t", tt.path, got, tt.want)
		}
		f.Close()
	}
}

// FuzzDefinesOpenSSL: any bytes give an answer, never a panic.
func FuzzDefinesOpenSSL(f *testing.F) {
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Add([]byte{})
	if b, err := os.ReadFile("/usr/bin/true"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = DefinesOpenSSL(bytes.NewReader(data))
	})
}
