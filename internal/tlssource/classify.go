package tlssource

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// What a traced process's TLS is, as far as boxtap can tell, and whether
// boxtap reads it. The tests are heuristics, in this order:
//
//  1. The executable is a Go program (it has Go build information): its
//     crypto/tls is read when .gopclntab has (*Conn).Read and Write (see
//     FindGoTLS); a Go program without them uses no Go TLS.
//  2. The executable's own symbol table (.symtab or .dynsym) has SSL_read
//     and SSL_write: OpenSSL or BoringSSL linked in with its symbols,
//     readable through the OpenSSL probes.
//  3. A mapped library names a TLS stack: libssl.so* is OpenSSL (readable);
//     libgnutls, libnss3/libssl3, libwolfssl, libmbedtls, librustls, and a
//     Java VM (libjvm: JSSE) are not.
//  4. The executable's read-only data holds a TLS library's marker string:
//     "BoringSSL" (its version text), "rustls" (its source paths, kept in
//     panic messages), "ssl/ssl_lib.c" or "OpenSSL 1."/"OpenSSL 3."
//     (OpenSSL's source paths in its error records, its version text),
//     "wolfSSL", "mbed TLS"; failing those, a TLS key-schedule label every
//     TLS 1.3 ("tls13 ") or TLS 1.2 ("master secret") implementation holds:
//     an unknown TLS library. With no symbol (test 2 failed) these are TLS
//     boxtap cannot read. A Go program is only searched for the named
//     libraries: its crypto/tls code holds the labels even when unused.
//
// A program whose TLS nothing here recognises (its own TLS code, say) is
// missed silently; a program that merely carries a marker string without
// using TLS is reported anyway. README lists both limits.

// Verdict is what one executable's TLS is.
type Verdict struct {
	// Unreadable is set when the program has TLS boxtap cannot read; it
	// says what, for the "cannot read" line.
	Unreadable string
	// Go is set for a Go program whose crypto/tls boxtap reads.
	Go *GoTLS
	// StaticOpenSSL is set for an executable that defines SSL_read and
	// SSL_write itself (OpenSSL or BoringSSL linked in with symbols): the
	// OpenSSL probes go on the executable.
	StaticOpenSSL bool
}

// unreadableLibs are mapped libraries whose TLS boxtap does not read, by
// file name prefix.
var unreadableLibs = []struct{ prefix, what string }{
	{"libgnutls.so", "GnuTLS (libgnutls)"},
	{"libnss3.so", "NSS (libnss3)"},
	{"libssl3.so", "NSS (libssl3)"},
	{"libwolfssl.so", "wolfSSL (libwolfssl)"},
	{"libmbedtls.so", "mbed TLS (libmbedtls)"},
	{"librustls", "rustls (librustls)"},
	{"libjvm.so", "a Java VM (JSSE)"},
}

// staticMarkers are strings that TLS libraries compile into a program,
// first match wins.
var staticMarkers = []struct {
	marker, what string
	generic      bool // a TLS protocol label, not a library's name
}{
	{"BoringSSL", "statically linked BoringSSL without symbols", false},
	{"rustls", "rustls", false},
	{"ssl/ssl_lib.c", "statically linked OpenSSL without symbols", false},
	{"OpenSSL 3.", "statically linked OpenSSL without symbols", false},
	{"OpenSSL 1.", "statically linked OpenSSL without symbols", false},
	{"wolfSSL", "statically linked wolfSSL", false},
	{"mbed TLS", "statically linked mbed TLS", false},
	{"tls13 ", "a statically linked TLS library boxtap does not know", true},
	{"master secret", "a statically linked TLS library boxtap does not know", true},
}

// maxScan bounds how much of an executable the marker search reads.
const maxScan = 512 << 20

// Classify tells what TLS the executable exe uses, given the paths of the
// files the process has mapped (from /proc/PID/maps). An error means exe
// could not be read as a program; the verdict is then empty.
// The file comes from a container: a malformed one must not crash boxtap
// (debug/gosym panics on some corrupt tables), so a panic is an error.
func Classify(exe io.ReaderAt, libs []string) (v Verdict, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = Verdict{}, fmt.Errorf("malformed executable: %v", r)
		}
	}()
	g, err := FindGoTLS(exe)
	var ue *UnreadableGoError
	isGo := true
	switch {
	case err == nil:
		return Verdict{Go: g}, nil
	case errors.As(err, &ue):
		return Verdict{Unreadable: ue.Reason}, nil
	case errors.Is(err, ErrNoCryptoTLS):
		// A Go program without crypto/tls may still load a library.
	case errors.Is(err, ErrNotGo):
		isGo = false
	default:
		return Verdict{Unreadable: "Go crypto/tls: " + err.Error()}, nil
	}
	f, err := elf.NewFile(exe)
	if err != nil {
		return Verdict{}, err
	}
	if definesOpenSSL(f) {
		return Verdict{StaticOpenSSL: true}, nil
	}
	opensslLib := false
	for _, l := range libs {
		base := filepath.Base(l)
		if strings.HasPrefix(base, "libssl.so") {
			opensslLib = true
		}
		for _, u := range unreadableLibs {
			if strings.HasPrefix(base, u.prefix) {
				return Verdict{Unreadable: u.what}, nil
			}
		}
	}
	if opensslLib {
		return Verdict{}, nil
	}
	what, err := findMarker(f, !isGo)
	return Verdict{Unreadable: what}, err
}

// findMarker searches the executable's read-only data (every section of
// file data when there are no section headers) for a TLS library's marker.
func findMarker(f *elf.File, generic bool) (string, error) {
	var readers []io.Reader
	for _, s := range f.Sections {
		if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_ALLOC != 0 && s.Flags&elf.SHF_EXECINSTR == 0 {
			readers = append(readers, s.Open())
		}
	}
	if len(readers) == 0 {
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD {
				readers = append(readers, p.Open())
			}
		}
	}
	return scanMarkers(io.LimitReader(io.MultiReader(readers...), maxScan), generic)
}

// scanMarkers returns the description of the first marker (in
// staticMarkers' order) found in r, or ""; the protocol labels count only
// when generic is set.
func scanMarkers(r io.Reader, generic bool) (string, error) {
	longest := 0
	for _, m := range staticMarkers {
		longest = max(longest, len(m.marker))
	}
	found := make([]bool, len(staticMarkers))
	br := bufio.NewReaderSize(r, 1<<16)
	buf := make([]byte, 0, 1<<20)
	chunk := make([]byte, 1<<20)
	for {
		n, err := io.ReadFull(br, chunk)
		buf = append(buf, chunk[:n]...)
		for i, m := range staticMarkers {
			if !found[i] && bytes.Contains(buf, []byte(m.marker)) {
				found[i] = true
			}
		}
		if err != nil {
			if err != io.EOF && err != io.ErrUnexpectedEOF {
				return "", err
			}
			break
		}
		// Keep a tail so a marker across two chunks is found.
		keep := min(longest-1, len(buf))
		buf = append(buf[:0], buf[len(buf)-keep:]...)
	}
	for i, m := range staticMarkers {
		if found[i] && (generic || !m.generic) {
			return m.what, nil
		}
	}
	return "", nil
}

// mappedFiles returns, once each, the files a /proc/PID/maps lists.
func mappedFiles(maps []byte) []string {
	var paths []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(maps))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if p, ok := mappedPath(sc.Text()); ok && !seen[p] {
			seen[p] = true
			paths = append(paths, p)
		}
	}
	return paths
}
