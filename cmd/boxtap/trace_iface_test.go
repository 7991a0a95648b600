package main

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// TestTraceBridgeNetworkEventsNameTheContainersInterface: a server in a container on a
// bridge network of the test's own answers the host over the bridge; every event names
// the container's own interface (not lo, not "any"), its addresses on that network and
// the request it answers.
func TestTraceBridgeNetworkEventsNameTheContainersInterface(t *testing.T) {
	e := newTraceEnv(t)
	network := hxBridgeNetwork(t, e.docker)
	const port = 8080 // inside the container's own network namespace
	c := e.hxRun(t, "iface", network, "listening on", nil, "serve", "-addr", fmt.Sprintf("0.0.0.0:%d", port))
	server := containerInit(t, c)
	ip := strings.TrimSpace(c.Inspect(fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", network)))
	gateway := strings.TrimSpace(c.Inspect(fmt.Sprintf("{{(index .NetworkSettings.Networks %q).Gateway}}", network)))
	if ip == "" || gateway == "" {
		t.Fatalf("container %s on %s: address %q gateway %q", c.Name, network, ip, gateway)
	}
	iface := defaultRouteIface(t, c.PID())
	if iface == "" || iface == "lo" {
		t.Fatalf("container %s: default route through %q", c.Name, iface)
	}
	p := e.startTrace(t, []*itest.Container{c})

	// Requests go only to the container this test created, on its own network.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	const n = 3
	for i := range n {
		resp, err := client.Get(fmt.Sprintf("http://%s:%d/bytes/%d", ip, port, i+1))
		if err != nil {
			t.Fatalf("GET from the host to %s: %v", ip, err)
		}
		resp.Body.Close()
	}
	if _, err := p.WaitLines(n, traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	vs := viewEvents(t, stopTraceOK(t, p, syscall.SIGINT))
	requireCount(t, vs, n)
	for i, v := range vs {
		checkOrigin(t, i, v, c, e.image, server)
		checkEndpoints(t, i, v, ip, port, gateway, 0)
		if v.meta.Iface != iface {
			t.Errorf("event %d: iface %q, want the container's interface %q", i, v.meta.Iface, iface)
		}
		if v.direction != "egress" || v.resp.StatusCode != 200 || v.req == nil || v.req.URIPath != fmt.Sprintf("/bytes/%d", i+1) {
			t.Errorf("event %d: direction %q status %d request %+v, want egress 200 /bytes/%d", i, v.direction, v.resp.StatusCode, v.req, i+1)
		}
	}
}

// defaultRouteIface returns the interface of the default route in the network namespace
// of process pid, from /proc/PID/net/route (independent of how boxtap names interfaces).
func defaultRouteIface(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/route")
	if err != nil {
		t.Fatalf("routes of pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		// Iface Destination Gateway Flags ...: the default route has destination 0.
		if f := strings.Fields(line); len(f) > 2 && f[1] == "00000000" {
			return f[0]
		}
	}
	t.Fatalf("pid %d has no default route:\n%s", pid, b)
	return ""
}
