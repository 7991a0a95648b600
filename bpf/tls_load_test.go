//go:build 386 || amd64

package bpf

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// TestIntegrationTLSProgramsLoadAndAttachToLibssl proves the kernel accepts
// the TLS programs (uprobes and tp_btf tracepoints) and that every OpenSSL 3
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

// TestIntegrationTLSRunsForNoSystemCall lists, from the kernel's table of
// links, every tracepoint the loaded TLS programs are attached to: only
// socket sends and receives, forks and execs, never the raw_syscalls
// sys_enter/sys_exit tracepoints, which would run for every system call of
// every process on the host and move all of them onto the kernel's slower
// traced system-call path.
func TestIntegrationTLSRunsForNoSystemCall(t *testing.T) {
	itest.RequireBPF(t)
	c, err := LoadTLS()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ours := map[ebpf.ProgramID]string{}
	for _, progs := range []any{&c.objs.tlsPrograms, &c.gotls.objs.gotlsPrograms} {
		v := reflect.ValueOf(progs).Elem()
		for i := range v.NumField() {
			p, ok := v.Field(i).Interface().(*ebpf.Program)
			if !ok || p == nil {
				t.Fatalf("%s.%s is not a loaded program", v.Type(), v.Type().Field(i).Name)
			}
			info, err := p.Info()
			if err != nil {
				t.Fatal(err)
			}
			id, _ := info.ID()
			ours[id] = v.Type().Field(i).Name
		}
	}
	vmlinux, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue // detached meanwhile: not ours, which stay attached
		}
		name, ok := ours[info.Program]
		if !ok {
			continue
		}
		switch info.Type {
		case link.TracingType:
			typ, err := vmlinux.TypeByID(btf.TypeID(info.Tracing().TargetBtfId))
			if err != nil {
				t.Fatalf("%s: target BTF type %d: %v", name, info.Tracing().TargetBtfId, err)
			}
			got = append(got, strings.TrimPrefix(typ.TypeName(), "btf_trace_"))
		case link.RawTracepointType:
			got = append(got, info.RawTracepoint().Name)
		default:
			got = append(got, fmt.Sprintf("link type %d of %s", info.Type, name))
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []string{"sched_process_exec", "sched_process_fork", "sock_recv_length", "sock_send_length"}
	if !slices.Equal(got, want) {
		t.Fatalf("the TLS programs are attached to %q, want %q", got, want)
	}
}

// AttachLoader finds _dl_debug_state in Debian's dynamic loader and fails
// with link.ErrNoSymbol on a library without it (what boxtap reports for
// a loader it cannot watch).
func TestIntegrationTLSLoaderProbe(t *testing.T) {
	itest.RequireBPF(t)
	const ld, lib = "/lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/libssl.so.3"
	for _, f := range []string{ld, lib} {
		_, err := os.Stat(f)
		itest.Require(t, err == nil, "needs Debian's libc6 and libssl3: %v", err)
	}
	c, err := LoadTLS()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.AttachLoader(ld, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AttachLoader(lib, os.Getpid()); !errors.Is(err, link.ErrNoSymbol) {
		t.Fatalf("AttachLoader(%s) = %v, want link.ErrNoSymbol", lib, err)
	}
}
