//go:build 386 || amd64

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// goTLS is the loaded Go crypto/tls programs (gotls.c), which write into
// the TLS collection's own maps.
type goTLS struct {
	objs gotlsObjects
	exec link.Link // sched_process_exec: static programs started later
}

// loadGoTLS loads gotls.c with tls.c's maps in place of its own, so that
// its records reach the same ring buffer and connection table.
func (c *TLSCollection) loadGoTLS() error {
	m := &c.objs.tlsMaps
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"tls_cgroups":       m.TlsCgroups,
		"tls_conns":         m.TlsConns,
		"tls_events":        m.TlsEvents,
		"tls_lost":          m.TlsLost,
		"tls_mapped_events": m.TlsMappedEvents,
		"tls_scratch":       m.TlsScratch,
	}}
	if err := loadGotlsObjects(&c.gotls.objs, opts); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("the kernel's verifier rejected boxtap's Go TLS programs (%v); TLS capture needs Linux 6.3 or later with BTF", lastLines(verr.Log, 30))
		}
		return fmt.Errorf("loading the Go TLS eBPF programs: %w", err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: c.gotls.objs.GoExec})
	if err != nil {
		c.gotls.objs.Close()
		return fmt.Errorf("attaching to sched:sched_process_exec (tp_btf): %w; TLS capture needs BTF tracepoints", err)
	}
	c.gotls.exec = l
	return nil
}

func (g *goTLS) close() error {
	var errs []error
	if g.exec != nil {
		errs = append(errs, g.exec.Close())
	}
	return errors.Join(append(errs, g.objs.Close())...)
}

// GoTLSProbes are where AttachGoTLS sets uprobes in one Go executable, as
// file offsets: the starts (past the stack check) of crypto/tls.(*Conn).Read,
// Write and Close and each RET instruction of Read.
type GoTLSProbes struct {
	Read, Write, Close uint64
	ReadRets           []uint64
}

// AttachGoTLS attaches the Go crypto/tls probes to the executable at path
// (/proc/PID/exe or a path under /proc/PID/root), in process pid only.
// Close is optional (0: none).
func (c *TLSCollection) AttachGoTLS(path string, pid int, p GoTLSProbes) ([]link.Link, error) {
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s for uprobes: %w", path, err)
	}
	type probe struct {
		what string
		off  uint64
		prog *ebpf.Program
	}
	probes := []probe{{"(*Conn).Read", p.Read, c.gotls.objs.GoReadEnter}, {"(*Conn).Write", p.Write, c.gotls.objs.GoWriteEnter}}
	if p.Close != 0 {
		probes = append(probes, probe{"(*Conn).Close", p.Close, c.gotls.objs.GoClose})
	}
	for _, off := range p.ReadRets {
		probes = append(probes, probe{"a RET of (*Conn).Read", off, c.gotls.objs.GoReadRet})
	}
	var links []link.Link
	for _, pr := range probes {
		if pr.off == 0 {
			err = fmt.Errorf("no offset for %s", pr.what)
		} else {
			var l link.Link
			// The symbol name is unused with an Address; it names the probe.
			l, err = ex.Uprobe("crypto/tls", pr.prog, &link.UprobeOptions{Address: pr.off, PID: pid})
			links = append(links, l)
		}
		if err != nil {
			for _, l := range links {
				if l != nil {
					l.Close()
				}
			}
			return nil, fmt.Errorf("uprobe on %s at %#x in %s: %w", pr.what, pr.off, path, err)
		}
	}
	return links, nil
}
