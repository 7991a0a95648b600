package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	"golang.org/x/sys/unix"
)

// Helpers of the hostile-memory tests (hardening_memory_test.go): boxtap runs with its
// default --memory-budget while the test drives one hostile pattern at the largest scale
// this machine allows (a process may hold 20,000 descriptors), then checks that boxtap's
// peak RSS stayed within the budget, that a well-behaved client was still traced exactly,
// and that the evictions were reported.

// memDefaultBudget is boxtap's default --memory-budget.
const memDefaultBudget = 192 << 20

// memAbortRSS stops an attack early when boxtap's RSS passes it, so that a boxtap without
// a bound (the test's failure case) cannot take the machine down.
const memAbortRSS = 3 * memDefaultBudget

// memAttackTimeout bounds one attack phase.
const memAttackTimeout = 3 * time.Minute

// memRSS reads a "Vm...:  N kB" field of /proc/PID/status, in bytes.
func memRSS(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// memGuard returns a context for the attack that ends when boxtap's RSS passes
// memAbortRSS (or the attack's time bound passes), and whether that happened.
func memGuard(t *testing.T, pid int) (context.Context, *atomic.Bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), memAttackTimeout)
	tripped := &atomic.Bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if rss, err := memRSS(pid, "VmRSS"); err == nil && rss > memAbortRSS {
				tripped.Store(true)
				cancel()
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ctx, tripped
}

// memWellBehaved makes n keep-alive requests for path and fails the test unless all
// complete.
func memWellBehaved(t *testing.T, addr, path string, n int) {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for i := range n {
		resp, err := cl.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("well-behaved request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// memConns opens n connections to addr with `workers` goroutines, writes first(i) on
// connection i, and keeps them open until the test ends. It stops early when ctx ends and
// returns how many were opened.
func memConns(t *testing.T, ctx context.Context, addr string, n, workers int, first func(i int, c net.Conn) error) int {
	t.Helper()
	var (
		mu     sync.Mutex
		conns  []net.Conn
		next   atomic.Int64
		errOne atomic.Value
		wg     sync.WaitGroup
	)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	d := net.Dialer{Timeout: 20 * time.Second}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					if ctx.Err() == nil {
						errOne.CompareAndSwap(nil, fmt.Errorf("connection %d: %w", i, err))
					}
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				if err := first(i, c); err != nil && ctx.Err() == nil {
					errOne.CompareAndSwap(nil, fmt.Errorf("connection %d: %w", i, err))
					return
				}
				if err := memSent(ctx, c); err != nil && ctx.Err() == nil {
					errOne.CompareAndSwap(nil, fmt.Errorf("connection %d: %w", i, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := errOne.Load().(error); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return len(conns)
}

// memSent waits until the peer acknowledged everything written on c, so that the hostile
// bytes have passed the traced socket's ingress before the well-behaved client starts.
func memSent(ctx context.Context, c net.Conn) error {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		var outq int
		var ioErr error
		if err := raw.Control(func(fd uintptr) { outq, ioErr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
			return err
		}
		if ioErr != nil {
			return fmt.Errorf("reading the send queue: %w", ioErr)
		}
		if outq == 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ctx.Err()
}

// memSettle sends requests for /bytes/<1000+tag> until boxtap has written an event for one
// of them: boxtap handles records in order, so by then it has read every hostile record
// already in the ring buffer, and the requests that follow find room there. It returns
// how many events boxtap had written then.
func memSettle(p *itest.Proc, addr string, tag int) (int, error) {
	path := fmt.Sprintf("/bytes/%d", 1000+tag)
	for range 60 {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, fmt.Errorf("settling request: %w", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if _, err := p.WaitLine(`"uri_path":"`+path+`"`, 2*time.Second); err == nil {
			return len(p.Lines()), nil
		}
	}
	return 0, errors.New("boxtap wrote no event for the settling requests")
}

// memSettleT is memSettle for the test goroutine.
func memSettleT(t *testing.T, p *itest.Proc, addr string) int {
	t.Helper()
	n, err := memSettle(p, addr, 999)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// memRawSender sends hand-made IPv4 TCP segments to loopback addresses.
type memRawSender struct{ fd int }

func newMemRawSender(t *testing.T) *memRawSender {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &memRawSender{fd: fd}
}

// memSegment is one TCP segment, addresses in network order.
type memSegment struct {
	src, dst     [4]byte
	sport, dport uint16
	seq, ack     uint32
	payload      []byte
}

const (
	tcpFlagPSH = 0x08
	tcpFlagACK = 0x10
)

// send writes seg (flags ACK|PSH) with valid checksums; loopback receivers check them.
func (r *memRawSender) send(buf []byte, seg *memSegment) ([]byte, error) {
	if seg.dst[0] != 127 {
		return buf, errors.New("hand-made segments go to loopback only")
	}
	n := 40 + len(seg.payload)
	buf = append(buf[:0], make([]byte, n)...)
	ip, tcp := buf[:20], buf[20:]
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(ip[2:], uint16(n))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	copy(ip[12:16], seg.src[:])
	copy(ip[16:20], seg.dst[:])
	binary.BigEndian.PutUint16(ip[10:], memChecksum(0, ip))
	binary.BigEndian.PutUint16(tcp[0:], seg.sport)
	binary.BigEndian.PutUint16(tcp[2:], seg.dport)
	binary.BigEndian.PutUint32(tcp[4:], seg.seq)
	binary.BigEndian.PutUint32(tcp[8:], seg.ack)
	tcp[12], tcp[13] = 5<<4, tcpFlagACK|tcpFlagPSH
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	copy(tcp[20:], seg.payload)
	var pseudo [12]byte
	copy(pseudo[0:4], seg.src[:])
	copy(pseudo[4:8], seg.dst[:])
	pseudo[9] = unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:], memChecksum(memSum(0, pseudo[:]), tcp))
	to := &unix.SockaddrInet4{Addr: seg.dst}
	for tries := 0; ; tries++ {
		err := unix.Sendto(r.fd, buf, 0, to)
		if !errors.Is(err, unix.ENOBUFS) || tries >= 100 {
			return buf, err
		}
		time.Sleep(time.Millisecond) // the device queue is full: let it drain
	}
}

func memSum(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func memChecksum(sum uint32, b []byte) uint16 {
	sum = memSum(sum, b)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// memSeqs returns the next sequence number conn c will send and the next one it expects,
// read in TCP repair mode (CAP_NET_ADMIN), which is left at once.
func memSeqs(c net.Conn) (snd, rcv uint32, err error) {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var opErr error
	err = raw.Control(func(fd uintptr) {
		f := int(fd)
		if opErr = unix.SetsockoptInt(f, unix.SOL_TCP, unix.TCP_REPAIR, 1); opErr != nil {
			return
		}
		defer unix.SetsockoptInt(f, unix.SOL_TCP, unix.TCP_REPAIR, 0)
		const sendQueue, recvQueue = 2, 1 // TCP_SEND_QUEUE, TCP_RECV_QUEUE
		var v int
		if opErr = unix.SetsockoptInt(f, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, sendQueue); opErr != nil {
			return
		}
		if v, opErr = unix.GetsockoptInt(f, unix.SOL_TCP, unix.TCP_QUEUE_SEQ); opErr != nil {
			return
		}
		snd = uint32(v)
		if opErr = unix.SetsockoptInt(f, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, recvQueue); opErr != nil {
			return
		}
		if v, opErr = unix.GetsockoptInt(f, unix.SOL_TCP, unix.TCP_QUEUE_SEQ); opErr != nil {
			return
		}
		rcv = uint32(v)
	})
	return snd, rcv, errors.Join(err, opErr)
}

// memEvictedRE reads the eviction counts of boxtap's exit line.
var memEvictedRE = regexp.MustCompile(`boxtap: \d+ events.*, (\d+) evicted \(memory budget\), (\d+) requests dropped unpaired, (\d+) gap bytes`)

// memCheck is what every hostile-memory test asserts once boxtap has exited: peak RSS
// within the budget, exactly `want` well-behaved events for wantPath, each paired with
// its request (and carrying the evicted arg when sameContainer: the hostile traffic went
// to the well-behaved server's container), and the evictions on stderr and the exit line.
func memCheck(t *testing.T, pattern string, hwm int64, x traceExit, wantPath string, want int, sameContainer bool) {
	t.Helper()
	t.Logf("%s: boxtap peak RSS (VmHWM) %.1f MiB, budget %d MiB", pattern, float64(hwm)/(1<<20), memDefaultBudget>>20)
	t.Logf("%s: %s", pattern, hxLastStderrLine(x.stderr))
	if x.code != 0 {
		t.Errorf("boxtap exited with status %d", x.code)
	}
	if hwm > memDefaultBudget {
		t.Errorf("boxtap's peak RSS %d MiB is over its default memory budget %d MiB", hwm>>20, memDefaultBudget>>20)
	}
	got, unmarked := 0, 0
	for i, v := range viewEvents(t, x.events) {
		if v.req == nil || v.req.URIPath != wantPath {
			if i < 5 || i > len(x.events)-3 {
				t.Logf("event %d: status %d, request %+v", i, v.resp.StatusCode, v.req)
			}
			continue
		}
		got++
		var evicted int64
		for _, a := range v.ev.Args {
			if a.Name == "evicted" {
				evicted, _ = a.Value.(int64)
			}
		}
		if sameContainer && evicted <= 0 {
			if unmarked == 0 {
				t.Errorf("well-behaved event %d has no evicted arg though the state of hostile connections was evicted before it", i)
			}
			unmarked++
		}
	}
	if got != want {
		t.Errorf("%d events of well-behaved requests for %s, want exactly %d", got, wantPath, want)
	}
	if !strings.Contains(x.stderr, "memory budget reached") || !strings.Contains(x.stderr, "raise --memory-budget") {
		t.Errorf("no eviction warning on stderr:\n%s", hxTail(x.stderr, 2000))
	}
	m := memEvictedRE.FindStringSubmatch(x.stderr)
	if m == nil {
		t.Fatalf("exit line has no eviction counts:\n%s", hxTail(x.stderr, 2000))
	}
	if n, _ := strconv.ParseUint(m[1], 10, 64); n == 0 {
		t.Errorf("exit line reports no eviction: %s", m[0])
	}
}

// memStart runs a traced server container (testapp serve on 127.0.0.1:port, host network)
// plus the given extra containers, and boxtap tracing all of them with its defaults.
func memStart(t *testing.T, e *traceEnv, kind string, extra ...*itest.Container) (addr string, p *itest.Proc) {
	t.Helper()
	port := itest.FreePort(t)
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	srv := e.hxRun(t, kind, "", "listening on", []string{"--ulimit", "nofile=20000:20000"}, "serve", "-addr", addr)
	// Peak RSS against the budget is what these tests measure: a race-built
	// boxtap would take several times the memory for the detector itself.
	e.boxtap = itest.BuildBoxtapWithoutRace(t)
	return addr, e.startTrace(t, append([]*itest.Container{srv}, extra...))
}

// memFinish waits for want events in all, reads boxtap's peak RSS and stops it.
func memFinish(t *testing.T, p *itest.Proc, want int) (int64, traceExit) {
	t.Helper()
	if _, err := p.WaitLines(want, traceRunTimeout/2); err != nil {
		t.Logf("waiting for %d events: %v", want, err)
	}
	hwm, err := memRSS(p.PID(), "VmHWM")
	if err != nil {
		t.Fatalf("reading boxtap's peak RSS: %v", err)
	}
	return hwm, stopTrace(t, p, unix.SIGINT)
}
