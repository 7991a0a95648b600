// Package tracer turns the kernel's capture records into events: it feeds
// each connection's segments to an httpstream parser and writes one Tracee
// net_packet_http_response event per HTTP response to the sink of the
// container the connection belongs to.
//
// A Tracer owns one bpf.Collection, shared by every container it traces.
// Run reads records on the caller's goroutine; Add and Remove may be called
// from any goroutine.
package tracer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/boxtap/boxtap/bpf"
	"github.com/boxtap/boxtap/httpstream"
	"github.com/boxtap/boxtap/internal/display"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
	"golang.org/x/sys/unix"
)

// Options tune a Tracer.
type Options struct {
	Limits httpstream.Limits
	// Poll is how long the reader waits for a record before flushing
	// output; zero means 50 ms.
	Poll time.Duration
	// IdleConn drops the parser state of a connection that carried no
	// record for this long; zero means 5 minutes, and it is never shorter
	// than bpf.OwnerRefresh (a connection that comes back after that long
	// gets its owner from the kernel again). A connection that comes back
	// is framed again from its next message.
	IdleConn time.Duration
	// OnEvent, if set, is called after each event is written (for --count).
	OnEvent func(*Target)
	// MaxEvents, if not zero, is how many events Run writes in all; later
	// responses are dropped, even those already in the ring buffer when
	// the limit is reached (for --count).
	MaxEvents uint64
	// OnError reports a problem that does not stop tracing, such as a sink
	// write error. Nil means print to stderr.
	OnError func(error)
	// Filter, if set, decides which exchanges are written; the others are
	// counted (Summary.Filtered) and cost no encoding and no write.
	Filter *output.Filter
	// StateBudget bounds the bytes (estimated) that the parser state of all
	// connections and the buffered listener segments hold together; beyond
	// it the largest state is dropped and counted (Target.Evicted). Zero
	// means DefaultStateBudget.
	StateBudget int64
	// TLS, if set, is the TLS plaintext source (see tls.go); the caller
	// owns it.
	TLS tlsOption
	// Observer, if set, sees every exchange that passed the filter, filled
	// as written (metrics, spans); for a sink that writes nothing
	// (output.Discarder) without the process fields. It runs on the
	// tracer's goroutine and must not block; it must not keep the event
	// nor its strings, which may alias the parser's buffers (except the
	// target's: Container, Kubernetes and ContainerRuntime).
	Observer Observer
}

// Observer receives each exchange after filtering (see Options.Observer).
type Observer interface{ Observe(e *output.Event) }

// Target is one traced container.
type Target struct {
	Info      container.Info
	CgroupDir string
	sink      output.Sink
	att       *bpf.Attachment
	// bare: the sink writes nothing (output.Discards), so events carry only
	// what the observer reads, not the process fields nor their encoding.
	bare bool

	events   atomic.Uint64
	filtered atomic.Uint64
	mu       sync.Mutex
	writeErr error

	// Owned by Run.
	lost       uint64 // kernel's lost-record count, as last read
	lostWarned uint64 // lost count in the last warning
	lostNextNs int64  // no new warning before this time

	evicted     atomic.Uint64 // connection states and listener segments dropped for the memory budget
	evictWarned uint64        // evicted count in the last warning (owned by Run)
	evictNextNs int64         // no new eviction warning before this time (owned by Run)
}

// Evicted is how many connection states and buffered listener segments of
// this container were dropped to stay within the memory budget.
func (tg *Target) Evicted() uint64 { return tg.evicted.Load() }

// Events is how many events were written for this container.
func (tg *Target) Events() uint64 { return tg.events.Load() }

// Filtered is how many exchanges of this container the filter left out.
func (tg *Target) Filtered() uint64 { return tg.filtered.Load() }

// CgroupID is the id of the traced cgroup.
func (tg *Target) CgroupID() uint64 { return tg.att.CgroupID() }

// Counters returns the kernel's counters for this container.
func (tg *Target) Counters() (bpf.Counters, error) { return tg.att.Counters() }

// Summary totals a tracer's work.
type Summary struct {
	Events      uint64
	LostRecords uint64
	LostBytes   uint64
	Truncated   uint64
	Desyncs     uint64
	DupSegments uint64
	// SkippedBytes are body bytes the kernel skipped instead of copying.
	SkippedBytes uint64
	// Unwritten are events a sink could not write (a full disk, say).
	Unwritten uint64
	// Malformed are ring-buffer records that did not decode and were
	// skipped (a boxtap bug).
	Malformed uint64
	// Filtered are exchanges the filter left out (not in Events);
	// FilteredKernel are those of them the kernel left out by status
	// before they cost ring bytes or parsing.
	Filtered       uint64
	FilteredKernel uint64
	// Evicted are connection states and listener segments dropped to stay
	// within the memory budget.
	Evicted uint64
	// DroppedRequests are requests whose response could not be paired with
	// them (a full pipelining queue, or responses lost); GapBytes are
	// stream bytes given up as lost. Both come from the parsers.
	DroppedRequests uint64
	GapBytes        uint64
	// Uncaptured are the kernel's counts of what it let pass without
	// capturing (see uncaptured.go).
	Uncaptured
	// CutStreams are HTTP/2 streams ended before any response (no event).
	CutStreams uint64
}

func (s Summary) String() string {
	unwritten := ""
	if s.Unwritten > 0 {
		unwritten = fmt.Sprintf(" (%d of them not written: output errors)", s.Unwritten)
	}
	malformed := ""
	if s.Malformed > 0 {
		malformed = fmt.Sprintf(", %d malformed records skipped", s.Malformed)
	}
	filtered := ""
	if s.Filtered > 0 {
		filtered = fmt.Sprintf(", %d filtered out", s.Filtered)
	}
	if s.FilteredKernel > 0 {
		filtered += fmt.Sprintf(" (%d of them in the kernel)", s.FilteredKernel)
	}
	cut := ""
	if s.CutStreams > 0 {
		cut = fmt.Sprintf(", %d HTTP/2 streams cut before a response", s.CutStreams)
	}
	return fmt.Sprintf("%d events%s, %d lost records, %d truncated header blocks, %d resyncs, %d retransmits dropped, %d body bytes skipped in the kernel%s, %d evicted (memory budget), %d requests dropped unpaired, %d gap bytes, %s%s%s",
		s.Events, unwritten, s.LostRecords, s.Truncated, s.Desyncs, s.DupSegments, s.SkippedBytes, malformed, s.Evicted, s.DroppedRequests, s.GapBytes, s.Uncaptured, filtered, cut)
}

// Tracer is the capture engine.
type Tracer struct {
	coll *bpf.Collection
	opts Options

	mu      sync.RWMutex
	targets map[uint64]*Target // by cgroup id
	removed Summary            // counts of targets already removed

	barrier chan chan struct{}
	running atomic.Bool   // Run is reading records
	stopped chan struct{} // closed when Run returns

	// Owned by Run.
	conns map[uint64]*conn
	stats httpstream.Stats
	clock clock
	exe   exeCache
	ev    output.Event
	req   output.Request
	h2    output.HTTP2 // HTTP/2 args of the event being written
	// emitFn is t.emit made once: a method value passed to Feed escapes (the
	// HTTP/2 parser is called through an interface) and would allocate per call.
	emitFn   func(*httpstream.Response)
	hdrs     []output.Header
	reqHdrs  []output.Header
	current  *conn
	orphans  orphans
	lastReap int64
	// stateBytes is the estimated memory of every conn (conn.cost);
	// stateBudget bounds it together with the orphans.
	stateBytes  int64
	stateBudget int64
	written     uint64 // events written, for MaxEvents
	// lastLossCheck is when the kernel's lost-record counters were last read.
	lastLossCheck int64
	malformed     atomic.Uint64 // records skipped because they did not decode
	malformedNext int64         // no new malformed-record warning before this time
	tlsState
}

// New returns a Tracer over a loaded collection. The caller keeps
// ownership of coll.
func New(coll *bpf.Collection, opts Options) *Tracer {
	if opts.Poll <= 0 {
		opts.Poll = 50 * time.Millisecond
	}
	if opts.IdleConn <= 0 {
		opts.IdleConn = 5 * time.Minute
	}
	opts.IdleConn = max(opts.IdleConn, bpf.OwnerRefresh)
	if opts.StateBudget <= 0 {
		opts.StateBudget = DefaultStateBudget
	}
	if opts.OnError == nil {
		opts.OnError = func(err error) { fmt.Fprintln(os.Stderr, "boxtap:", err) }
	}
	t := &Tracer{
		coll:        coll,
		opts:        opts,
		targets:     make(map[uint64]*Target),
		barrier:     make(chan chan struct{}),
		stopped:     make(chan struct{}),
		conns:       make(map[uint64]*conn),
		exe:         exeCache{m: make(map[exeKey]string)},
		orphans:     newOrphans(opts.StateBudget),
		stateBudget: opts.StateBudget,
	}
	t.clock.sync()
	t.emitFn = t.emit
	return t
}

// Add attaches to a container's cgroup and starts writing its events to
// sink. cgroupID is the cgroup's id (the inode number of cgroupDir).
func (t *Tracer) Add(info container.Info, cgroupDir string, cgroupID uint64, sink output.Sink) (*Target, error) {
	tg := &Target{Info: info, CgroupDir: cgroupDir, sink: sink, bare: output.Discards(sink)}
	// Attach and register under the lock: Run looks targets up under it, so
	// the first record waits for its target, and every reader of
	// t.targets sees a target with its attachment set.
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.targets[cgroupID]; dup {
		return nil, fmt.Errorf("container %s (%s) is already traced", display.Quote(info.Name), info.ShortID())
	}
	att, err := t.coll.Attach(cgroupDir, cgroupID)
	if err != nil {
		return nil, err
	}
	tg.att = att
	t.targets[cgroupID] = tg
	t.addTLS(tg, cgroupDir, cgroupID)
	return tg, nil
}

// Remove detaches a container, waits until Run has handled every record the
// kernel produced for it (when Run is running), then flushes and closes its
// sink.
func (t *Tracer) Remove(ctx context.Context, tg *Target) error {
	detachErr := errors.Join(tg.att.Close(), t.removeTLS(tg.att.CgroupID()))
	t.drain(ctx)
	t.mu.Lock()
	delete(t.targets, tg.att.CgroupID())
	t.removed.add(t.summaryOf(tg))
	t.mu.Unlock()
	return errors.Join(detachErr, tg.sink.Close())
}

// drain waits until Run has read everything already in the ring buffer. It
// returns at once when Run is not running.
func (t *Tracer) drain(ctx context.Context) {
	if !t.running.Load() {
		return
	}
	done := make(chan struct{})
	select {
	case t.barrier <- done:
		select {
		case <-done:
		case <-ctx.Done():
		}
	case <-t.stopped:
	case <-ctx.Done():
	}
}

// Targets lists the traced containers.
func (t *Tracer) Targets() []*Target {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.Collect(maps.Values(t.targets))
}

// Summary totals events and losses over current and removed targets.
func (t *Tracer) Summary() Summary {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := t.removed
	for _, tg := range t.targets {
		s.add(t.summaryOf(tg))
	}
	s.Malformed = t.malformed.Load()
	return s
}

// droppingSink is a sink that counts the events it failed to write.
type droppingSink interface{ Dropped() uint64 }

func (t *Tracer) summaryOf(tg *Target) Summary {
	s := Summary{Events: tg.Events(), Filtered: tg.Filtered(), Evicted: tg.Evicted()}
	if d, ok := tg.sink.(droppingSink); ok {
		s.Unwritten = d.Dropped()
	}
	if c, err := tg.att.Counters(); err == nil {
		s.LostRecords = c.LostRecords
		s.LostBytes = c.LostBytes
		s.DupSegments = c.DupSegments
		s.SkippedBytes = c.SkippedBytes
		s.Uncaptured = uncapturedOf(c)
		s.Filtered += c.Filtered
		s.FilteredKernel = c.Filtered
	}
	return s
}

func (s *Summary) add(o Summary) {
	s.Events += o.Events
	s.LostRecords += o.LostRecords
	s.LostBytes += o.LostBytes
	s.Truncated += o.Truncated
	s.Desyncs += o.Desyncs
	s.DupSegments += o.DupSegments
	s.SkippedBytes += o.SkippedBytes
	s.Unwritten += o.Unwritten
	s.Malformed += o.Malformed
	s.Filtered += o.Filtered
	s.FilteredKernel += o.FilteredKernel
	s.Evicted += o.Evicted
	s.DroppedRequests += o.DroppedRequests
	s.GapBytes += o.GapBytes
	s.Uncaptured.add(o.Uncaptured)
	s.CutStreams += o.CutStreams
}

// ParserStats returns the stream parsers' counters. Call it only after Run
// returned.
func (t *Tracer) ParserStats() httpstream.Stats { return t.stats }

// barrierEvery is how many records Run handles between looks at pending
// Remove requests while records keep coming.
const barrierEvery = 128

// reapEvery is how many records Run handles between looks at the clock for
// reap while records keep coming.
const reapEvery = 1024

// Run reads records until ctx is done, then handles what is left in the
// ring buffer and flushes every sink.
func (t *Tracer) Run(ctx context.Context) error {
	if path := os.Getenv(cpuProfileEnv); path != "" {
		stopProfile, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	rd := t.coll.Reader()
	stop := context.AfterFunc(ctx, func() { rd.Interrupt() })
	defer stop()
	t.running.Store(true)
	defer func() {
		t.running.Store(false)
		close(t.stopped)
	}()
	var rec bpf.Record
	for n := 0; ; n++ {
		err := rd.Next(t.opts.Poll, &rec)
		switch {
		case err == nil:
			t.handle(&rec)
			if n%barrierEvery == 0 {
				t.pollTLS()
				t.serveBarrier(rd, &rec)
			}
			if n%reapEvery == 0 {
				// Under constant load the ring never drains: reap on a
				// timer too.
				t.reap()
			}
			continue
		case errors.Is(err, bpf.ErrMalformedRecord):
			t.skipMalformed(err)
			continue
		case errors.Is(err, bpf.ErrIdle):
		case errors.Is(err, bpf.ErrClosed):
			t.flush()
			return nil
		default:
			return fmt.Errorf("reading capture records: %w", err)
		}
		// Idle: nothing waited for a poll interval, or interrupted.
		t.pollTLS()
		t.flush()
		t.clock.sync()
		t.reap()
		t.serveBarrier(rd, &rec)
		if ctx.Err() != nil {
			t.drainUpTo(rd, &rec, rd.Consumed()+rd.AvailableBytes())
			return nil
		}
	}
}

// skipMalformed counts a record that did not decode and warns, at most every
// ten seconds: the kernel and user space disagree on the record layout,
// which is a bug, but the records after it are still good.
func (t *Tracer) skipMalformed(err error) {
	n := t.malformed.Add(1)
	now := time.Now().UnixNano()
	if now < t.malformedNext {
		return
	}
	t.malformedNext = now + int64(10*time.Second)
	t.opts.OnError(fmt.Errorf("warning: skipped %d capture record(s) that did not decode (last: %v); this is a boxtap bug, please report it", n, err))
}

// serveBarrier answers a pending Remove: it handles every record that was
// already in the ring buffer when it looked, then releases the caller.
func (t *Tracer) serveBarrier(rd *bpf.Reader, rec *bpf.Record) {
	select {
	case done := <-t.barrier:
		t.drainUpTo(rd, rec, rd.Consumed()+rd.AvailableBytes())
		close(done)
	default:
	}
}

// drainUpTo handles records until the reader has consumed `until` bytes or
// the ring is empty. Records produced meanwhile are left for Run, so this
// ends even under constant load.
func (t *Tracer) drainUpTo(rd *bpf.Reader, rec *bpf.Record, until uint64) {
	for rd.Consumed() < until {
		err := rd.Next(0, rec)
		if errors.Is(err, bpf.ErrMalformedRecord) {
			t.skipMalformed(err)
			continue
		}
		if err != nil {
			break
		}
		t.handle(rec)
	}
	t.pollTLS()
	t.flush()
}

func (t *Tracer) flush() {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, tg := range t.targets {
		if err := tg.sink.Flush(); err != nil {
			t.reportWrite(tg, err)
		}
	}
}

func (t *Tracer) reportWrite(tg *Target, err error) {
	tg.mu.Lock()
	first := tg.writeErr == nil
	tg.writeErr = err
	tg.mu.Unlock()
	if first {
		t.opts.OnError(fmt.Errorf("writing events of %s (%s): %w", display.Quote(tg.Info.Name), tg.Info.ShortID(), err))
	}
}

// conn is the user-space state of one TCP connection.
type conn struct {
	hs       *httpstream.Conn
	target   *Target
	owner    bpf.Owner
	hasOwner bool
	comm     string // owner.Comm as a string
	// derived is what emit computes from the owner; setOwner clears it.
	derived  ownerDerived
	tls      bool // fed by the TLS source
	identity output.Identity
	dirs     [2]dirMeta
	cpu      uint16
	lastNs   int64
	cost     int // estimated bytes, as last accounted in Tracer.stateBytes
}

// ownerDerived holds what every event of a connection computes from its
// owner: the executable path (from the tracer's cache of /proc reads) and
// the entity ids (hashes). Computed at the first event after the owner was
// set, not at every event.
type ownerDerived struct {
	ok                                  bool
	exe                                 string
	threadEntity, procEntity, parentEnt uint32
}

// setOwner makes o the connection's owner.
func (c *conn) setOwner(o *bpf.Owner) {
	c.owner = *o
	c.hasOwner = true
	c.comm = commString(&c.owner.Comm)
	c.derived = ownerDerived{}
}

// dirMeta is what the last record of one direction said about its packets.
type dirMeta struct {
	src, dst netip.Addr
	sport    uint16
	dport    uint16
	iface    string
	ifaceRaw [16]int8 // the record's interface name, as iface was made from it
}

func (t *Tracer) handle(rec *bpf.Record) {
	t.mu.RLock()
	tg := t.targets[rec.Ckey]
	t.mu.RUnlock()
	if tg == nil {
		return // detached, or a socket outside any traced cgroup
	}
	if rec.Rflags&bpf.FlagListener != 0 {
		t.orphans.keep(rec, t.clock.epoch(rec.TsTai), tg)
		if t.stateBytes+int64(t.orphans.bytes) > t.stateBudget {
			t.evict()
		}
		return
	}
	c := t.conns[rec.Cookie]
	if c == nil || c.target != tg {
		old := c
		c = &conn{hs: httpstream.NewConn(t.limits(), &t.stats), target: tg}
		if old != nil {
			// The container was traced again (removed and added): the
			// kernel sends the owner only when it changes, so keep it.
			if old.hasOwner {
				c.setOwner(&old.owner)
			}
			t.dropConn(rec.Cookie, old)
		}
		t.conns[rec.Cookie] = c
		// A request that completed the handshake was seen on the
		// listening socket: it is this connection's first bytes.
		for _, o := range t.orphans.take(connKeyOf(rec)) {
			seg := httpstream.Segment{Dir: httpstream.Ingress, Seq: o.seq, Len: o.segLen, Data: o.data,
				Info: httpstream.PacketInfo{TimestampNs: o.ts, PacketLen: o.pktLen}}
			t.current = c
			c.hs.Feed(&seg, t.emitFn)
			t.current = nil
		}
	}
	if rec.Rflags&bpf.FlagGap != 0 {
		t.checkLoss(tg)
	}
	if rec.Owner != nil && (!c.hasOwner || *rec.Owner != c.owner) {
		c.setOwner(rec.Owner)
	}
	dir := rec.Dir & 1
	c.dirs[dir].update(rec)
	c.cpu = rec.Cpu
	now := int64(t.clock.epoch(rec.TsTai))
	c.lastNs = now

	seg := httpstream.Segment{
		Dir:     httpstream.Direction(dir),
		Seq:     rec.Seq,
		Len:     rec.SegLen,
		Data:    rec.Data,
		SkipTo:  rec.SkipTo,
		HasSkip: rec.Rflags&bpf.FlagSkip != 0,
		Gap:     rec.Rflags&bpf.FlagGap != 0,
		FIN:     rec.Rflags&bpf.FlagFIN != 0,
		RST:     rec.Rflags&(bpf.FlagRST|bpf.FlagNotHTTP) != 0, // not HTTP after all: forget it
		// A response the kernel's status filter left out (Options.Filter's
		// --status, given to bpf.Load): paired, never parsed.
		Filtered:       rec.Rflags&bpf.FlagFiltered != 0,
		FilteredStatus: int(rec.Status),
		FilteredEnd:    rec.SkipTo,
		Info: httpstream.PacketInfo{
			TimestampNs: uint64(now),
			PacketLen:   rec.PktLen,
		},
	}
	t.current = c
	c.hs.Feed(&seg, t.emitFn)
	if c.hs.Done() {
		t.current = nil
		t.dropConn(rec.Cookie, c)
		return
	}
	t.account(c)
	t.current = nil
}

func (m *dirMeta) update(rec *bpf.Record) {
	if m.sport != rec.Sport || m.dport != rec.Dport || !m.src.IsValid() {
		m.src = addrOf(rec.Family, rec.Saddr)
		m.dst = addrOf(rec.Family, rec.Daddr)
		m.sport, m.dport = rec.Sport, rec.Dport
	}
	// Compared as the record has it: converting it first cost a copy loop
	// per record.
	if rec.Iface != m.ifaceRaw || m.iface == "" {
		m.ifaceRaw = rec.Iface
		var name [16]byte
		for i, b := range rec.Iface {
			name[i] = byte(b)
		}
		m.iface = cString(name[:])
		if m.iface == "" {
			m.iface = "any"
		}
	}
}

func addrOf(family uint8, b [16]uint8) netip.Addr {
	if family == 4 {
		return netip.AddrFrom4([4]byte{b[0], b[1], b[2], b[3]})
	}
	return netip.AddrFrom16(b)
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// emit writes one event for a framed response.
func (t *Tracer) emit(r *httpstream.Response) {
	if t.opts.MaxEvents > 0 && t.written >= t.opts.MaxEvents {
		return
	}
	c := t.current
	tg := c.target
	e := &t.ev
	*e = output.Event{}
	t.fillExchange(e, c, r)
	if !t.opts.Filter.Match(e) {
		// Left out before anything is encoded, named or written.
		tg.filtered.Add(1)
		return
	}
	e.Timestamp = int64(r.Info.TimestampNs)
	e.ProcessorID = uint32(c.cpu)
	if c.hasOwner && !tg.bare {
		o := &c.owner
		e.ProcessID = o.NsTgid
		e.ThreadID = o.NsTid
		e.ParentProcessID = o.NsPpid
		e.HostProcessID = o.Tgid
		e.HostThreadID = o.Tid
		e.HostParentProcessID = o.Ppid
		e.UserID = o.Uid
		e.MountNS = o.Mntns
		e.PIDNS = o.Pidns
		e.CgroupID = o.CgroupId
		e.ProcessName = c.comm
		d := &c.derived
		if !d.ok {
			*d = ownerDerived{ok: true, exe: t.exe.path(o.Tgid, o.LeaderStartNs),
				threadEntity: output.EntityID(o.Tid, o.StartNs),
				procEntity:   output.EntityID(o.Tgid, o.LeaderStartNs),
				parentEnt:    output.EntityID(o.Ppid, o.ParentStartNs)}
		}
		e.ExecutablePath = d.exe
		e.ThreadStartTime = int64(t.clock.fromMono(o.StartNs))
		e.ThreadEntityID = d.threadEntity
		e.ProcessEntityID = d.procEntity
		e.ParentEntityID = d.parentEnt
	}
	e.HostName = tg.Info.Hostname
	e.Container = output.Container{ID: tg.Info.ID, Name: tg.Info.Name, Image: tg.Info.Image, ImageDigest: tg.Info.ImageDigest}
	e.Kubernetes = output.Kubernetes{PodName: tg.Info.Pod.Name, PodNamespace: tg.Info.Pod.Namespace, PodUID: tg.Info.Pod.UID, PodSandbox: tg.Info.Pod.Sandbox}
	e.ContainerStarted = true
	e.ContainerRuntime = tg.Info.Runtime
	// What names the process and the container is the same for every
	// response of a connection until its owner changes: encode it once.
	if !tg.bare {
		if !c.identity.Matches(e) {
			c.identity.Encode(e)
		}
		e.Identity = &c.identity
	}
	e.LostRecords = tg.lost
	e.Evicted = tg.evicted.Load()
	if t.opts.Observer != nil {
		t.opts.Observer.Observe(e)
	}

	if err := tg.sink.Write(e); err != nil {
		t.reportWrite(tg, err)
		if _, counted := tg.sink.(droppingSink); !counted {
			return
		}
		// The sink took the line and counts it among its unwritten ones, as it does
		// for the lines of a failed flush: it is an event all the same.
	}
	tg.events.Add(1)
	t.written++
	if t.opts.OnEvent != nil {
		t.opts.OnEvent(tg)
	}
}

// fillExchange fills what describes the exchange itself (addresses,
// response, request, latency, direction): all a filter reads.
func (t *Tracer) fillExchange(e *output.Event, c *conn, r *httpstream.Response) {
	d := &c.dirs[r.Dir&1]
	e.Meta = output.PacketMeta{SrcIP: d.src, DstIP: d.dst, SrcPort: d.sport, DstPort: d.dport, Protocol: 6, PacketLen: r.Info.PacketLen, Iface: d.iface}

	t.hdrs = convertHeaders(t.hdrs[:0], r.Headers)
	e.Response = output.Response{Status: r.Status, StatusCode: r.StatusCode, Protocol: r.Proto, Headers: t.hdrs, ContentLength: r.ContentLength}
	if r.Request != nil {
		q := r.Request
		t.reqHdrs = convertHeaders(t.reqHdrs[:0], q.Headers)
		t.req = output.Request{Method: q.Method, Protocol: q.Proto, Host: q.Host, URIPath: q.URI, Headers: t.reqHdrs, ContentLength: q.ContentLength}
		e.Request = &t.req
		e.Latency = time.Duration(r.LatencyNs)
		e.LatencyKnown = true
	}
	if r.Dir == httpstream.Egress {
		e.Direction = output.DirectionEgress
	} else {
		e.Direction = output.DirectionIngress
	}
	// A cut request block makes the event incomplete as much as a cut
	// response block.
	e.Truncated = r.Truncated || r.Request != nil && r.Request.Truncated
	e.TLS = c.tls
	if r.StreamID != 0 {
		t.h2 = output.HTTP2{StreamID: r.StreamID, GRPC: r.HasGRPCStatus, GRPCStatus: int64(r.GRPCStatus),
			GRPCMessage: r.GRPCMessage, Partial: r.Partial}
		e.HTTP2 = &t.h2
	}
}

func convertHeaders(dst []output.Header, src []httpstream.HeaderField) []output.Header {
	for _, h := range src {
		dst = append(dst, output.Header{Name: h.Name, Value: h.Value})
	}
	return dst
}

func commString(comm *[16]int8) string {
	var b [16]byte
	for i, v := range comm {
		b[i] = byte(v)
	}
	return cString(b[:])
}

// checkLoss reads a target's lost-record counter and warns, at most every
// ten seconds per container, when it grew.
func (t *Tracer) checkLoss(tg *Target) {
	if tg.att == nil {
		return
	}
	c, err := tg.att.Counters()
	if err != nil {
		return
	}
	if tg.noteLost(c.LostRecords, time.Now().UnixNano()) {
		t.opts.OnError(fmt.Errorf("warning: %s (%s): the kernel dropped %d capture records so far (ring buffer full); responses may be missing: raise --ring-size",
			display.Quote(tg.Info.Name), tg.Info.ShortID(), tg.lost))
	}
}

// lossWarnEvery is the least time between two loss warnings of one container.
const lossWarnEvery = 10 * time.Second

// noteLost records the kernel's lost-record count read at now (the next events carry it)
// and reports whether it warrants a warning: it grew since the last warning, and the
// last one is at least lossWarnEvery old.
func (tg *Target) noteLost(lost uint64, now int64) bool {
	tg.lost = lost
	if lost <= tg.lostWarned || now < tg.lostNextNs {
		return false
	}
	tg.lostWarned = lost
	tg.lostNextNs = now + int64(lossWarnEvery)
	return true
}

// reap reads the loss counters and reports evictions every second, and
// drops parser state of idle connections and stale listener segments every
// ten.
func (t *Tracer) reap() {
	now := time.Now().UnixNano()
	if now-t.lastLossCheck >= int64(time.Second) {
		t.lastLossCheck = now
		t.mu.RLock()
		for _, tg := range t.targets {
			t.checkLoss(tg)
		}
		t.mu.RUnlock()
		t.warnEvictions()
	}
	if now-t.lastReap < int64(10*time.Second) {
		return
	}
	t.lastReap = now
	t.orphans.expire(now)
	for k, c := range t.conns {
		if now-c.lastNs > int64(t.opts.IdleConn) {
			t.dropConn(k, c)
		}
	}
}

// connKey names a TCP connection by its addresses, from the traced
// socket's side: remote address and port, local address and port.
type connKey struct {
	remote, local         [16]uint8
	remotePort, localPort uint16
}

// connKeyOf is the connection a record belongs to.
func connKeyOf(rec *bpf.Record) connKey {
	if rec.Dir == bpf.DirIngress {
		return connKey{remote: rec.Saddr, remotePort: rec.Sport, local: rec.Daddr, localPort: rec.Dport}
	}
	return connKey{remote: rec.Daddr, remotePort: rec.Dport, local: rec.Saddr, localPort: rec.Sport}
}

// clock converts kernel timestamps to epoch ns.
type clock struct {
	taiMinusReal  int64 // CLOCK_TAI - CLOCK_REALTIME
	realMinusMono int64 // CLOCK_REALTIME - CLOCK_MONOTONIC
}

func (c *clock) sync() {
	var tai, real, mono unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_TAI, &tai)
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &real)
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	c.taiMinusReal = tai.Nano() - real.Nano()
	c.realMinusMono = real.Nano() - mono.Nano()
}

func (c *clock) epoch(tai uint64) uint64 { return uint64(int64(tai) - c.taiMinusReal) }

func (c *clock) fromMono(mono uint64) uint64 { return uint64(int64(mono) + c.realMinusMono) }

// exeCache remembers the executable path of each process.
type exeCache struct {
	m map[exeKey]string
}

type exeKey struct {
	pid   uint32
	start uint64
}

func (x *exeCache) path(pid uint32, start uint64) string {
	k := exeKey{pid, start}
	if p, ok := x.m[k]; ok {
		return p
	}
	p, err := os.Readlink("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/exe")
	if err != nil {
		p = ""
	}
	if len(x.m) > 4096 {
		clear(x.m)
	}
	x.m[k] = p
	return p
}

// cpuProfileEnv names a hidden debugging knob: when set, Run writes a Go CPU
// profile of itself to that file (for `go tool pprof`; see BENCHMARKS.md).
const cpuProfileEnv = "BOXTAP_CPUPROFILE"

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: creating the CPU profile: %w", cpuProfileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: starting the CPU profile: %w", cpuProfileEnv, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
