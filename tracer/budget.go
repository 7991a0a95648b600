package tracer

import (
	"cmp"
	"fmt"
	"slices"
	"time"
	"unsafe"

	"github.com/boxtap/boxtap/internal/display"
)

// DefaultStateBudget is how many bytes (estimated) the parser state of every
// connection and the buffered listener segments may hold together when
// Options.StateBudget is zero.
const DefaultStateBudget = 64 << 20

// connBaseCost is what a connection costs besides its parser's Footprint:
// the conn itself, its encoded identity and its map entry.
const connBaseCost = int(unsafe.Sizeof(conn{})) + 1024

// evictWarnEvery is the least time between two eviction warnings of one
// container.
const evictWarnEvery = 10 * time.Second

// account updates the state bytes after c's parser ran, and evicts when the
// budget is exceeded.
func (t *Tracer) account(c *conn) {
	cost := connBaseCost + c.hs.Footprint()
	t.stateBytes += int64(cost - c.cost)
	c.cost = cost
	if t.stateBytes+int64(t.orphans.bytes) > t.stateBudget {
		t.evict()
	}
}

// dropConn forgets a connection's state.
func (t *Tracer) dropConn(cookie uint64, c *conn) {
	c.hs.Close()
	t.stateBytes -= int64(c.cost)
	c.cost = 0
	delete(t.conns, cookie)
}

// evict brings the state back to three quarters of the budget: buffered
// listener segments go first (oldest first), then the state of the largest
// connections (the oldest first among equals). A connection that sends
// again is framed anew from its next message. Every eviction is counted for
// the container it belonged to.
func (t *Tracer) evict() {
	goal := t.stateBudget / 4 * 3
	for t.stateBytes+int64(t.orphans.bytes) > goal && t.orphans.evictOldest() {
	}
	if t.stateBytes+int64(t.orphans.bytes) > goal {
		type cand struct {
			cookie uint64
			c      *conn
		}
		cands := make([]cand, 0, len(t.conns))
		for k, c := range t.conns {
			if c != t.current {
				cands = append(cands, cand{k, c})
			}
		}
		slices.SortFunc(cands, func(a, b cand) int {
			if r := cmp.Compare(b.c.cost, a.c.cost); r != 0 {
				return r
			}
			return cmp.Compare(a.c.lastNs, b.c.lastNs)
		})
		for _, e := range cands {
			if t.stateBytes+int64(t.orphans.bytes) <= goal {
				break
			}
			e.c.target.evicted.Add(1)
			t.dropConn(e.cookie, e.c)
		}
	}
	t.warnEvictions()
}

// warnEvictions warns, at most every evictWarnEvery per container, about
// containers whose state was evicted since their last warning.
func (t *Tracer) warnEvictions() {
	now := time.Now().UnixNano()
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, tg := range t.targets {
		n := tg.evicted.Load()
		if n <= tg.evictWarned || now < tg.evictNextNs {
			continue
		}
		t.opts.OnError(fmt.Errorf("warning: %s (%s): memory budget reached: dropped %d connection states or buffered segments so far (largest and oldest first); responses on them may be missing: raise --memory-budget",
			display.Quote(tg.Info.Name), tg.Info.ShortID(), n))
		tg.evictWarned = n
		tg.evictNextNs = now + int64(evictWarnEvery)
	}
}
