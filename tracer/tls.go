package tracer

import (
	"errors"
	"fmt"
	"time"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/httpstream"
	"github.com/boxtap/boxtap/internal/display"
	"github.com/boxtap/boxtap/internal/tlssource"
)

// The TLS source feeds the same per-connection pipeline as packets: each
// SSL_read/SSL_write record becomes a Segment of an httpstream.Conn whose
// sequence numbers are the kernel's per-direction plaintext offsets. Its
// connections are keyed by process and SSL*, apart from the packet ones
// (a TLS connection's packets carry ciphertext and frame nothing).

// tlsKey names one TLS connection: the SSL* within its process.
type tlsKey struct {
	tgid uint32
	ssl  uint64
}

// maxTLSPerPoll bounds one pollTLS so that packet records are not starved.
const maxTLSPerPoll = 1 << 16

// addTLS registers a new target's cgroup with the TLS source, if any.
// Failing to instrument a process is reported, not fatal: packets are
// still traced (fail open).
func (t *Tracer) addTLS(tg *Target, cgroupDir string, cgroupID uint64) {
	if t.opts.TLS == nil {
		return
	}
	if err := t.opts.TLS.Add(cgroupDir, cgroupID); err != nil {
		t.opts.OnError(fmt.Errorf("warning: %s (%s): TLS plaintext capture incomplete: %w", display.Quote(tg.Info.Name), tg.Info.ShortID(), err))
	}
}

func (t *Tracer) removeTLS(cgroupID uint64) error {
	if t.opts.TLS == nil {
		return nil
	}
	return t.opts.TLS.Remove(cgroupID)
}

// pollTLS handles the TLS records waiting now. It runs on Run's goroutine.
func (t *Tracer) pollTLS() {
	src := t.opts.TLS
	if src == nil {
		return
	}
	var rec bpf.TLSRecord
	for range maxTLSPerPoll {
		err := src.Next(&rec)
		if errors.Is(err, bpf.ErrMalformedRecord) {
			t.skipMalformed(err)
			continue
		}
		if err != nil {
			break
		}
		t.handleTLS(&rec)
	}
	t.reapTLS()
	t.checkTLSLoss()
}

// checkTLSLoss warns, at most every ten seconds, when the kernel dropped
// TLS records since the last warning: some HTTPS responses are missing.
func (t *Tracer) checkTLSLoss() {
	now := time.Now().UnixNano()
	if now < t.tlsLossNextNs {
		return
	}
	t.tlsLossNextNs = now + int64(10*time.Second)
	lost, err := t.opts.TLS.Lost()
	if err != nil || lost <= t.tlsLostWarned {
		return
	}
	t.tlsLostWarned = lost
	t.opts.OnError(fmt.Errorf("warning: the kernel dropped %d TLS plaintext records so far (TLS ring buffer full); HTTPS responses may be missing", lost))
}

func (t *Tracer) handleTLS(rec *bpf.TLSRecord) {
	t.mu.RLock()
	tg := t.targets[rec.CgroupId]
	t.mu.RUnlock()
	if t.tlsConns == nil {
		t.tlsConns = make(map[tlsKey]*conn)
	}
	k := tlsKey{tgid: rec.Tgid, ssl: rec.Conn}
	c := t.tlsConns[k]
	if rec.Flags&bpf.TLSFlagClose != 0 {
		if c != nil {
			// SSL_free ends both directions at once, as a reset does: an
			// HTTP/2 stream whose response head was read still gives its
			// event (HTTP/1 gives its events at the head already).
			t.current = c
			c.hs.Feed(&httpstream.Segment{RST: true}, t.emit)
			t.current = nil
			c.hs.Close()
			delete(t.tlsConns, k)
		}
		return
	}
	if tg == nil {
		return
	}
	if c == nil || c.target != tg {
		if c != nil {
			c.hs.Close()
		}
		c = &conn{hs: httpstream.NewConn(t.limits(), &t.stats), target: tg, tls: true}
		t.tlsConns[k] = c
	}
	c.setTLSOwner(rec)
	if rec.Flags&bpf.TLSFlagSock != 0 {
		c.setTLSTuple(rec)
	}
	now := int64(t.clock.epoch(rec.TsTai))
	c.lastNs = now
	seg := httpstream.Segment{
		Dir:  httpstream.Direction(rec.Dir & 1),
		Seq:  rec.Seq,
		Len:  rec.Len,
		Data: rec.Data,
		Gap:  rec.Flags&bpf.TLSFlagGap != 0,
		Info: httpstream.PacketInfo{TimestampNs: uint64(now), PacketLen: rec.CallLen},
	}
	t.current = c
	c.hs.Feed(&seg, t.emit)
	t.current = nil
}

// setTLSOwner makes the calling task the connection's owner.
func (c *conn) setTLSOwner(rec *bpf.TLSRecord) {
	if c.hasOwner && c.owner.Tid == rec.Tid && c.owner.StartNs == rec.StartNs {
		return
	}
	c.setOwner(&bpf.Owner{
		StartNs: rec.StartNs, LeaderStartNs: rec.LeaderStartNs, CgroupId: rec.CgroupId,
		Tid: rec.Tid, Tgid: rec.Tgid, NsTid: rec.NsTid, NsTgid: rec.NsTgid,
		Uid: rec.Uid, Mntns: rec.Mntns, Pidns: rec.Pidns, Comm: rec.Comm,
	})
}

// setTLSTuple sets both directions' addresses from the socket's local and
// remote ends. The interface is not known on this path: iface is "".
func (c *conn) setTLSTuple(rec *bpf.TLSRecord) {
	local := addrOf(rec.Family, rec.Local)
	remote := addrOf(rec.Family, rec.Remote)
	c.dirs[httpstream.Egress] = dirMeta{src: local, dst: remote, sport: rec.Lport, dport: rec.Rport}
	c.dirs[httpstream.Ingress] = dirMeta{src: remote, dst: local, sport: rec.Rport, dport: rec.Lport}
}

// tlsState is the TLS source's part of a Tracer, owned by Run.
type tlsState struct {
	tlsConns      map[tlsKey]*conn
	lastTLSReap   int64
	tlsLossNextNs int64
	tlsLostWarned uint64
}

// reapTLS drops idle TLS connections, at most every ten seconds.
func (t *Tracer) reapTLS() {
	now := time.Now().UnixNano()
	if now-t.lastTLSReap < int64(10*time.Second) {
		return
	}
	t.lastTLSReap = now
	for k, c := range t.tlsConns {
		if now-c.lastNs > int64(t.opts.IdleConn) {
			c.hs.Close()
			delete(t.tlsConns, k)
		}
	}
}

// tlsOption is the TLS source a Tracer reads, when TLS capture is on.
type tlsOption = *tlssource.Source
