package tracer

import (
	"testing"

	"github.com/boxtap/boxtap/bpf"
)

// FuzzOrphanStore runs arbitrary sequences of listener segments, takes, expiries and
// evictions through the orphan store and checks its bounds and its byte count after
// every step.
func FuzzOrphanStore(f *testing.F) {
	f.Add([]byte{0, 1, 200, 0, 1, 200, 1, 1, 0, 2, 3, 255})
	f.Add([]byte{0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0, 255, 3, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		o := newOrphans(1 << 20) // a 128 KiB store: bounds are reached quickly
		tg := &Target{}
		data := make([]byte, 4096)
		now := int64(0)
		for len(ops) >= 3 {
			op, port, size := ops[0]%4, uint16(ops[1]), int(ops[2])*16
			ops = ops[3:]
			rec := record(recSpec{dir: bpf.DirIngress, seq: uint32(size), data: string(data[:size])})
			rec.Sport = 50000 + port%64
			switch op {
			case 0, 1:
				o.keep(rec, 0, tg)
			case 2:
				o.take(connKeyOf(rec))
			case 3:
				now += int64(orphanTTL) / 3
				o.expire(now + 1<<62) // everything is old by then
			}
			sum := 0
			for _, l := range o.m {
				if l.bytes > maxOrphanConnBytes {
					t.Fatalf("one connection keeps %d bytes, over %d", l.bytes, maxOrphanConnBytes)
				}
				sum += l.bytes
			}
			if sum != o.bytes {
				t.Fatalf("store counts %d bytes, holds %d", o.bytes, sum)
			}
			if o.bytes > o.maxBytes || len(o.m) > maxOrphanConns {
				t.Fatalf("store holds %d bytes in %d connections, over its bounds", o.bytes, len(o.m))
			}
			for k, l := range o.m {
				found := false
				for _, r := range o.order {
					found = found || r.k == k && r.id == l.id
				}
				if !found {
					t.Fatalf("connection %v is kept but not in the order: it could never be evicted", k)
				}
			}
		}
	})
}
