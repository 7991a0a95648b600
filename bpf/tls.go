//go:build 386 || amd64

package bpf

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// TLSRecordHeader is the fixed part of a TLS plaintext record (struct
// tls_record in tlsinclude/tls.h). Data follows it.
type TLSRecordHeader = tlsTlsRecord

const tlsHeaderSize = int(unsafe.Sizeof(tlsTlsRecord{}))

// TLSCollection is the loaded TLS plaintext programs (tls.c): uprobes on
// OpenSSL's SSL_read/SSL_write, attached per process and library file with
// AttachOpenSSL; the sock_send_length and sock_recv_length tracepoints,
// which link each call to its socket; and the notices of processes to look
// at (fork and exec tracepoints, a uprobe on each traced process's dynamic
// loader set with AttachLoader). No program runs for a system call that is
// not socket I/O. Nothing is recorded for a cgroup before TraceCgroup.
type TLSCollection struct {
	objs     tlsObjects
	gotls    goTLS // gotls.go
	sockSend link.Link
	sockRecv link.Link
	fork     link.Link
	reader   *ringbuf.Reader
	raw      ringbuf.Record
	mapped   *ringbuf.Reader
}

// LoadTLS loads the TLS programs and attaches the tracepoints.
func LoadTLS() (*TLSCollection, error) {
	c := &TLSCollection{}
	if err := loadTlsObjects(&c.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("the kernel's verifier rejected boxtap's TLS programs (%v); TLS capture needs Linux 6.3 or later with BTF", lastLines(verr.Log, 30))
		}
		return nil, fmt.Errorf("loading the TLS eBPF programs: %w; TLS capture needs Linux 6.3 or later with BTF and uprobes, run as root", err)
	}
	if err := c.loadGoTLS(); err != nil {
		c.Close()
		return nil, err
	}
	var err error
	if c.sockSend, err = link.AttachTracing(link.TracingOptions{Program: c.objs.TlsSockSend}); err != nil {
		c.Close()
		return nil, fmt.Errorf("attaching to sock:sock_send_length (tp_btf): %w; TLS capture needs BTF tracepoints (Linux 6.3 or later)", err)
	}
	if c.sockRecv, err = link.AttachTracing(link.TracingOptions{Program: c.objs.TlsSockRecv}); err != nil {
		c.Close()
		return nil, fmt.Errorf("attaching to sock:sock_recv_length (tp_btf): %w; TLS capture needs BTF tracepoints (Linux 6.3 or later)", err)
	}
	if c.fork, err = link.AttachTracing(link.TracingOptions{Program: c.objs.TlsFork}); err != nil {
		c.Close()
		return nil, fmt.Errorf("attaching to sched:sched_process_fork (tp_btf): %w; TLS capture needs BTF tracepoints", err)
	}
	if c.reader, err = ringbuf.NewReader(c.objs.TlsEvents); err != nil {
		c.Close()
		return nil, fmt.Errorf("opening the TLS ring buffer: %w", err)
	}
	if c.mapped, err = ringbuf.NewReader(c.objs.TlsMappedEvents); err != nil {
		c.Close()
		return nil, fmt.Errorf("opening the TLS mapping ring buffer: %w", err)
	}
	return c, nil
}

// Close detaches and releases everything, uprobe links excepted (their
// owner closes them; they stop firing once the programs are gone anyway).
func (c *TLSCollection) Close() error {
	var errs []error
	if c.reader != nil {
		errs = append(errs, c.reader.Close())
	}
	if c.mapped != nil {
		errs = append(errs, c.mapped.Close())
	}
	for _, l := range []link.Link{c.sockSend, c.sockRecv, c.fork} {
		if l != nil {
			errs = append(errs, l.Close())
		}
	}
	errs = append(errs, c.gotls.close(), c.objs.Close())
	return errors.Join(errs...)
}

// TraceCgroup makes the probes record the calls of tasks in cgroup id.
func (c *TLSCollection) TraceCgroup(id uint64) error {
	if err := c.objs.TlsCgroups.Put(id, uint8(1)); err != nil {
		return fmt.Errorf("registering cgroup %d for TLS capture: %w", id, err)
	}
	return nil
}

// UntraceCgroup stops recording the calls of tasks in cgroup id.
func (c *TLSCollection) UntraceCgroup(id uint64) error {
	if err := c.objs.TlsCgroups.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregistering cgroup %d from TLS capture: %w", id, err)
	}
	return nil
}

// OpenSSLSymbols are the functions AttachOpenSSL probes. SSL_read_ex and
// SSL_write_ex exist from OpenSSL 1.1.1 on.
var OpenSSLSymbols = []string{"SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex", "SSL_free"}

// AttachOpenSSL attaches the probes to the OpenSSL library at path (a path
// that names the container's own file, such as /proc/PID/root/...). It
// fails when SSL_read or SSL_write is missing; the _ex forms and SSL_free
// are attached where present. With pid not 0 the breakpoints are set in
// that process only: no other process that maps the file traps into the
// kernel (a uprobe hit costs microseconds even when the program returns at
// once).
func (c *TLSCollection) AttachOpenSSL(path string, pid int) ([]link.Link, error) {
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s for uprobes: %w", path, err)
	}
	var links []link.Link
	fail := func(err error) ([]link.Link, error) {
		for _, l := range links {
			l.Close()
		}
		return nil, err
	}
	for _, p := range []struct {
		sym      string
		enter    *ebpf.Program
		ret      bool
		required bool
	}{
		{"SSL_write", c.objs.TlsWriteEnter, true, true},
		{"SSL_read", c.objs.TlsReadEnter, true, true},
		{"SSL_write_ex", c.objs.TlsWriteExEnter, true, false},
		{"SSL_read_ex", c.objs.TlsReadExEnter, true, false},
		{"SSL_free", c.objs.TlsFree, false, false},
	} {
		opts := &link.UprobeOptions{PID: pid}
		l, err := ex.Uprobe(p.sym, p.enter, opts)
		if err != nil {
			if !p.required && errors.Is(err, link.ErrNoSymbol) {
				continue
			}
			return fail(fmt.Errorf("uprobe on %s in %s: %w", p.sym, path, err))
		}
		links = append(links, l)
		if !p.ret {
			continue
		}
		l, err = ex.Uretprobe(p.sym, c.objs.TlsLeave, opts)
		if err != nil {
			return fail(fmt.Errorf("uretprobe on %s in %s: %w", p.sym, path, err))
		}
		links = append(links, l)
	}
	return links, nil
}

// LoaderSymbol is the function of the dynamic loader AttachLoader probes:
// glibc's ld.so and musl's both export it for debuggers and call it after
// mapping a program's libraries and around each dlopen.
const LoaderSymbol = "_dl_debug_state"

// AttachLoader sets a uprobe on the dynamic loader at path, for process
// pid only, that reports each library the process loads from then on (a
// TLSMapped notice). It fails, wrapping link.ErrNoSymbol, when the loader
// does not export LoaderSymbol.
func (c *TLSCollection) AttachLoader(path string, pid int) (link.Link, error) {
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s for uprobes: %w", path, err)
	}
	l, err := ex.Uprobe(LoaderSymbol, c.objs.TlsLoader, &link.UprobeOptions{PID: pid})
	if err != nil {
		return nil, fmt.Errorf("uprobe on %s in %s: %w", LoaderSymbol, path, err)
	}
	return l, nil
}

// Lost is how many TLS records the ring buffer had no room for.
func (c *TLSCollection) Lost() (uint64, error) {
	var per []uint64
	if err := c.objs.TlsLost.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("reading the TLS loss counter: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// TLSRecord is one decoded TLS record. It aliases the reader's buffer and
// is valid only until the next read.
type TLSRecord struct {
	*TLSRecordHeader
	Data []byte
}

// TLS record flags (enum tls_flags).
const (
	TLSFlagSock  = 1 << 0
	TLSFlagGap   = 1 << 1
	TLSFlagClose = 1 << 2
)

// NextTLS returns the next waiting TLS record without blocking; ErrIdle
// when none waits.
func (c *TLSCollection) NextTLS(rec *TLSRecord) error {
	c.reader.SetDeadline(pastDeadline)
	if err := c.reader.ReadInto(&c.raw); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ringbuf.ErrFlushed) {
			return ErrIdle
		}
		return err
	}
	return DecodeTLSRecord(c.raw.RawSample, rec)
}

// DecodeTLSRecord points rec at the header and data of one raw sample,
// without copying. It fails, wrapping ErrMalformedRecord, on a sample too
// short for its header or for the data length the header claims.
func DecodeTLSRecord(raw []byte, rec *TLSRecord) error {
	if len(raw) < tlsHeaderSize {
		return fmt.Errorf("%w: TLS record of %d bytes, shorter than a header", ErrMalformedRecord, len(raw))
	}
	if uintptr(unsafe.Pointer(&raw[0]))%8 != 0 {
		return fmt.Errorf("%w: misaligned", ErrMalformedRecord)
	}
	rec.TLSRecordHeader = (*tlsTlsRecord)(unsafe.Pointer(&raw[0]))
	n := int(rec.DataLen)
	if tlsHeaderSize+n > len(raw) {
		return fmt.Errorf("%w: TLS record claims %d data bytes, has %d", ErrMalformedRecord, n, len(raw)-tlsHeaderSize)
	}
	rec.Data = raw[tlsHeaderSize : tlsHeaderSize+n]
	return nil
}

// TLSMapped is a process of a traced cgroup that exec'd, was forked or had
// its dynamic loader load libraries (at start or by dlopen) (struct
// tls_mapped).
type TLSMapped = tlsTlsMapped

// NextMapped waits for the next TLSMapped notice. It returns ErrClosed once
// CloseMapped or Close was called.
func (c *TLSCollection) NextMapped() (TLSMapped, error) {
	rec, err := c.mapped.Read()
	if err != nil {
		return TLSMapped{}, err
	}
	var m TLSMapped
	if len(rec.RawSample) < int(unsafe.Sizeof(m)) {
		return m, fmt.Errorf("%w: mapping notice of %d bytes", ErrMalformedRecord, len(rec.RawSample))
	}
	m = *(*tlsTlsMapped)(unsafe.Pointer(&rec.RawSample[0]))
	return m, nil
}

// CloseMapped makes a waiting NextMapped return ErrClosed.
func (c *TLSCollection) CloseMapped() error { return c.mapped.Close() }
