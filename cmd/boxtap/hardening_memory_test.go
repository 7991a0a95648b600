package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
)

// The hostile-memory tests: each drives one pattern of issue 10 at the largest scale a test
// process reaches here (20,000 descriptors), against a server in a traced container, with
// boxtap's default --memory-budget. Each asserts boxtap's peak RSS, exact events for a
// well-behaved client afterwards, and reported evictions (memCheck). BENCHMARKS.md has the
// figures.

const memWellBehavedN = 200

// TestMemorySlowClientsStayWithinBudget: 19,000 clients each leave an unfinished 12 KiB
// header block open on a traced server.
func TestMemorySlowClientsStayWithinBudget(t *testing.T) {
	e := newTraceEnv(t)
	addr, p := memStart(t, e, "memslow")
	ctx, tripped := memGuard(t, p.PID())
	block := []byte("GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("s", 12<<10))
	n := memConns(t, ctx, addr, 19000, 64, func(_ int, c net.Conn) error {
		_, err := c.Write(block)
		return err
	})
	t.Logf("%d slow clients connected (boxtap RSS over %d MiB: %v)", n, memAbortRSS>>20, tripped.Load())
	settled := memSettleT(t, p, addr)
	memWellBehaved(t, addr, "/status/203", memWellBehavedN)
	hwm, x := memFinish(t, p, settled+memWellBehavedN)
	memCheck(t, "19,000 slow clients", hwm, x, "/status/203", memWellBehavedN, true)
}

// TestMemoryPipeliningStaysWithinBudget: 2,000 connections each pipeline 20 requests of
// 16 KiB to a traced server that reads them all and answers none.
func TestMemoryPipeliningStaysWithinBudget(t *testing.T) {
	e := newTraceEnv(t)
	sinkPort := itest.FreePort(t)
	sinkAddr := fmt.Sprintf("127.0.0.1:%d", sinkPort)
	script, _ := json.Marshal([]map[string]any{{"recv_until_close": true}})
	sink := e.hxRun(t, "mempipesink", "", "listening on", []string{"--ulimit", "nofile=20000:20000"},
		"script-serve", "-loop", "-timeout", "5m", "-addr", sinkAddr, "-script", string(script))
	addr, p := memStart(t, e, "mempipe", sink)
	ctx, tripped := memGuard(t, p.PID())
	var reqs []byte
	for k := range 20 {
		head := fmt.Sprintf("GET /p%02d HTTP/1.1\r\nHost: x\r\nX-Pad: ", k)
		reqs = append(reqs, head+strings.Repeat("p", 16000-len(head)-4)+"\r\n\r\n"...)
	}
	n := memConns(t, ctx, sinkAddr, 2000, 32, func(_ int, c net.Conn) error {
		_, err := c.Write(reqs)
		return err
	})
	t.Logf("%d pipelining connections sent %d KiB each (boxtap RSS over %d MiB: %v)", n, len(reqs)>>10, memAbortRSS>>20, tripped.Load())
	settled := memSettleT(t, p, addr)
	memWellBehaved(t, addr, "/status/203", memWellBehavedN)
	hwm, x := memFinish(t, p, settled+memWellBehavedN)
	memCheck(t, "2,000 pipelining connections", hwm, x, "/status/203", memWellBehavedN, false)
}

// TestMemoryListenerSegmentsStayWithinBudget: 1,000,000 hand-made ACK+data segments that
// start with "GET " reach the traced server's listening socket from 1,000 source ports
// (on loopback: the cgroup program sees them before TCP drops them).
func TestMemoryListenerSegmentsStayWithinBudget(t *testing.T) {
	e := newTraceEnv(t)
	addr, p := memStart(t, e, "memlisten")
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	ctx, tripped := memGuard(t, p.PID())
	raw := newMemRawSender(t)
	payload := []byte("GET /listener HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("l", 1000))
	var buf []byte
	sent := 0
	for i := 0; i < 1_000_000 && ctx.Err() == nil; i++ {
		// Ports 61000-61999 lie outside the ephemeral range: no real connection has them.
		seg := memSegment{src: [4]byte{127, 0, 0, 1}, dst: [4]byte{127, 0, 0, 1},
			sport: uint16(61000 + i%1000), dport: uint16(port), seq: uint32(i / 1000 * len(payload)), ack: 1, payload: payload}
		var err error
		if buf, err = raw.send(buf, &seg); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		sent++
	}
	t.Logf("%d listener segments sent (boxtap RSS over %d MiB: %v)", sent, memAbortRSS>>20, tripped.Load())
	settled := memSettleT(t, p, addr)
	memWellBehaved(t, addr, "/status/203", memWellBehavedN)
	hwm, x := memFinish(t, p, settled+memWellBehavedN)
	memCheck(t, "1,000,000 listener segments", hwm, x, "/status/203", memWellBehavedN, true)
}

// TestMemoryOutOfOrderStaysWithinBudget: 2,000 connections each start a request, then
// hand-made segments beyond a one-byte hole (about 240 KiB per connection, just under the
// parser's per-direction bound) arrive for them, which the parser buffers waiting for the
// hole to fill.
func TestMemoryOutOfOrderStaysWithinBudget(t *testing.T) {
	e := newTraceEnv(t)
	addr, p := memStart(t, e, "memooo")
	ctx, tripped := memGuard(t, p.PID())
	raw := newMemRawSender(t)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	start := []byte("GET /ooo HTTP/1.1\r\nHost: x\r\n")
	payload := []byte(strings.Repeat("o", 1380))
	n := memConns(t, ctx, addr, 2000, 1, func(i int, c net.Conn) error {
		if _, err := c.Write(start); err != nil {
			return err
		}
		snd, rcv, err := memSeqs(c)
		if err != nil {
			return fmt.Errorf("reading sequence numbers (TCP repair mode): %w", err)
		}
		if i%10 == 9 {
			// Let boxtap read the ring buffer empty now and then: a full ring
			// loses records, and a loss makes the parser give up the holes
			// this test wants it to keep.
			if _, err := memSettle(p, addr, i); err != nil {
				return err
			}
		}
		local := c.LocalAddr().(*net.TCPAddr)
		var buf []byte
		for k := range 175 {
			seg := memSegment{src: [4]byte{127, 0, 0, 1}, dst: [4]byte{127, 0, 0, 1},
				sport: uint16(local.Port), dport: uint16(port), seq: snd + 1 + uint32(k*len(payload)), ack: rcv, payload: payload}
			var err error
			if buf, err = raw.send(buf, &seg); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("%d connections got out-of-order data (boxtap RSS over %d MiB: %v)", n, memAbortRSS>>20, tripped.Load())
	settled := memSettleT(t, p, addr)
	memWellBehaved(t, addr, "/status/203", memWellBehavedN)
	hwm, x := memFinish(t, p, settled+memWellBehavedN)
	memCheck(t, "2,000 connections with out-of-order data", hwm, x, "/status/203", memWellBehavedN, true)
}
