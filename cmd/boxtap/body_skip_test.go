package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// TestTraceKernelSkipsLargeBodiesOnlyWhileFollowingBoundaries checks the README's rule for
// body skipping on one keep-alive connection per case: the kernel follows message
// boundaries from the connection's start and skips a declared body that runs past its
// first segment, but after a small response it stops following boundaries, so a large
// body later on the same connection is copied. The counts line's "body bytes skipped in
// the kernel" tells which happened; the events must be the same either way.
func TestTraceKernelSkipsLargeBodiesOnlyWhileFollowingBoundaries(t *testing.T) {
	const large = 1 << 20
	cases := []struct {
		name  string
		sizes []int // body sizes of the connection's responses, in order
		// skipped reports whether the counts line's skipped bytes are right.
		skipped func(n uint64) bool
		want    string
	}{
		{"large body first is skipped", []int{large, 3},
			func(n uint64) bool { return n > large/2 && n <= large }, "most of the large body"},
		{"large body after a small response is copied", []int{3, large},
			func(n uint64) bool { return n == 0 }, "none"},
	}
	e := newTraceEnv(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sum, vs := runBodySizes(t, e, tc.sizes)
			if !tc.skipped(sum.skipped) {
				t.Errorf("%d body bytes skipped in the kernel, want %s", sum.skipped, tc.want)
			}
			if sum.resyncs != 0 || sum.lostRecords != 0 {
				t.Errorf("%d resyncs, %d lost records, want none", sum.resyncs, sum.lostRecords)
			}
			requireCount(t, vs, len(tc.sizes))
			for i, v := range vs {
				if v.resp.ContentLength != int64(tc.sizes[i]) || v.req == nil || v.req.URIPath != fmt.Sprintf("/r/%d", i+1) {
					t.Errorf("event %d: content_length %d, request %+v; want %d, GET /r/%d", i, v.resp.ContentLength, v.req, tc.sizes[i], i+1)
				}
			}
		})
	}
}

// smallBody is the body size below which runBodySizes sends a response in one write, as
// servers do with small responses; larger bodies follow their header block in a write of
// their own. (A small response whose header block leaves in a segment of its own looks
// like the start of a large one to the kernel, which then keeps following boundaries.)
const smallBody = 1024

// runBodySizes serves one connection whose responses have the given body sizes, traces it, and returns boxtap's counts and events. The server serves one connection
// and exits, so boxtap exits by itself.
func runBodySizes(t *testing.T, e *traceEnv, sizes []int) (hxSummary, []eventView) {
	t.Helper()
	var server, client []map[string]any
	for i, size := range sizes {
		req := fmt.Sprintf("GET /r/%d HTTP/1.1\r\nHost: bxh\r\n\r\n", i+1)
		head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		server = append(server, map[string]any{"recv_request": 1})
		if size < smallBody {
			server = append(server, map[string]any{"send": head + string(bytes.Repeat([]byte("x"), size))})
		} else {
			server = append(server, map[string]any{"send": head}, map[string]any{"send_fill": size})
		}
		client = append(client, map[string]any{"send": req}, map[string]any{"recv_bytes": len(head) + size})
	}
	server = append(server, map[string]any{"recv_until_close": true})
	client = append(client, map[string]any{"close": true})
	serverJSON, _ := json.Marshal(server)
	clientJSON, _ := json.Marshal(client)

	addr := fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
	c := e.hxRun(t, "skip", "host", "listening on", nil, "script-serve", "-addr", addr, "-script", string(serverJSON))
	p := e.startTrace(t, []*itest.Container{c})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := itest.StartProc(t, ctx, e.testapp, "script-client", "-addr", addr, "-script", string(clientJSON))
	if err := cl.Wait(time.Minute); err != nil {
		t.Fatalf("script-client: %v\n%s", err, cl.Stderr())
	}
	x := stopTrace(t, p, nil)
	if x.code != 0 {
		t.Fatalf("boxtap exited with status %d:\n%s", x.code, x.stderr)
	}
	t.Logf("%s", hxLastStderrLine(x.stderr))
	return hxParseSummary(t, x.stderr), viewEvents(t, x.events)
}
