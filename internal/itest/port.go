package itest

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
)

// FreePort returns a TCP port that is free on 127.0.0.1 and, when the host has IPv6
// loopback, also on ::1. The port is released before returning, so another process could
// take it in between; tests should use it promptly.
func FreePort(t testing.TB) int {
	t.Helper()
	v6 := hasIPv6Loopback()
	var lastErr error
	for attempt := 0; attempt < 50; attempt++ {
		l4, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("FreePort: listen on 127.0.0.1: %v", err)
		}
		port := l4.Addr().(*net.TCPAddr).Port
		if !handedOut.claim(port) {
			// The kernel may offer a closed probe port again: a second
			// server on it would fail to listen while the first answers
			// for both.
			l4.Close()
			lastErr = fmt.Errorf("port %d was already handed out in this test process", port)
			continue
		}
		if !v6 {
			l4.Close()
			return port
		}
		l6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
		l4.Close()
		if err == nil {
			l6.Close()
			return port
		}
		lastErr = err
	}
	t.Fatalf("FreePort: no port free on both 127.0.0.1 and ::1 after 50 attempts: %v", lastErr)
	return 0
}

// portSet remembers the ports FreePort handed out. It is process-wide on
// purpose, like the default Builder: tests of one process share the port
// space, and a port must never go to two of them.
type portSet struct {
	mu    sync.Mutex
	ports map[int]bool
}

var handedOut = portSet{ports: map[int]bool{}}

// claim records port and reports whether it was not handed out before.
func (s *portSet) claim(port int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ports[port] {
		return false
	}
	s.ports[port] = true
	return true
}

// hasIPv6Loopback reports whether ::1 can be bound.
func hasIPv6Loopback() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}
