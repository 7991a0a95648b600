// Package bpf loads boxtap's eBPF collection, attaches it to container
// cgroups and reads the records it produces.
//
// One Collection serves every container a process traces: one set of
// programs, one socket-storage map and one ring buffer. Attaching a container
// adds two cgroup_skb links on its cgroup and an entry in the traced-cgroup
// map; nothing runs for the packets of any other cgroup, and nothing is
// attached anywhere else.
package bpf

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// RecordHeader is the fixed part of a ring-buffer record (struct record in
// include/boxtap.h). Data follows it.
type RecordHeader = captureRecord

// Owner is the task that last sent on a socket (struct owner).
type Owner = captureOwner

// Record flags (enum record_flags).
const (
	FlagSkip  = 1 << 0
	FlagOwner = 1 << 1
	FlagFIN   = 1 << 2
	FlagRST   = 1 << 3
	FlagGap   = 1 << 4
	// FlagListener marks a segment seen on a listening socket: the data
	// segment that completed a handshake whose ACK was lost. Cookie is the
	// listener's; the addresses name the connection.
	FlagListener = 1 << 5
	// FlagNotHTTP: records of this connection were sent before it was
	// classified, and it turned out not to be HTTP: forget it.
	FlagNotHTTP = 1 << 6
	// FlagFiltered: a response that Options.KeepStatus left out starts at
	// the record's Seq and ends at its SkipTo (which is no skip here);
	// nothing of the record's span is captured.
	FlagFiltered = 1 << 7
)

// Directions (enum direction).
const (
	DirEgress  = 0
	DirIngress = 1
)

const (
	headerSize = int(unsafe.Sizeof(captureRecord{}))
	ownerSize  = int(unsafe.Sizeof(captureOwner{}))
)

// OwnerRefresh is how often the kernel sends a connection's owner again
// when it has not changed. User space may forget the owner of a connection
// that was idle for longer than this.
const OwnerRefresh = 60 * time.Second

// MinRingBytes is the smallest ring buffer: it must hold a few of the
// largest records (4 KiB of payload plus the header).
const MinRingBytes = 16 << 10

// Options tune the collection.
type Options struct {
	// RingBytes is the ring buffer size: a power of two, a multiple of the
	// page size. Zero means 4 MiB.
	RingBytes uint32
	// WakeupBytes is how much data waits in the ring before the kernel
	// wakes the reader; the reader also polls on a timer. Zero means a
	// quarter of the ring, at most 256 KiB.
	WakeupBytes uint64
	// CaptureBodies sends every body byte to user space instead of
	// skipping Content-Length bodies in the kernel.
	CaptureBodies bool
	// KeepStatus, when set, says which response status codes (100-599)
	// can match the filter. The kernel leaves out the others wherever it
	// knows where such a response starts and ends, and sends one small
	// FlagFiltered record for each instead of its bytes.
	KeepStatus func(code int) bool
}

// Collection is the loaded eBPF programs and maps.
type Collection struct {
	objs   captureObjects
	reader *ringbuf.Reader

	mu       sync.Mutex
	attached map[uint64]*Attachment
}

// Load checks that the kernel offers what boxtap needs, then loads the
// programs and opens the ring buffer.
func Load(opts Options) (*Collection, error) {
	if err := CheckSystem(); err != nil {
		return nil, err
	}
	spec, err := loadCapture()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded eBPF object: %w", err)
	}
	ring := opts.RingBytes
	if ring == 0 {
		ring = 4 << 20
	}
	if ring < MinRingBytes || ring&(ring-1) != 0 {
		return nil, fmt.Errorf("ring buffer size %d: must be a power of two of at least %d bytes", ring, MinRingBytes)
	}
	spec.Maps["events"].MaxEntries = ring
	wake := opts.WakeupBytes
	if wake == 0 {
		// Wake the reader once a quarter of the ring waits, but no later
		// than at 256 KiB: a small ring must never fill between polls.
		wake = min(256<<10, uint64(ring)/4)
	}
	if err := spec.Variables["wakeup_bytes"].Set(wake); err != nil {
		return nil, fmt.Errorf("setting wakeup_bytes: %w", err)
	}
	if err := spec.Variables["owner_refresh_ns"].Set(uint64(OwnerRefresh)); err != nil {
		return nil, fmt.Errorf("setting owner_refresh_ns: %w", err)
	}
	skip := uint8(1)
	if opts.CaptureBodies {
		skip = 0
	}
	if err := spec.Variables["skip_bodies"].Set(skip); err != nil {
		return nil, fmt.Errorf("setting skip_bodies: %w", err)
	}
	if err := setStatusFilter(spec, opts.KeepStatus); err != nil {
		return nil, err
	}

	c := &Collection{attached: make(map[uint64]*Attachment)}
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("the kernel's verifier rejected boxtap's programs (%v); boxtap needs Linux 6.3 or later with BTF", lastLines(verr.Log, 3))
		}
		return nil, fmt.Errorf("loading eBPF programs: %w; boxtap needs Linux 6.3 or later with BTF, run as root", err)
	}
	releaseLoadMemory()
	c.reader, err = ringbuf.NewReader(c.objs.Events)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("opening the ring buffer: %w", err)
	}
	return c, nil
}

// releaseLoadMemory hands the heap that loading took (the kernel's BTF,
// parsed to relocate the programs, is garbage once they are loaded) back to
// the kernel before the ring buffer is mapped.
func releaseLoadMemory() {
	debug.FreeOSMemory()
}

func lastLines(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

// Close detaches every container and releases all kernel objects.
func (c *Collection) Close() error {
	c.mu.Lock()
	atts := make([]*Attachment, 0, len(c.attached))
	for _, a := range c.attached {
		atts = append(atts, a)
	}
	c.mu.Unlock()
	var errs []error
	for _, a := range atts {
		errs = append(errs, a.Close())
	}
	if c.reader != nil {
		errs = append(errs, c.reader.Close())
	}
	errs = append(errs, c.objs.Close())
	return errors.Join(errs...)
}

// Attachment is one traced cgroup.
type Attachment struct {
	c        *Collection
	cgroupID uint64
	links    []link.Link
	once     sync.Once

	// final are the counters read at detach time. Close writes them while
	// a tracer's reader may call Counters.
	finalMu sync.Mutex
	final   Counters
}

// Attach starts capturing in the cgroup directory dir, whose cgroup id is
// cgroupID. Sockets in descendant cgroups are captured too and reported
// under cgroupID.
func (c *Collection) Attach(dir string, cgroupID uint64) (*Attachment, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.attached[cgroupID]; ok {
		return nil, fmt.Errorf("cgroup %s is already traced by this process", dir)
	}
	a := &Attachment{c: c, cgroupID: cgroupID}
	zero := make([]captureCounters, ebpf.MustPossibleCPU())
	if err := c.objs.Stats.Put(cgroupID, zero); err != nil {
		return nil, fmt.Errorf("creating counters for cgroup %s: %w", dir, err)
	}
	if err := c.objs.TracedCgroups.Put(cgroupID, captureTraced{Ckey: cgroupID}); err != nil {
		c.objs.Stats.Delete(cgroupID)
		return nil, fmt.Errorf("registering cgroup %s: %w", dir, err)
	}
	for _, at := range []struct {
		typ  ebpf.AttachType
		prog *ebpf.Program
	}{
		{ebpf.AttachCGroupInetEgress, c.objs.CaptureEgress},
		{ebpf.AttachCGroupInetIngress, c.objs.CaptureIngress},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: at.typ, Program: at.prog})
		if err != nil {
			a.detach()
			return nil, fmt.Errorf("attaching to cgroup %s: %w", dir, err)
		}
		a.links = append(a.links, l)
	}
	c.attached[cgroupID] = a
	return a, nil
}

// CgroupID is the id of the traced cgroup; records carry it as Ckey.
func (a *Attachment) CgroupID() uint64 { return a.cgroupID }

// Counters sums the kernel's per-CPU counters for this cgroup. After Close
// it returns the values read at detach time.
func (a *Attachment) Counters() (Counters, error) {
	var per []captureCounters
	if err := a.c.objs.Stats.Lookup(a.cgroupID, &per); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			a.finalMu.Lock()
			defer a.finalMu.Unlock()
			return a.final, nil
		}
		return Counters{}, fmt.Errorf("reading counters: %w", err)
	}
	var sum Counters
	for _, v := range per {
		sum.LostRecords += v.LostRecords
		sum.LostBytes += v.LostBytes
		sum.DupSegments += v.DupSegments
		sum.SkippedBytes += v.SkippedBytes
		sum.NotHTTP += v.NotHttp
		sum.NoStorage += v.NoStorage
		sum.NestOverflow += v.NestOverflow
		sum.Filtered += v.Filtered
	}
	return sum, nil
}

// Counters are the kernel's per-container counts.
type Counters struct {
	LostRecords  uint64 // records the ring buffer had no room for
	LostBytes    uint64 // payload bytes in those records
	DupSegments  uint64 // retransmitted or duplicate segments dropped
	SkippedBytes uint64 // body bytes skipped in the kernel
	NotHTTP      uint64 // connections classified as not HTTP
	NoStorage    uint64 // packets passed uncaptured: no socket storage could be allocated
	NestOverflow uint64 // packets passed uncaptured: programs nested deeper than the per-CPU buffers
	Filtered     uint64 // responses the status filter left out in the kernel
}

// Close detaches the programs from the cgroup. It is safe to call twice.
func (a *Attachment) Close() error {
	var err error
	a.once.Do(func() {
		if cnt, cerr := a.Counters(); cerr == nil {
			a.finalMu.Lock()
			a.final = cnt
			a.finalMu.Unlock()
		}
		a.c.mu.Lock()
		delete(a.c.attached, a.cgroupID)
		a.c.mu.Unlock()
		err = a.detach()
	})
	return err
}

func (a *Attachment) detach() error {
	var errs []error
	for _, l := range a.links {
		errs = append(errs, l.Close())
	}
	a.links = nil
	if err := a.c.objs.TracedCgroups.Delete(a.cgroupID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, err)
	}
	if err := a.c.objs.Stats.Delete(a.cgroupID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Record is one decoded ring-buffer record. It aliases the reader's buffer
// and is valid only until the next read.
type Record struct {
	*RecordHeader
	// Owner is the task now sending on the socket, when it changed since
	// the connection's previous record (FlagOwner); nil otherwise.
	Owner *Owner
	Data  []byte
}

// Reader reads records. It is used by one goroutine.
type Reader struct {
	rb       *ringbuf.Reader
	raw      ringbuf.Record
	consumed uint64
	// armed: the ring reader's deadline is a poll deadline set since the
	// last time Next came back empty.
	armed bool
}

// Consumed is how many ring-buffer bytes Next has read so far, counted the
// way AvailableBytes counts them (with each record's 8-byte header).
func (r *Reader) Consumed() uint64 { return r.consumed }

// AvailableBytes is how many bytes wait in the ring buffer now.
func (r *Reader) AvailableBytes() uint64 { return uint64(r.rb.AvailableBytes()) }

// Reader returns the collection's record reader.
func (c *Collection) Reader() *Reader { return &Reader{rb: c.reader} }

// pastDeadline makes the ring reader return at once when it is empty.
var pastDeadline = time.Unix(0, 1)

// ErrIdle is returned by Next when no record arrived within the poll
// interval: a good moment to flush output.
var ErrIdle = errors.New("no record within the poll interval")

// ErrClosed is returned by Next once the collection is closed.
var ErrClosed = ringbuf.ErrClosed

// Next returns the next record, waiting up to poll for one (not at all when
// poll is zero). The poll deadline is set when Next starts waiting after it
// last came back empty, not for every record (that read the clock once per
// record): after a long run of records, Next returns ErrIdle as soon as the
// ring is empty, which is when callers flush their output anyway.
func (r *Reader) Next(poll time.Duration, rec *Record) error {
	switch {
	case poll <= 0:
		r.rb.SetDeadline(pastDeadline)
		r.armed = false
	case !r.armed:
		r.rb.SetDeadline(time.Now().Add(poll))
		r.armed = true
	}
	if err := r.rb.ReadInto(&r.raw); err != nil {
		r.armed = false
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ringbuf.ErrFlushed) {
			return ErrIdle
		}
		return err
	}
	r.consumed += (uint64(len(r.raw.RawSample)) + 8 + 7) &^ 7
	return DecodeRecord(r.raw.RawSample, rec)
}

// ErrMalformedRecord is wrapped by the errors of DecodeRecord (and so of
// Next): the record was skipped, the next one can be read.
var ErrMalformedRecord = errors.New("malformed ring-buffer record")

// DecodeRecord points rec at the header, owner and data of one raw
// ring-buffer sample, without copying. It fails, wrapping
// ErrMalformedRecord, on a sample too short for its header, its owner or the
// data length the header claims.
func DecodeRecord(raw []byte, rec *Record) error {
	if len(raw) < headerSize {
		return fmt.Errorf("%w: %d bytes, shorter than a header", ErrMalformedRecord, len(raw))
	}
	if uintptr(unsafe.Pointer(&raw[0]))%8 != 0 {
		return fmt.Errorf("%w: misaligned", ErrMalformedRecord)
	}
	rec.RecordHeader = (*captureRecord)(unsafe.Pointer(&raw[0]))
	rec.Owner = nil
	off := headerSize
	if rec.Rflags&FlagOwner != 0 {
		if off+ownerSize > len(raw) {
			return fmt.Errorf("%w: flags an owner but has %d bytes after its header", ErrMalformedRecord, len(raw)-headerSize)
		}
		rec.Owner = (*captureOwner)(unsafe.Pointer(&raw[off]))
		off += ownerSize
	}
	n := int(rec.DataLen)
	if off+n > len(raw) {
		return fmt.Errorf("%w: claims %d data bytes, has %d", ErrMalformedRecord, n, len(raw)-off)
	}
	rec.Data = raw[off : off+n]
	return nil
}

// Interrupt makes a blocked Next return ErrIdle at once (for shutdown).
func (r *Reader) Interrupt() error { return r.rb.Flush() }

// setStatusFilter turns keep into the kernel's status bitmap; nil keeps
// every status and leaves the kernel's filter off.
func setStatusFilter(spec *ebpf.CollectionSpec, keep func(int) bool) error {
	if keep == nil {
		return nil
	}
	var bits [16]uint64
	for code := 100; code < 600; code++ {
		if keep(code) {
			bits[code/64] |= 1 << (code % 64)
		}
	}
	if err := spec.Variables["keep_status"].Set(bits); err != nil {
		return fmt.Errorf("setting keep_status: %w", err)
	}
	if err := spec.Variables["filter_status"].Set(uint8(1)); err != nil {
		return fmt.Errorf("setting filter_status: %w", err)
	}
	return nil
}
