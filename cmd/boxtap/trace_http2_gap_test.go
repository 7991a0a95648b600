package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/boxtap/boxtap/internal/itest"
)

// A gap in an HTTP/2 connection costs the exchanges in it, not the rest of
// the connection. boxtap is stopped (SIGSTOP) while one prior-knowledge
// connection makes a burst of requests, so its 16 KiB ring overflows and
// records are lost: the HPACK state of both directions is then unknown.
// Before this, the connection gave no event again. Now the requests made on
// the same connection after boxtap caught up are one event each, with the
// path and status that were sent; what could not be known is left empty.
func TestTraceHTTP2ConnectionGivesEventsAgainAfterLostRecords(t *testing.T) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	c := e.startContainer(t, "listening on", "serve-h2c", "-addr", "127.0.0.1:"+strconv.Itoa(port))
	p := e.startTrace(t, []*itest.Container{c}, "--ring-size", "16KiB")

	var dials atomic.Int32
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	get := func(code int) {
		t.Helper()
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/h2/status/%d", port, code))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != code || resp.ProtoMajor != 2 {
			t.Fatalf("got %s %d, want HTTP/2 %d", resp.Proto, resp.StatusCode, code)
		}
	}

	// Before: 200..219; the burst: 500 each; after: 220..239.
	const before, burst, after = 20, 400, 20
	for i := range before {
		get(200 + i)
	}
	if _, err := p.WaitLines(before, traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for range burst {
		get(500)
	}
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The warning comes once boxtap read what the ring held: what follows fits.
	if err := p.WaitStderr("capture records so far", traceStartTimeout); err != nil {
		t.Fatalf("no loss warning after the ring overflowed: %v", err)
	}
	for i := range after {
		get(220 + i)
	}
	x := stopTrace(t, p, syscall.SIGINT)
	if x.code != 0 {
		t.Fatalf("boxtap exited %d:\n%s", x.code, x.stderr)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("the client dialled %d connections, want 1", n)
	}
	m := hxSummaryRE.FindStringSubmatch(x.stderr)
	if m == nil || m[2] == "0" {
		t.Fatalf("the exit line reports no lost records:\n%s", x.stderr)
	}

	seen := map[int]int{}
	for _, ev := range h2Events(t, x.events) {
		seen[ev.code]++
		want := fmt.Sprintf("/h2/status/%d", ev.code)
		switch {
		case ev.code == 500:
			// In the burst: any of them may be missing, and a request
			// whose bytes were missed leaves the path empty.
			if ev.path != "" && ev.path != want {
				t.Errorf("burst event with path %q: invented", ev.path)
			}
		case ev.code >= 200 && ev.code < 200+before+after:
			if ev.path != want || ev.method != "GET" {
				t.Errorf("event %v: want GET %s", ev, want)
			}
			if ev.code < 200+before && ev.partial {
				t.Errorf("event %v before the loss is partial", ev)
			}
		default:
			t.Errorf("event %v: no such request was made", ev)
		}
	}
	for code := 200; code < 200+before+after; code++ {
		if seen[code] != 1 {
			t.Errorf("status %d: %d events, want 1", code, seen[code])
		}
	}
	if seen[500] >= burst {
		t.Errorf("%d burst events for %d requests although records were lost", seen[500], burst)
	}
	t.Logf("%d of %d burst exchanges traced; %s", seen[500], burst, hxLastStderrLine(x.stderr))
}
