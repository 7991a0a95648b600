package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The HTTPS cases measure boxtap --tls on nginx's HTTPS listener (Debian's
// nginx and the libssl.so.3 of the bench image), loaded by wrk over TLS
// with keep-alive: the plaintext is read by uprobes on SSL_read/SSL_write
// of the traced container's processes. The neighbour runs the same image,
// so it maps the very same libssl.so.3 file (one image layer), and must
// not pay for the uprobes (they are set per traced process).

// certDir is where the containers see the bench certificate.
const certDir = "/etc/nginx/tls"

// benchCertificate writes a self-signed certificate for 127.0.0.1 and its
// key into dir/tls, once, and returns that directory.
func benchCertificate(dir string) (string, error) {
	out := filepath.Join(dir, "tls")
	if _, err := os.Stat(filepath.Join(out, "key.pem")); err == nil {
		return out, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("bench certificate: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "boxtap-bench"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", fmt.Errorf("bench certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("bench certificate: %w", err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", fmt.Errorf("bench certificate: %w", err)
	}
	// nginx's workers run as nobody but read the key in the master (root).
	errs := errors.Join(
		os.WriteFile(filepath.Join(out, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644),
		os.WriteFile(filepath.Join(out, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	if errs != nil {
		return "", fmt.Errorf("bench certificate: %w", errs)
	}
	return out, nil
}

// httpsCases run each untraced baseline right before its traced run, so
// that each round's ratios compare neighbours in time.
func httpsCases(a, b *server) []benchCase {
	tls := []string{"--tls"}
	return []benchCase{
		{key: "https/untraced", srv: a, path: "/", tls: true},
		{key: "https/boxtap-tls", srv: a, path: "/", tls: true, tool: toolBoxtap, watched: a, toolArgs: tls},
		{key: "https-neighbour/untraced", srv: b, path: "/", tls: true},
		{key: "https-neighbour/boxtap-tls-on-a", srv: b, path: "/", tls: true, tool: toolBoxtap, watched: a, toolArgs: tls},
	}
}

func httpsRows(r *results) []row {
	var out []row
	if base, traced := r.of("https/untraced"), r.of("https/boxtap-tls"); traced != nil {
		out = append(out, judgedAll(r, []row{
			{"HTTPS (--tls): req/s untraced", each(base, rps), "%.0f", "", nil, nil},
			{"HTTPS (--tls): req/s traced", each(traced, rps), "%.0f", "", nil, nil},
			{"HTTPS (--tls): throughput ratio traced/untraced", ratios(traced, base, rps), "%.3f", "", nil, nil},
			{"HTTPS (--tls): completeness distinct exchanges/responses", each(traced, completeness), "%.6f", "1.0 exactly", allEqual(1), nil},
			{"HTTPS (--tls): lost records", each(traced, lost), "%.0f", "", nil, nil},
			{"HTTPS (--tls): boxtap process CPU s per 100k responses", each(traced, cpuPer100k), "%.3f", "", nil, nil},
			{"HTTPS (--tls): eBPF programs' CPU s per 100k responses", each(withBPF(traced), bpfPer100k), "%.3f", "", nil, nil},
		}, "https/untraced", "https/boxtap-tls")...)
	}
	if nb, nt := r.of("https-neighbour/untraced"), r.of("https-neighbour/boxtap-tls-on-a"); nt != nil {
		out = append(out, judgedAll(r, []row{
			{"HTTPS neighbour (same libssl file): req/s, nothing traced", each(nb, rps), "%.0f", "", nil, nil},
			{"HTTPS neighbour: req/s while A is traced with --tls", each(nt, rps), "%.0f", "", nil, nil},
			{"HTTPS neighbour: throughput ratio", ratios(nt, nb, rps), "%.3f", ">= 0.99", atLeast(0.99), nil},
		}, "https-neighbour/untraced", "https-neighbour/boxtap-tls-on-a")...)
	}
	return out
}
