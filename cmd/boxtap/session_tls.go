package main

import (
	"fmt"

	"github.com/boxtap/boxtap/internal/display"
	"github.com/boxtap/boxtap/internal/tlssource"
	"github.com/boxtap/boxtap/runtime/container"
)

// unreadableTLS counts, per traced cgroup, the processes whose TLS boxtap
// cannot read (--tls), for the stop and exit lines. Guarded by session.mu.
type unreadableTLS struct {
	names map[uint64]container.Info // traced cgroups by id
	count map[uint64]int
	total int
}

// noteCgroup records which container a cgroup id is, before it is traced:
// the TLS source reports processes while the tracer adds the cgroup.
func (s *session) noteCgroup(id uint64, info container.Info) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unreadable.names == nil {
		s.unreadable.names = map[uint64]container.Info{}
		s.unreadable.count = map[uint64]int{}
	}
	s.unreadable.names[id] = info
}

// reportUnreadable prints the "cannot read" line of one process and counts it.
func (s *session) reportUnreadable(u tlssource.Unreadable) {
	s.mu.Lock()
	info, ok := s.unreadable.names[u.CgroupID]
	if ok {
		s.unreadable.count[u.CgroupID]++
		s.unreadable.total++
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	fmt.Fprintf(s.stderr, "%s (%s): pid %d (%s) uses TLS that boxtap cannot read (%s)\n",
		display.Quote(info.Name), info.ShortID(), u.PID, display.Quote(u.Comm), u.Reason)
}

// unreadableNote is the stop line's part about a cgroup's unreadable TLS
// processes ("" when none).
func (s *session) unreadableNote(id uint64) string {
	s.mu.Lock()
	n := s.unreadable.count[id]
	s.mu.Unlock()
	return plural(n, "process with TLS boxtap cannot read", "processes with TLS boxtap cannot read")
}

// unreadableTotal is the exit line's part ("" when none or without --tls).
func (s *session) unreadableTotal() string {
	s.mu.Lock()
	n := s.unreadable.total
	s.mu.Unlock()
	return plural(n, "process with TLS boxtap cannot read", "processes with TLS boxtap cannot read")
}

func plural(n int, one, many string) string {
	switch {
	case n == 0:
		return ""
	case n == 1:
		return ", 1 " + one
	}
	return fmt.Sprintf(", %d %s", n, many)
}
