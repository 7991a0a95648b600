package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// lossyPort is the server's port inside the test container's own network namespace.
const lossyPort = 8080

// lossyRules make packets of lossyPort go missing and arrive twice inside the container's
// network namespace. Drops happen in the input hook, after the sender's cgroup egress
// program has seen the packet: a dropped data segment is seen twice at egress (original
// and retransmit), a dropped pure ACK makes the sender retransmit data the receiver already
// had, so the retransmit reaches the ingress program twice. dup sends a copy of some
// packets back through lo, so the receiver's ingress sees exact duplicates.
func lossyRules(table string, lossPct, dupPct int) string {
	return fmt.Sprintf(`table ip %[1]s {
  chain in {
    type filter hook input priority 0; policy accept;
    tcp dport %[2]d numgen random mod 100 < %[3]d counter drop comment "drop_to_server"
    tcp sport %[2]d numgen random mod 100 < %[3]d counter drop comment "drop_to_client"
  }
  chain out {
    type filter hook output priority 0; policy accept;
    tcp dport %[2]d numgen random mod 100 < %[4]d counter dup to 127.0.0.1 device "lo" comment "dup_to_server"
    tcp sport %[2]d numgen random mod 100 < %[4]d counter dup to 127.0.0.1 device "lo" comment "dup_to_client"
  }
}
`, table, lossyPort, lossPct, dupPct)
}

// nftCounters returns the packet counter of each commented rule of an nftables table.
func nftCounters(t *testing.T, pid int, table string) map[string]uint64 {
	t.Helper()
	out := hxCommand(t, "", "nsenter", "-t", strconv.Itoa(pid), "-n", "nft", "-j", "list", "table", "ip", table)
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Comment string            `json:"comment"`
				Expr    []json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("decode nft -j output: %v\n%s", err, out)
	}
	counters := map[string]uint64{}
	for _, item := range doc.Nftables {
		if item.Rule == nil || item.Rule.Comment == "" {
			continue
		}
		for _, raw := range item.Rule.Expr {
			var e struct {
				Counter *struct {
					Packets uint64 `json:"packets"`
				} `json:"counter"`
			}
			if json.Unmarshal(raw, &e) == nil && e.Counter != nil {
				counters[item.Rule.Comment] = e.Counter.Packets
			}
		}
	}
	return counters
}

// TestHardeningLossyNetwork: inside one container's own network namespace (a bridge
// network, not the host's), a client and a server exchange 2,000 responses over 127.0.0.1
// while nftables drops about 4 % of the packets (data and pure ACKs, both ways) and
// duplicates about 3 %. Both sides are traced: the server's egress and the client's ingress
// must each yield exactly one event per response, with the right status, and no duplicate.
func TestHardeningLossyNetwork(t *testing.T) {
	e := newTraceEnv(t)
	hxRequireTool(t, "nft", "nftables")
	hxRequireTool(t, "nsenter", "util-linux")
	network := hxBridgeNetwork(t, e.docker)
	addr := fmt.Sprintf("127.0.0.1:%d", lossyPort)
	c := e.hxRun(t, "lossy", network, "listening on", nil, "serve", "-addr", addr)
	pid := strconv.Itoa(c.PID())

	// A 200 ms minimum retransmission timeout would make 2,000 lossy exchanges take
	// minutes; the container's own loopback routes get 10 ms.
	for _, dst := range []string{"127.0.0.0/8", "127.0.0.1"} {
		hxCommand(t, "", "nsenter", "-t", pid, "-n", "ip", "route", "replace", "local", dst, "dev", "lo",
			"proto", "kernel", "scope", "host", "src", "127.0.0.1", "table", "local", "rto_min", "10ms")
	}
	const table = "bxhlossy"
	hxCommand(t, lossyRules(table, 4, 3), "nsenter", "-t", pid, "-n", "nft", "-f", "-")

	p := e.startTrace(t, []*itest.Container{c})

	// Four clients in parallel, one status code each, N = 4 x 500 = 2,000 responses.
	codes := []int{200, 201, 404, 503}
	const perCode = 500
	const n = perCode * 4
	var wg sync.WaitGroup
	errs := make([]error, len(codes))
	outs := make([]string, len(codes))
	for i, code := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = c.Exec("/testapp", "get", "-n", strconv.Itoa(perCode),
				"-url", fmt.Sprintf("http://%s/status/%d", addr, code))
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if errs[i] != nil {
			t.Fatalf("client for status %d: %v", code, errs[i])
		}
		if got := strings.Count(outs[i], fmt.Sprintf("%d %d\n", code, len(fmt.Sprintf("status %d\n", code)))); got != perCode {
			t.Fatalf("client for status %d got %d complete responses, want %d:\n%s", code, got, perCode, hxTail(outs[i], 500))
		}
	}

	counters := nftCounters(t, c.PID(), table)
	t.Logf("nftables packet counters: %v", counters)
	for _, rule := range []string{"drop_to_server", "drop_to_client", "dup_to_server", "dup_to_client"} {
		if counters[rule] == 0 {
			t.Errorf("nftables rule %s never matched: the lossy path was not exercised", rule)
		}
	}

	// A late retransmit or duplicate can reach the programs only while a connection still
	// has data in flight. Once every connection of the port is closed or in TIME-WAIT, none
	// can; boxtap then reads what the ring holds before it exits.
	var open []string
	if !hxWaitUntil(time.Minute, func() bool { open = openConns(t, c.PID(), lossyPort); return len(open) == 0 }) {
		t.Fatalf("connections of port %d still open after every client finished:\n%s", lossyPort, strings.Join(open, "\n"))
	}
	if _, err := p.WaitLines(2*n, traceRunTimeout/2); err != nil {
		t.Logf("waiting for %d events: %v", 2*n, err)
	}
	x := stopTrace(t, p, syscall.SIGINT)
	if x.code != 0 {
		t.Fatalf("boxtap exited with status %d:\n%s", x.code, x.stderr)
	}
	sum := hxParseSummary(t, x.stderr)
	t.Logf("%s", hxLastStderrLine(x.stderr))

	type key struct {
		dir  string
		code int
	}
	got := map[key]int{}
	for i, v := range viewEvents(t, x.events) {
		got[key{v.direction, v.resp.StatusCode}]++
		if v.req == nil || v.req.URIPath != fmt.Sprintf("/status/%d", v.resp.StatusCode) {
			t.Errorf("event %d: status %d paired with request %+v", i, v.resp.StatusCode, v.req)
		}
		// Server egress and client ingress both carry the response from the server's port.
		checkEndpoints(t, i, v, "127.0.0.1", lossyPort, "127.0.0.1", 0)
	}
	for _, code := range codes {
		for _, dir := range []string{"egress", "ingress"} {
			if got[key{dir, code}] != perCode {
				t.Errorf("%s events with status %d: %d, want exactly %d", dir, code, got[key{dir, code}], perCode)
			}
		}
	}
	if len(x.events) != 2*n {
		t.Errorf("%d events in all, want exactly %d (server egress %d + client ingress %d)", len(x.events), 2*n, n, n)
	}
	if sum.events != uint64(len(x.events)) {
		t.Errorf("counts line says %d events, stdout has %d", sum.events, len(x.events))
	}
	if sum.retransmits == 0 {
		t.Errorf("counts line reports 0 retransmits dropped: the kernel saw no retransmit or duplicate")
	}
	if sum.lostRecords != 0 {
		t.Errorf("counts line reports %d lost records at this low rate", sum.lostRecords)
	}
}

// openConns lists the TCP connections of port in the network namespace of pid that are
// neither listening nor in TIME-WAIT (ss's lines).
func openConns(t *testing.T, pid, port int) []string {
	t.Helper()
	out := hxCommand(t, "", "nsenter", "-t", strconv.Itoa(pid), "-n", "ss", "-Htan")
	var open []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] == "LISTEN" || f[0] == "TIME-WAIT" {
			continue
		}
		p := ":" + strconv.Itoa(port)
		if strings.HasSuffix(f[3], p) || strings.HasSuffix(f[4], p) {
			open = append(open, line)
		}
	}
	return open
}

// hxTail returns the last n bytes of s.
func hxTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
