package main

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// tcpSent is what the kernel says a connection sent: data segments (retransmits included)
// and retransmitted segments. Tests that place message boundaries with separate writes
// use it to check that each write did leave as a segment of its own.
type tcpSent struct {
	dataSegments, retransmits uint32
}

// String is the "sent" line script-serve prints per connection.
func (s tcpSent) String() string {
	return fmt.Sprintf("%d data segments, %d retransmitted", s.dataSegments, s.retransmits)
}

// readTCPSent reads TCP_INFO of an open TCP connection.
func readTCPSent(conn net.Conn) (tcpSent, error) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return tcpSent{}, fmt.Errorf("not a TCP connection: %T", conn)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return tcpSent{}, fmt.Errorf("TCP_INFO: %w", err)
	}
	var info *unix.TCPInfo
	var infoErr error
	if err := raw.Control(func(fd uintptr) { info, infoErr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return tcpSent{}, fmt.Errorf("TCP_INFO: %w", err)
	}
	if infoErr != nil {
		return tcpSent{}, fmt.Errorf("TCP_INFO: %w", infoErr)
	}
	return tcpSent{dataSegments: info.Data_segs_out, retransmits: info.Total_retrans}, nil
}
