package tlssource

import (
	"time"

	"github.com/boxtap/boxtap/bpf"
	"golang.org/x/sys/unix"
)

// Gap is how long a process that mapped a TLS library ran uninstrumented:
// from the kernel's notice of the mapping to its uprobes being attached.
// Calls the process made meanwhile are not seen.
type Gap struct {
	PID int
	Gap time.Duration
}

// OnInstrumented has Watch call f, on Watch's goroutine, each time a
// notice led to new uprobes. Call it before Watch.
func (s *Source) OnInstrumented(f func(Gap)) { s.onGap = f }

// noteGap reports the gap of notice m, whose handling attached uprobes.
func (s *Source) noteGap(m bpf.TLSMapped) {
	if s.onGap == nil {
		return
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_TAI, &now); err != nil {
		return
	}
	s.onGap(Gap{PID: int(m.Tgid), Gap: time.Duration(now.Nano() - int64(m.TsTai))})
}
