package main

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// The hook's tracer, given --otlp-endpoint through the hook's options, sends
// one span per exchange it writes to the container's file: a per-container
// tracer, or the host tracer, which keeps an exporter per container (no
// tracer of its own is started for the container).
func TestHookTracerSendsASpanPerExchangeInItsFile(t *testing.T) {
	e := newHookEnv(t)
	for _, mode := range []string{tracerPerContainer, tracerHost} {
		t.Run(mode, func(t *testing.T) { hookSpansPerExchange(t, e, mode) })
	}
}

func hookSpansPerExchange(t *testing.T, e *hookEnv, mode string) {
	recv := startOTLPReceiver(t, "grpc", nil)
	port := itest.FreePort(t)
	id := e.prefix + "otlp-" + mode
	hooks := e.exampleHooks(t)
	otlp := "--otlp-endpoint=http://" + recv.addr
	hooks.CreateRuntime[0].Args = append(hooks.CreateRuntime[0].Args, otlp, "--tracer="+mode)
	hooks.Poststop[0].Args = append(hooks.Poststop[0].Args, otlp, "--tracer="+mode)
	b := e.bundle(t, id, hooks, "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	if err := e.start(t, id, b); err != nil {
		t.Fatal(err)
	}
	if pids, own := tracerPIDs(id), perContainerTracerPIDs(id); len(pids) != 1 || (mode == tracerHost) != (len(own) == 0) {
		t.Fatalf("--tracer=%s: tracers %v, of which the container's own %v\nhook log:\n%s", mode, pids, own, e.hookLog())
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	firstResponse(t, base+"/status/203", time.Now())
	sendRequests(t, base, []viewRequest{{"GET", "/status/404", ""}, {"POST", "/status/503", ""}})
	e.kill(t, id)
	e.delete(t, id)
	waitNoTracer(t, id, 10*time.Second)
	evs := readHookEvents(t, filepath.Join(e.out, id+".json"))
	// The tracer flushed its spans before it exited.
	spans := recv.received()
	var fromEvents, fromSpans []string
	for _, ev := range evs {
		fromEvents = append(fromEvents, fmt.Sprintf("%s %d %s", ev.URIPath, ev.Status, ev.Direction))
	}
	for _, s := range spans {
		a := attrMap(s.span.GetAttributes())
		kind := "?"
		if s.span.GetKind() == tracepb.Span_SPAN_KIND_SERVER {
			kind = "egress"
		}
		fromSpans = append(fromSpans, fmt.Sprintf("%s %s %s", a["url.path"], a["http.response.status_code"], kind))
		if s.resource["container.id"] != id {
			t.Errorf("span of container %q, want %q", s.resource["container.id"], id)
		}
	}
	sort.Strings(fromEvents)
	sort.Strings(fromSpans)
	if len(evs) < 3 || strings.Join(fromEvents, "\n") != strings.Join(fromSpans, "\n") {
		t.Fatalf("spans:\n%s\nevents in the file:\n%s\nhook log:\n%s", strings.Join(fromSpans, "\n"), strings.Join(fromEvents, "\n"), e.hookLog())
	}
}
