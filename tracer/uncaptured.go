package tracer

import (
	"fmt"

	"github.com/boxtap/boxtap/bpf"
)

// Uncaptured counts what the kernel let pass without capturing it. Nothing
// here is an error of the traced container's own making except NotHTTP; the
// other two mean boxtap could not look at some packets at all.
type Uncaptured struct {
	// NotHTTP are connections the kernel classified as not HTTP/1.x.
	NotHTTP uint64
	// NoStorage are packets of sockets for which no connection state could
	// be allocated in the kernel (memory pressure).
	NoStorage uint64
	// NestOverflow are packets that arrived while the capture programs were
	// already running nested deeper than their per-CPU buffers allow.
	NestOverflow uint64
}

func uncapturedOf(c bpf.Counters) Uncaptured {
	return Uncaptured{NotHTTP: c.NotHTTP, NoStorage: c.NoStorage, NestOverflow: c.NestOverflow}
}

func (u *Uncaptured) add(o Uncaptured) {
	u.NotHTTP += o.NotHTTP
	u.NoStorage += o.NoStorage
	u.NestOverflow += o.NestOverflow
}

// String is the part of the exit line about uncaptured traffic.
func (u Uncaptured) String() string {
	return fmt.Sprintf("%d connections not HTTP, %d packets without socket storage, %d packets nested too deep",
		u.NotHTTP, u.NoStorage, u.NestOverflow)
}

// StopNote is the part of a container's stop line about uncaptured
// traffic: empty when there was none.
func StopNote(c bpf.Counters) string {
	s := ""
	if c.NotHTTP > 0 {
		s += fmt.Sprintf(", %d connections not HTTP", c.NotHTTP)
	}
	if c.NoStorage > 0 {
		s += fmt.Sprintf(", %d packets without socket storage", c.NoStorage)
	}
	if c.NestOverflow > 0 {
		s += fmt.Sprintf(", %d packets nested too deep", c.NestOverflow)
	}
	return s
}
