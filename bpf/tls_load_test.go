//go:build 386 || amd64

package bpf

import (
	"os"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
)

// TestIntegrationTLSProgramsLoadAndAttachToLibssl proves the kernel accepts
// the TLS programs (uprobes and tp_btf sys_enter) and that every OpenSSL 3
// symbol boxtap probes is found in Debian's libssl.so.3.
func TestIntegrationTLSProgramsLoadAndAttachToLibssl(t *testing.T) {
	itest.RequireBPF(t)
	const lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
	_, err := os.Stat(lib)
	itest.Require(t, err == nil, "needs Debian's libssl3 (apt-get install libssl3): %v", err)
	c, err := LoadTLS()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	links, err := c.AttachOpenSSL(lib, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		l.Close()
	}
	// Four calls with entry and return probes, and SSL_free.
	if len(links) != 9 {
		t.Fatalf("attached %d probes, want 9 (SSL_write, SSL_read, SSL_write_ex, SSL_read_ex with returns, SSL_free)", len(links))
	}
}
