package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// promTimeout bounds every wait on Prometheus (start, scrape, query).
const promTimeout = 90 * time.Second

// startPrometheus runs Debian's prometheus on 127.0.0.1 with its own storage,
// scraping target (HOST:PORT) every second, and waits until it is ready.
// It returns the base URL of its HTTP API.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	itest.Require(t, err == nil, "prometheus not installed: apt-get install prometheus (scripts/ensure-deps.sh)")
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: boxtap
    static_configs:
      - targets: [%q]
`, target)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	port := itest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithTimeout(context.Background(), traceRunTimeout)
	t.Cleanup(cancel)
	proc := itest.StartProc(t, ctx, bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	base := "http://" + addr
	deadline := time.Now().Add(promTimeout)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-proc.Done():
			t.Fatalf("prometheus exited: %s", proc.Stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus on %s not ready after %v: %v", addr, promTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promQuery runs an instant query and returns each series' value keyed by
// the value of label.
func promQuery(t *testing.T, base, query, label string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatalf("query %s: %v", query, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: status %q, %v", query, r.Status, err)
	}
	out := map[string]float64{}
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			t.Fatalf("query %s: value %v", query, s.Value)
		}
		out[s.Metric[label]] = v
	}
	return out
}

// waitPromEqual queries until the result equals want (Prometheus scrapes
// every second), and fails with the last result after promTimeout.
func waitPromEqual(t *testing.T, base, query, label string, want map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(promTimeout)
	for {
		got := promQuery(t, base, query, label)
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %v, want %v", query, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestPrometheusScrapesTheCountPerStatusOfTheTrafficMade(t *testing.T) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	server := e.startServer(t, fmt.Sprintf("127.0.0.1:%d", port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitServer(t, base)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
	p := e.startTrace(t, []*itest.Container{server}, "--output", "none", "--metrics-addr", metricsAddr, "--status", "2xx,404,503")
	prom := startPrometheus(t, metricsAddr)

	want := map[string]float64{}
	var reqs []viewRequest
	for code, n := range map[int]int{200: 7, 404: 3, 503: 2, 201: 1} {
		for range n {
			reqs = append(reqs, viewRequest{"GET", fmt.Sprintf("/status/%d", code), ""})
		}
		want[strconv.Itoa(code)] = float64(n)
	}
	reqs = append(reqs, viewRequest{"GET", "/status/418", ""}, viewRequest{"GET", "/status/418", ""}) // filtered out
	reqs = append(reqs, viewRequest{"POST", "/status/200", ""})
	want["200"]++
	sendRequests(t, base, reqs)

	sel := fmt.Sprintf(`{container=%q,direction="egress"}`, server.Name)
	t.Cleanup(func() {
		if t.Failed() {
			logMetrics(t, metricsAddr)
		}
	})
	waitPromEqual(t, prom, "sum by (status_code) (boxtap_http_request_duration_seconds_count"+sel+")", "status_code", want)
	waitPromEqual(t, prom, "sum by (method) (boxtap_http_request_duration_seconds_count"+sel+")", "method",
		map[string]float64{"GET": 13, "POST": 1})
	waitPromEqual(t, prom, "sum by (route) (boxtap_http_request_duration_seconds_count"+sel+")", "route",
		map[string]float64{"/status/{id}": 14})
	cont := fmt.Sprintf(`{container=%q}`, server.Name)
	waitPromEqual(t, prom, "boxtap_events_total"+cont, "container", map[string]float64{server.Name: 14})
	waitPromEqual(t, prom, "boxtap_filtered_total"+cont, "container", map[string]float64{server.Name: 2})
	waitPromEqual(t, prom, "boxtap_lost_records_total"+cont, "container", map[string]float64{server.Name: 0})
	waitPromEqual(t, prom, "boxtap_evicted_total"+cont, "container", map[string]float64{server.Name: 0})
	// boxtap's own process metrics come from the standard collector.
	if got := promQuery(t, prom, `process_resident_memory_bytes{job="boxtap"}`, "job"); got["boxtap"] <= 0 {
		t.Errorf("process_resident_memory_bytes: %v", got)
	}

	x := stopTrace(t, p, os.Interrupt)
	if x.code != 0 || len(x.events) != 0 {
		t.Fatalf("boxtap --output none: status %d, %d events on stdout; stderr:\n%s", x.code, len(x.events), x.stderr)
	}
}

// logMetrics logs boxtap's own exposition, to tell a boxtap fault from a
// scrape fault.
func logMetrics(t *testing.T, addr string) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Logf("boxtap /metrics: %v", err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "boxtap_") && !strings.Contains(l, "_bucket") {
			keep = append(keep, l)
		}
	}
	t.Logf("boxtap /metrics:\n%s", strings.Join(keep, "\n"))
}
