package tlssource

import (
	"bufio"
	"bytes"
	"context"
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// tlsappBuilds builds internal/tlsapp (Go crypto/tls) with toolchain (""
// for the installed one), with symbols and DWARF, and stripped.
func tlsappBuilds(t *testing.T, toolchain string) (full, stripped string) {
	t.Helper()
	return itest.BuildGoStatic(t, "./internal/tlsapp", "", toolchain), itest.BuildGoStatic(t, "./internal/tlsapp", "-s -w", toolchain)
}

// forToolchains runs f as a subtest per Go toolchain under test: the
// installed one, and those itest.GoToolchainsEnv lists.
func forToolchains(t *testing.T, f func(t *testing.T, toolchain string)) {
	for _, tc := range itest.GoToolchains() {
		name := tc
		if name == "" {
			name = "installed"
		}
		t.Run(name, func(t *testing.T) { f(t, tc) })
	}
}

// objdumpRets lists, with `go tool objdump` of a binary with symbols, the
// virtual addresses of fn's start (the instruction after the stack check's
// JBE) and of its RET instructions: an oracle independent of FindGoTLS's
// decoding.
func objdumpRets(t *testing.T, bin, fn string) (start uint64, rets []uint64) {
	t.Helper()
	goBin, err := itest.GoBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "tool", "objdump", "-s", "^"+regexp.QuoteMeta(fn)+"$", bin).Output()
	if err != nil {
		t.Fatalf("go tool objdump: %v", err)
	}
	afterJBE := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[1], "0x") {
			continue
		}
		addr, err := strconv.ParseUint(f[1][2:], 16, 64)
		if err != nil {
			t.Fatalf("objdump line %q", sc.Text())
		}
		if afterJBE && start == 0 {
			start = addr
		}
		afterJBE = f[3] == "JBE"
		if f[3] == "RET" {
			rets = append(rets, addr)
		}
	}
	if start == 0 || len(rets) == 0 {
		t.Fatalf("objdump found no stack check or no RET for %s:\n%s", fn, out)
	}
	return start, rets
}

// TestFindGoTLSMatchesObjdump checks, for the same program with symbols
// and stripped (-s -w), that the starts and RETs FindGoTLS finds in
// .gopclntab are the ones the Go toolchain's disassembler lists, as file
// offsets, and that each RET offset holds a RET opcode in the file.
func TestFindGoTLSMatchesObjdump(t *testing.T) {
	forToolchains(t, testFindGoTLSMatchesObjdump)
}

func testFindGoTLSMatchesObjdump(t *testing.T, toolchain string) {
	full, stripped := tlsappBuilds(t, toolchain)
	ef, err := elf.Open(full)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	toFile := func(addrs ...uint64) []uint64 {
		var offs []uint64
		for _, a := range addrs {
			o, err := fileOffset(ef, a)
			if err != nil {
				t.Fatal(err)
			}
			offs = append(offs, o)
		}
		return offs
	}
	readStart, readRets := objdumpRets(t, full, goRead)
	writeStart, _ := objdumpRets(t, full, goWrite)
	closeStart, _ := objdumpRets(t, full, goClose)
	for _, tc := range []struct{ name, bin string }{{"symbols", full}, {"stripped", stripped}} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(tc.bin)
			if err != nil {
				t.Fatal(err)
			}
			g, err := FindGoTLS(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(g.Version, "go1.") {
				t.Errorf("version %q", g.Version)
			}
			for _, c := range []struct {
				what      string
				entry     uint64
				rets      []uint64
				wantEntry uint64
				wantRets  []uint64
			}{
				{"Read", g.Read, g.ReadRets, toFile(readStart)[0], toFile(readRets...)},
				{"Write", g.Write, nil, toFile(writeStart)[0], nil},
				{"Close", g.Close, nil, toFile(closeStart)[0], nil},
			} {
				if c.entry != c.wantEntry || !slices.Equal(c.rets, c.wantRets) {
					t.Errorf("%s: entry %#x RETs %#x, objdump says %#x and %#x", c.what, c.entry, c.rets, c.wantEntry, c.wantRets)
				}
				for _, r := range c.rets {
					if data[r] != 0xc3 {
						t.Errorf("%s: byte %#x at RET offset %#x", c.what, data[r], r)
					}
				}
			}
		})
	}
}

// TestGoStructOffsets checks the offsets gotls.c hard-codes against the
// DWARF of a program built by the toolchain under test.
func TestGoStructOffsets(t *testing.T) {
	forToolchains(t, testGoStructOffsets)
}

func testGoStructOffsets(t *testing.T, toolchain string) {
	full, _ := tlsappBuilds(t, toolchain)
	ef, err := elf.Open(full)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	d, err := ef.DWARF()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]int64{
		"crypto/tls.Conn":  {"conn": 0},
		"net.TCPConn":      {"conn": 0},
		"net.conn":         {"fd": 0},
		"net.netFD":        {"pfd": 0},
		"internal/poll.FD": {"Sysfd": 16},
	}
	got := map[string]map[string]int64{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			break
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if e.Tag != dwarf.TagStructType || want[name] == nil || got[name] != nil {
			continue
		}
		typ, err := d.Type(e.Offset)
		if err != nil {
			t.Fatal(err)
		}
		got[name] = map[string]int64{}
		for _, f := range typ.(*dwarf.StructType).Field {
			if _, ok := want[name][f.Name]; ok {
				got[name][f.Name] = f.ByteOffset
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("struct offsets\n got %v\nwant %v (update GO_* in bpf/gotls.c)", got, want)
	}
	// The conn field is an interface: its data word follows the itab.
	if ptr := ef.Class; ptr != elf.ELFCLASS64 {
		t.Fatalf("ELF class %v", ptr)
	}
}

func TestRetOffsets(t *testing.T) {
	for _, tc := range []struct {
		name string
		code []byte
		want []uint64
		err  bool
	}{
		{"ret", []byte{0xc3}, []uint64{0}, false},
		// mov rbx, rax is 48 89 c3: a C3 byte that is no RET.
		{"c3 inside an instruction", []byte{0x48, 0x89, 0xc3, 0xc3}, []uint64{3}, false},
		{"two rets and int3 padding", []byte{0x90, 0xc3, 0x31, 0xc0, 0xc3, 0xcc, 0xcc}, []uint64{1, 4}, false},
		{"no ret", []byte{0x90, 0x90}, nil, false},
		{"truncated instruction", []byte{0xc3, 0x48, 0x89}, nil, true},
		{"invalid in 64-bit mode", []byte{0xc3, 0x06}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := retOffsets(tc.code)
			if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
				t.Fatalf("retOffsets(% x) = %v, %v; want %v, error %v", tc.code, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestPastStackCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		code []byte
		want uint64
	}{
		// CMPQ SP, 0x10(R14); JBE rel32; PUSHQ BP
		{"small frame", []byte{0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x7a, 0x03, 0x00, 0x00, 0x55}, 10},
		// LEAQ -0x48(SP), R12; CMPQ R12, 0x10(R14); JBE rel32; PUSHQ BP
		{"large frame", []byte{0x4c, 0x8d, 0x64, 0x24, 0xb8, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x93, 0x07, 0x00, 0x00, 0x55}, 15},
		// PUSHQ BP; MOVQ SP, BP; ... (nosplit: no check)
		{"no check", []byte{0x55, 0x48, 0x89, 0xe5, 0x90, 0x90}, 0},
		{"jump without compare", []byte{0x0f, 0x86, 0x00, 0x00, 0x00, 0x00, 0x55}, 0},
		{"undecodable", []byte{0x06}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pastStackCheck(tc.code); got != tc.want {
				t.Fatalf("pastStackCheck = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestGoMinor(t *testing.T) {
	for v, want := range map[string]int{"go1.26.0": 26, "go1.18rc1": 18, "go1.9": 9, "go1.21.13 X:boringcrypto": 21} {
		if got, ok := goMinor(v); !ok || got != want {
			t.Errorf("goMinor(%q) = %d, %v; want %d", v, got, ok, want)
		}
	}
	for _, v := range []string{"devel +abc", "go2.0", ""} {
		if _, ok := goMinor(v); ok {
			t.Errorf("goMinor(%q) ok", v)
		}
	}
}

// TestClassify runs Classify over real executables: Go crypto/tls with and
// without symbols (readable), OpenSSL linked statically with symbols
// (readable, through the OpenSSL probes) and stripped (not), and a plain
// dynamic program with a TLS library mapped.
func TestClassify(t *testing.T) {
	full, stripped := tlsappBuilds(t, "")
	src := filepath.Join("testdata", "sslidle.c")
	sslSyms := itest.BuildStaticOpenSSL(t, src, false)
	sslStripped := itest.BuildStaticOpenSSL(t, src, true)
	const plain = "/usr/bin/env" // Debian coreutils: no TLS of its own
	for _, tc := range []struct {
		name       string
		exe        string
		libs       []string
		unreadable string
		goTLS      bool
		static     bool // OpenSSL linked in, with its symbols
	}{
		{"go with symbols", full, nil, "", true, false},
		{"go stripped", stripped, nil, "", true, false},
		{"static openssl with symbols", sslSyms, nil, "", false, true},
		{"static openssl stripped", sslStripped, nil, "statically linked OpenSSL without symbols", false, false},
		{"dynamic openssl", plain, []string{"/usr/lib/x86_64-linux-gnu/libssl.so.3"}, "", false, false},
		{"gnutls", plain, []string{"/usr/lib/x86_64-linux-gnu/libgnutls.so.30"}, "GnuTLS (libgnutls)", false, false},
		{"java", plain, []string{"/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so"}, "a Java VM (JSSE)", false, false},
		{"no tls", plain, []string{"/usr/lib/x86_64-linux-gnu/libc.so.6"}, "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(tc.exe)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			v, err := Classify(f, tc.libs)
			if err != nil {
				t.Fatal(err)
			}
			if v.Unreadable != tc.unreadable || (v.Go != nil) != tc.goTLS || v.StaticOpenSSL != tc.static {
				t.Fatalf("verdict %+v; want unreadable %q, Go %v, static OpenSSL %v", v, tc.unreadable, tc.goTLS, tc.static)
			}
		})
	}
}

func TestScanMarkers(t *testing.T) {
	pad := bytes.Repeat([]byte{'x'}, 1<<20-3)
	for _, tc := range []struct {
		name    string
		data    []byte
		generic bool
		want    string
	}{
		{"none", []byte("hello"), true, ""},
		{"rustls", []byte("src/rustls-0.23.1/src/conn.rs"), true, "rustls"},
		{"library before label", []byte("tls13 ...BoringSSL"), true, "statically linked BoringSSL without symbols"},
		{"label alone", []byte("tls13 key"), true, "a statically linked TLS library boxtap does not know"},
		{"label ignored for Go", []byte("tls13 key"), false, ""},
		{"across chunks", append(append([]byte{}, pad...), []byte("wolfSSL")...), true, "statically linked wolfSSL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := scanMarkers(bytes.NewReader(tc.data), tc.generic)
			if err != nil || got != tc.want {
				t.Fatalf("scanMarkers = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// FuzzClassify feeds arbitrary files to Classify: it must return, with an
// error or a verdict, and never panic or hang (the files come from
// containers).
func FuzzClassify(f *testing.F) {
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(self[:min(len(self), 4096)])
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Classify(bytes.NewReader(data), []string{"/lib/libssl.so.3"})
	})
}
