package tracer

import (
	"bytes"
	"time"

	"github.com/boxtap/boxtap/bpf"
)

// orphan is a segment seen on a listening socket, kept until the accepted
// connection it belongs to shows up.
type orphan struct {
	seq    uint32
	segLen uint32
	data   []byte
	ts     uint64
	pktLen uint32
}

// orphanList is what one connection left on a listening socket.
type orphanList struct {
	segs   []orphan
	bytes  int
	keptNs int64
	id     uint64 // tells this list from a later one of the same connection in orphans.order
	target *Target
}

// orphanRef names one list in the arrival order.
type orphanRef struct {
	k  connKey
	id uint64
}

// orphans are segments seen on listening sockets, by connection. Legitimately
// they are rare and small (a lost handshake ACK leaves the first data segment
// there), but anyone who reaches a listening port can send data segments to
// it: the store is bounded in connections, in bytes per connection and in
// bytes overall, and drops the oldest first. Entries older than orphanTTL are
// dropped too.
type orphans struct {
	m        map[connKey]*orphanList
	order    []orphanRef // by arrival, oldest first; may name lists already gone
	nextID   uint64
	bytes    int
	maxBytes int
}

const (
	orphanTTL      = 10 * time.Second
	maxOrphanConns = 1024
	// maxOrphanConnBytes is one large segment: the records of a 64 KiB
	// segment on loopback.
	maxOrphanConnBytes = 64<<10 + 16*orphanOverhead
	// orphanOverhead is what one kept segment costs besides its bytes.
	orphanOverhead = 64
	// maxOrphanBytes bounds the whole store.
	maxOrphanBytes = 4 << 20
)

func newOrphans(budget int64) orphans {
	return orphans{m: make(map[connKey]*orphanList), maxBytes: int(min(maxOrphanBytes, budget/8))}
}

// keep stores a listener segment for tg. Segments it drops to stay within
// bounds (the new one, when its connection kept enough already, or the
// oldest connections' ones) are counted as evictions of their containers.
func (o *orphans) keep(rec *bpf.Record, ts uint64, tg *Target) {
	now := time.Now().UnixNano()
	size := len(rec.Data) + orphanOverhead
	k := connKeyOf(rec)
	l := o.m[k]
	if l != nil && l.bytes+size > maxOrphanConnBytes {
		tg.evicted.Add(1)
		return
	}
	if l == nil {
		if len(o.m) >= maxOrphanConns {
			o.expire(now)
		}
		for len(o.m) >= maxOrphanConns && o.evictOldest() {
		}
		o.nextID++
		l = &orphanList{keptNs: now, id: o.nextID, target: tg}
		o.m[k] = l
		o.order = append(o.order, orphanRef{k, l.id})
	}
	l.segs = append(l.segs, orphan{seq: rec.Seq, segLen: rec.SegLen, data: bytes.Clone(rec.Data), ts: ts, pktLen: rec.PktLen})
	l.bytes += size
	o.bytes += size
	for o.bytes > o.maxBytes && o.evictOldest() {
	}
}

// take removes and returns what connection k left on its listener.
func (o *orphans) take(k connKey) []orphan {
	if len(o.m) == 0 {
		return nil
	}
	l, ok := o.m[k]
	if !ok {
		return nil
	}
	o.remove(k, l)
	return l.segs
}

func (o *orphans) remove(k connKey, l *orphanList) {
	delete(o.m, k)
	o.bytes -= l.bytes
	if len(o.m) == 0 {
		o.order = o.order[:0]
	} else if len(o.order) > 2*len(o.m)+64 {
		o.compact()
	}
}

// compact drops the names of lists already gone from the order.
func (o *orphans) compact() {
	kept := o.order[:0]
	for _, r := range o.order {
		if l := o.m[r.k]; l != nil && l.id == r.id {
			kept = append(kept, r)
		}
	}
	clear(o.order[len(kept):])
	o.order = kept
}

// oldest returns the oldest list still kept.
func (o *orphans) oldest() (connKey, *orphanList, bool) {
	for len(o.order) > 0 {
		r := o.order[0]
		if l := o.m[r.k]; l != nil && l.id == r.id {
			return r.k, l, true
		}
		o.order = o.order[1:]
	}
	return connKey{}, nil, false
}

// evictOldest drops the oldest list and counts its segments as evicted. It
// returns false when the store is empty.
func (o *orphans) evictOldest() bool {
	k, l, ok := o.oldest()
	if !ok {
		return false
	}
	l.target.evicted.Add(uint64(len(l.segs)))
	o.remove(k, l)
	return true
}

// expire drops lists older than orphanTTL: their connection was never
// accepted, or was accepted before boxtap saw it. They are not evictions.
func (o *orphans) expire(now int64) {
	for {
		k, l, ok := o.oldest()
		if !ok || now-l.keptNs <= int64(orphanTTL) {
			return
		}
		o.remove(k, l)
	}
}
