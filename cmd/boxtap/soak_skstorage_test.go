package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Counting socket-storage entries. bpftool cannot list BPF_MAP_TYPE_SK_STORAGE entries (the
// map type has no get_next_key), but the kernel's sock_diag interface reports, per socket,
// the storage a given sk-storage map holds for it (INET_DIAG_REQ_SK_BPF_STORAGES, Linux
// 5.2). Counting the sockets that report storage in boxtap's "conns" map gives the number
// of live entries in one network namespace (the test's own). Storage of a socket is freed
// with the full socket; TIME_WAIT and request sockets have none.

// Netlink attribute numbers from linux/inet_diag.h and linux/sock_diag.h.
const (
	inetDiagReqSkBPFStorages = 2  // INET_DIAG_REQ_SK_BPF_STORAGES (request)
	inetDiagSkBPFStorages    = 20 // INET_DIAG_SK_BPF_STORAGES (reply)
	nlaFNested               = 1 << 15
	sizeofInetDiagMsg        = 72 // struct inet_diag_msg
)

// inetDiagReqV2 is struct inet_diag_req_v2 (56 bytes) with a zero socket id (dump all).
type inetDiagReqV2 struct {
	Family   uint8
	Protocol uint8
	Ext      uint8
	Pad      uint8
	States   uint32
	ID       [48]byte // struct inet_diag_sockid
}

// skStorageMapID returns the id of the sk-storage map process pid holds (boxtap has one).
func skStorageMapID(t *testing.T, pid int) ebpf.MapID {
	t.Helper()
	infos, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	for _, f := range infos {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var typ, id string
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "map_type:"); ok {
				typ = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "map_id:"); ok {
				id = strings.TrimSpace(v)
			}
		}
		if typ == strconv.Itoa(int(ebpf.SkStorage)) {
			n, err := strconv.ParseUint(id, 10, 32)
			if err != nil {
				t.Fatalf("%s: bad map_id %q", f, id)
			}
			return ebpf.MapID(n)
		}
	}
	t.Fatalf("process %d holds no sk_storage map", pid)
	return 0
}

// skStorageEntries counts the TCP sockets (IPv4 and IPv6) of the test's network namespace
// that hold storage in the sk-storage map id.
func skStorageEntries(t *testing.T, id ebpf.MapID) int {
	t.Helper()
	return len(skStorageSockets(t, id))
}

// skStorageSockets describes ("STATE sport->dport") each TCP socket of the test's network
// namespace that holds storage in the sk-storage map id.
func skStorageSockets(t *testing.T, id ebpf.MapID) []string {
	t.Helper()
	socks, err := skStorageList(id)
	if err != nil {
		t.Fatal(err)
	}
	return socks
}

// skStorageList is skStorageSockets returning its error (for use off the test goroutine).
func skStorageList(id ebpf.MapID) ([]string, error) {
	m, err := ebpf.NewMapFromID(id)
	if err != nil {
		return nil, fmt.Errorf("open sk_storage map %d: %w", id, err)
	}
	defer m.Close()
	var all []string
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := dumpSkStorage(family, m.FD())
		if err != nil {
			return nil, fmt.Errorf("sock_diag dump of map %d: %w", id, err)
		}
		all = append(all, socks...)
	}
	return all, nil
}

// tcpStates names the TCP states of include/net/tcp_states.h.
var tcpStates = []string{"?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
	"CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}

// dumpSkStorage dumps the TCP sockets of one family through NETLINK_SOCK_DIAG, asking for
// the storage of map fd, and describes those whose reply carries some.
func dumpSkStorage(family uint8, mapFD int) ([]string, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("bind netlink: %w", err)
	}

	req := inetDiagReqV2{Family: family, Protocol: unix.IPPROTO_TCP, States: 0xffffffff}
	reqBytes := unsafe.Slice((*byte)(unsafe.Pointer(&req)), unsafe.Sizeof(req))
	// Nested attribute: { SK_DIAG_BPF_STORAGE_REQ_MAP_FD: u32 map fd }.
	inner := make([]byte, 8)
	binary.NativeEndian.PutUint16(inner[0:], 8)
	binary.NativeEndian.PutUint16(inner[2:], unix.SK_DIAG_BPF_STORAGE_REQ_MAP_FD)
	binary.NativeEndian.PutUint32(inner[4:], uint32(mapFD))
	outer := make([]byte, 4, 4+len(inner))
	binary.NativeEndian.PutUint16(outer[0:], uint16(4+len(inner)))
	binary.NativeEndian.PutUint16(outer[2:], inetDiagReqSkBPFStorages|nlaFNested)
	outer = append(outer, inner...)

	msgLen := unix.NLMSG_HDRLEN + len(reqBytes) + len(outer)
	msg := make([]byte, unix.NLMSG_HDRLEN, msgLen)
	binary.NativeEndian.PutUint32(msg[0:], uint32(msgLen))
	binary.NativeEndian.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	msg = append(msg, reqBytes...)
	msg = append(msg, outer...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send sock_diag request: %w", err)
	}

	var socks []string
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("receive sock_diag reply: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("parse sock_diag reply: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return socks, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return nil, fmt.Errorf("sock_diag: %w", unix.Errno(-errno))
					}
				}
				return socks, nil
			case unix.SOCK_DIAG_BY_FAMILY:
				if len(m.Data) >= sizeofInetDiagMsg && hasAttr(m.Data[sizeofInetDiagMsg:], inetDiagSkBPFStorages) {
					state := "?"
					if int(m.Data[1]) < len(tcpStates) {
						state = tcpStates[m.Data[1]]
					}
					socks = append(socks, fmt.Sprintf("%s %d->%d", state,
						binary.BigEndian.Uint16(m.Data[4:]), binary.BigEndian.Uint16(m.Data[6:])))
				}
			}
		}
	}
}

// hasAttr reports whether a run of netlink attributes holds one of type typ.
func hasAttr(b []byte, typ uint16) bool {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		at := binary.NativeEndian.Uint16(b[2:]) &^ (nlaFNested | 1<<14)
		if l < 4 || l > len(b) {
			return false
		}
		if at == typ {
			return true
		}
		adv := (l + 3) &^ 3
		if adv > len(b) {
			return false
		}
		b = b[adv:]
	}
	return false
}
