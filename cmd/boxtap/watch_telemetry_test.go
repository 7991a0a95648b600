package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/runtime/containerd/ctrtest"
)

// boxtap watch takes the same telemetry options as trace: a container that
// starts after it is counted in the metrics and gets its spans.
func TestWatchFeedsMetricsAndSpansOfContainersThatStartLater(t *testing.T) {
	e := newWatchEnv(t, "")
	d := itest.RequireDocker(t)
	mark := ctrtest.RandomID("tel")
	recv := startOTLPReceiver(t, "grpc", nil)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
	p := e.startBoxtap(t, "watch", "--debug", "--label", "boxtap-watch="+mark, "--output", "none",
		"--metrics-addr", metricsAddr, "--otlp-endpoint", "http://"+recv.addr)
	if err := p.WaitStderr("debug: connected to Docker", traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	port := itest.FreePort(t)
	c := d.Run(t, itest.RunOpts{Flags: []string{"--label", "boxtap-watch=" + mark}, Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}})
	if err := p.WaitStderr(fmt.Sprintf("tracing %s (%s)\n", c.Name, itest.ShortID(c.ID)), traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	const n = 4
	getN(t, fmt.Sprintf("http://127.0.0.1:%d/status/200", port), n)

	want := fmt.Sprintf(`boxtap_http_request_duration_seconds_count{container=%q,direction="egress",method="GET",route="/status/{id}",status_code="200"} %d`, c.Name, n)
	deadline := time.Now().Add(traceExitTimeout)
	var body string
	for !strings.Contains(body, want) && time.Now().Before(deadline) {
		body = scrape(t, metricsAddr)
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(body, want) {
		t.Fatalf("no %s in the metrics:\n%s", want, body)
	}
	spans := recv.waitSpans(t, n)
	if len(spans) != n {
		t.Fatalf("%d spans, want %d", len(spans), n)
	}
	for _, s := range spans {
		if s.resource["container.id"] != c.ID || s.resource["container.name"] != c.Name {
			t.Errorf("span resource %v, want container %s (%s)", s.resource, c.Name, c.ID)
		}
	}
	if err := p.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(traceExitTimeout); err != nil {
		t.Fatalf("boxtap watch: %v\n%s", err, p.Stderr())
	}
	if !strings.Contains(p.Stderr(), fmt.Sprintf("%d spans exported, 0 dropped", n)) {
		t.Errorf("exit line lacks the spans counts:\n%s", p.Stderr())
	}
}

// scrape reads boxtap's /metrics once ("" while it does not answer).
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
