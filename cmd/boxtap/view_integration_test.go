package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aquasecurity/tracee/types/trace"
	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/containerd/ctrtest"
)

// viewTraffic is the requests of the view tests: every status class, several
// methods, hosts and paths, a query to redact, and two known sleeps.
func viewTraffic() []viewRequest {
	return []viewRequest{
		{"GET", "/status/200", ""},
		{"GET", "/status/404", ""},
		{"GET", "/status/503", "api.example.test"},
		{"POST", "/echo?token=s3cret&page=2", ""},
		{"PUT", "/status/500", "db.internal:9000"},
		{"GET", "/status/201", "api.example.test:8443"},
		{"GET", "/bytes/1000", ""},
		{"HEAD", "/status/200", ""},
		{"GET", "/sleep/80ms", ""},
		{"DELETE", "/status/204", "API.Example.Test"},
		{"GET", "/status/301", ""},
		{"POST", "/sleep/5ms", ""},
	}
}

// startViewTargets starts a server container and an idle client container
// (host network) and returns them with the server's base URL.
func startViewTargets(t *testing.T, e *traceEnv) (server, client *itest.Container, base string) {
	t.Helper()
	port := itest.FreePort(t)
	server = e.startServer(t, fmt.Sprintf("127.0.0.1:%d", port))
	client = e.startContainer(t, "sleeping", "sleep")
	base = fmt.Sprintf("http://127.0.0.1:%d", port)
	waitServer(t, base)
	return server, client, base
}

// clientTraffic makes the client container ask the server: the client's
// side of these exchanges is ingress.
func clientTraffic(t *testing.T, client *itest.Container, base string) {
	t.Helper()
	for _, p := range []string{"/status/200", "/status/404", "/status/502"} {
		if out, err := client.Exec("/testapp", "get", "-keepalive=false", "-url", base+p); err != nil {
			t.Fatalf("client: %v: %s", err, out)
		}
	}
}

func TestTextViewShowsTheSameExchangesAsTheJSONEvents(t *testing.T) {
	e := newTraceEnv(t)
	server, client, base := startViewTargets(t, e)
	targets := []*itest.Container{server, client}
	js := e.startTrace(t, targets, "--format", "json")
	text := e.startTrace(t, targets, "--format", "text")

	sendRequests(t, base, viewTraffic())
	clientTraffic(t, client, base)
	stopAll(t, js, text)

	events := decodeEvents(t, js.Lines())
	lines := text.Lines()
	if len(lines) == 0 || lines[0] != string(output.AppendTextHeader(nil)) {
		t.Fatalf("the text view must start with its header line; got %q", lines)
	}
	lines = lines[1:]
	// 12 requests from the test (server egress) and 3 from the client
	// container (server egress and client ingress).
	if want := len(viewTraffic()) + 2*3; len(events) != want || len(lines) != want {
		t.Fatalf("%d JSON events and %d text lines, want %d of each\nJSON stderr:\n%s\ntext:\n%s", len(events), len(lines), want, js.Stderr(), strings.Join(lines, "\n"))
	}
	fromJSON := map[string]exchange{}
	for _, ev := range events {
		x := jsonExchange(t, ev)
		fromJSON[x.key()] = x
	}
	for _, line := range lines {
		if strings.ContainsRune(line, 0x1b) {
			t.Errorf("escape code in text written to a pipe: %q", line)
		}
		got := parseTextLine(t, line)
		want, ok := fromJSON[got.key()]
		if !ok {
			t.Errorf("text line has no JSON event of the same exchange: %q", line)
			continue
		}
		delete(fromJSON, got.key())
		compareExchange(t, line, got, want)
	}
	for k := range fromJSON {
		t.Errorf("JSON event without a text line: %s", k)
	}
}

// compareExchange checks a text line against the JSON event of the same
// exchange, written by another boxtap attached to the same containers. Each
// takes its own kernel timestamps, so latencies may differ by the time
// between two programs' runs on the same packet, plus rounding; and each
// converts kernel time to wall time with its own reading of the clocks,
// which a busy machine can delay by milliseconds: times are compared within
// 100 ms, which still catches a wrong zone, unit or field.
func compareExchange(t *testing.T, line string, got, want exchange) {
	t.Helper()
	if got.container != want.container || got.dir != want.dir || got.client != want.client || got.server != want.server ||
		got.request != want.request || got.proto != want.proto || got.status != want.status || got.size != want.size || got.process != want.process {
		t.Errorf("text line %q\n says %+v\nJSON says %+v", line, got, want)
	}
	if !strings.Contains(got.request, "token=s3cret") && strings.Contains(line, "s3cret") {
		t.Errorf("secret in the text view: %q", line)
	}
	gt, err1 := time.Parse("15:04:05.000", got.time)
	wt, err2 := time.Parse("15:04:05.000", want.time)
	if err1 != nil || err2 != nil || absDur(gt.Sub(wt)) > 100*time.Millisecond {
		t.Errorf("time %s, JSON %s: %q", got.time, want.time, line)
	}
	if (got.latency < 0) != (want.latency < 0) {
		t.Errorf("latency %v, JSON %v: %q", got.latency, want.latency, line)
	} else if want.latency >= 0 && absDur(got.latency-want.latency) > want.latency/100+200*time.Microsecond {
		t.Errorf("latency %v, JSON %v (3 digits shown): %q", got.latency, want.latency, line)
	}
	if got.notes != "" {
		t.Errorf("notes on a complete exchange: %q", line)
	}
}

func absDur(d time.Duration) time.Duration { return max(d, -d) }

func TestTerminalOutputIsColouredUnlessNO_COLORAndPipesGetNoEscapes(t *testing.T) {
	itest.RequireBPF(t)
	boxtap := itest.BuildBoxtap(t)
	run := func(t *testing.T, tty bool, env ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), traceRunTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, boxtap, "demo")
		cmd.Env = append(slices.DeleteFunc(os.Environ(), func(s string) bool { return strings.HasPrefix(s, "NO_COLOR=") }), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if !tty {
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("boxtap demo: %v\n%s", err, stderr.String())
			}
			return string(out)
		}
		master, pts := openPTY(t)
		cmd.Stdout = pts
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pts.Close() // the child holds its own copy; EOF (EIO) once it exits
		var out bytes.Buffer
		_, _ = out.ReadFrom(master)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("boxtap demo on a terminal: %v\n%s", err, stderr.String())
		}
		return out.String()
	}
	statusEsc := regexp.MustCompile("\x1b\\[3[1236]m[1-5][0-9][0-9]\x1b\\[0m")
	t.Run("terminal", func(t *testing.T) {
		out := run(t, true)
		if n := len(statusEsc.FindAllString(out, -1)); n != 12 {
			t.Errorf("want 12 coloured statuses (one per exchange), got %d:\n%q", n, out)
		}
		if strings.Count(out, "\x1b[") != 2*12 {
			t.Errorf("escape codes outside the status column:\n%q", out)
		}
	})
	for _, env := range []string{"NO_COLOR=1", "NO_COLOR="} {
		t.Run("terminal "+env, func(t *testing.T) {
			out := run(t, true, env)
			if strings.ContainsRune(out, 0x1b) {
				t.Errorf("escape codes with %s:\n%q", env, out)
			}
			if !strings.Contains(out, "STATUS") || strings.Count(out, "boxtap-demo ") < 12 {
				t.Errorf("no text view:\n%s", out)
			}
		})
	}
	t.Run("pipe", func(t *testing.T) {
		out := run(t, false)
		if strings.ContainsRune(out, 0x1b) {
			t.Errorf("escape codes on a pipe:\n%q", out)
		}
		if !strings.Contains(out, "\"eventName\": \"net_packet_http_response\"") {
			t.Errorf("the demo must show one JSON event after the text view:\n%s", out)
		}
	})
}

// filterCase is one boxtap with filters, and the test's own statement of
// what they select.
type filterCase struct {
	name  string
	args  []string
	want  func(x exchange, ev trace.Event) bool
	text  bool // --format text
	files bool // --output-dir
}

func requestParts(ev trace.Event) (method, path, host string, ok bool) {
	for _, a := range ev.Args {
		if a.Name == "http_request" {
			rq := a.Value.(trace.ProtoHTTPRequest)
			p, _, _ := strings.Cut(rq.URIPath, "?")
			return rq.Method, p, strings.ToLower(rq.Host), true
		}
	}
	return "", "", "", false
}

// minLatency and latencyMargin: exchanges whose latency, as the reference
// boxtap measured it, is within the margin of the threshold are not
// judged, as the filtering boxtap measures on its own.
const (
	minLatency    = 40 * time.Millisecond
	latencyMargin = 2 * time.Millisecond
)

func filterCases(dir string) []filterCase {
	method := func(ms ...string) func(exchange, trace.Event) bool {
		return func(_ exchange, ev trace.Event) bool {
			m, _, _, ok := requestParts(ev)
			return ok && slices.Contains(ms, m)
		}
	}
	return []filterCase{
		{name: "status", args: []string{"--status", "5xx,404"}, want: func(x exchange, _ trace.Event) bool {
			return x.status/100 == 5 || x.status == 404
		}},
		{name: "method repeated", args: []string{"--method", "POST", "--method", "put"}, want: method("POST", "PUT")},
		{name: "path", args: []string{"--path", "/status/*"}, want: func(_ exchange, ev trace.Event) bool {
			_, p, _, ok := requestParts(ev)
			return ok && strings.HasPrefix(p, "/status/")
		}},
		{name: "host", args: []string{"--host", "api.*"}, want: func(_ exchange, ev trace.Event) bool {
			_, _, h, ok := requestParts(ev)
			return ok && strings.HasPrefix(h, "api.")
		}},
		{name: "min latency", args: []string{"--min-latency", minLatency.String()}, want: func(x exchange, _ trace.Event) bool {
			return x.latency >= minLatency
		}},
		{name: "direction", args: []string{"--direction", "ingress"}, want: func(x exchange, _ trace.Event) bool {
			return x.dir == "ingress"
		}},
		{name: "combined", args: []string{"--status", "2xx,3xx", "--method", "GET,HEAD", "--direction", "egress", "--path", "/status/*"},
			want: func(x exchange, ev trace.Event) bool {
				m, p, _, _ := requestParts(ev)
				return (x.status/100 == 2 || x.status/100 == 3) && (m == "GET" || m == "HEAD") && x.dir == "egress" && strings.HasPrefix(p, "/status/")
			}},
		{name: "text format", text: true, args: []string{"--format", "text", "--status", "404"}, want: func(x exchange, _ trace.Event) bool {
			return x.status == 404
		}},
		{name: "output dir", files: true, args: []string{"--output-dir", dir, "--status", "5xx"}, want: func(x exchange, _ trace.Event) bool {
			return x.status/100 == 5
		}},
	}
}

func TestFiltersWriteExactlyTheMatchingExchangesAndCountTheRest(t *testing.T) {
	e := newTraceEnv(t)
	server, client, base := startViewTargets(t, e)
	targets := []*itest.Container{server, client}
	dir := t.TempDir()
	cases := filterCases(filepath.Join(dir, "out"))
	ref := e.startTrace(t, targets, "--format", "json")
	procs := make([]*itest.Proc, len(cases))
	for i, c := range cases {
		procs[i] = e.startTrace(t, targets, c.args...)
	}
	sendRequests(t, base, viewTraffic())
	clientTraffic(t, client, base)
	stopAll(t, append([]*itest.Proc{ref}, procs...)...)

	refEvents := decodeEvents(t, ref.Lines())
	if want := len(viewTraffic()) + 2*3; len(refEvents) != want {
		t.Fatalf("reference boxtap wrote %d events, want %d", len(refEvents), want)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := map[string]bool{}
			switch {
			case c.text:
				lines := procs[i].Lines()
				if len(lines) > 0 {
					lines = lines[1:] // header
				}
				for _, l := range lines {
					got[parseTextLine(t, l).key()] = true
				}
			case c.files:
				for _, tg := range targets {
					path := filepath.Join(dir, "out", tg.ID+".json")
					if _, err := os.Stat(path); err != nil {
						continue // nothing matched for this container
					}
					for _, ev := range fileEvents(t, path) {
						got[jsonExchange(t, ev).key()] = true
					}
				}
			default:
				for _, ev := range decodeEvents(t, procs[i].Lines()) {
					got[jsonExchange(t, ev).key()] = true
				}
			}
			judged, kept := 0, 0
			for _, ev := range refEvents {
				x := jsonExchange(t, ev)
				if c.name == "min latency" && absDur(x.latency-minLatency) < latencyMargin {
					delete(got, x.key())
					continue
				}
				judged++
				want := c.want(x, ev)
				if want {
					kept++
				}
				if want != got[x.key()] {
					t.Errorf("%s: written %v, want %v", x.key(), got[x.key()], want)
				}
				delete(got, x.key())
			}
			for k := range got {
				t.Errorf("written but not in the reference: %s", k)
			}
			if kept == 0 || kept == judged {
				t.Errorf("the traffic must have exchanges on both sides of %v (kept %d of %d)", c.args, kept, judged)
			}
			// The exit line counts what was filtered out.
			re := regexp.MustCompile(`boxtap: (\d+) events, .*, (\d+) filtered out(?: \(\d+ of them in the kernel\))?\n`)
			m := re.FindStringSubmatch(procs[i].Stderr())
			if m == nil {
				t.Fatalf("no exit line with a filtered count:\n%s", procs[i].Stderr())
			}
			written, _ := strconv.Atoi(m[1])
			filtered, _ := strconv.Atoi(m[2])
			if written+filtered != len(refEvents) || (c.name != "min latency" && written != kept) {
				t.Errorf("exit line says %d written + %d filtered; the reference saw %d, %d match", written, filtered, len(refEvents), kept)
			}
		})
	}
}

func TestSummaryPercentilesMatchTheLatenciesOfKnownSlowPaths(t *testing.T) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	server := e.startServer(t, fmt.Sprintf("127.0.0.1:%d", port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitServer(t, base)
	sumFile := filepath.Join(t.TempDir(), "summary.json")
	p := e.startTrace(t, []*itest.Container{server}, "--format", "json", "--summary", "--summary-json", sumFile)

	sleeps := map[string]time.Duration{"/sleep/20ms": 20 * time.Millisecond, "/sleep/45ms": 45 * time.Millisecond}
	var reqs []viewRequest
	for i := range 25 {
		reqs = append(reqs, viewRequest{"GET", "/sleep/20ms", ""}, viewRequest{"GET", "/sleep/45ms", ""})
		if i%5 == 0 {
			reqs = append(reqs, viewRequest{"GET", fmt.Sprintf("/bytes/%d", 100+i), ""}, viewRequest{"POST", "/status/404", ""})
		}
	}
	sendRequests(t, base, reqs)
	stopAll(t, p)
	events := decodeEvents(t, p.Lines())
	if len(events) != len(reqs) {
		t.Fatalf("%d events for %d requests", len(events), len(reqs))
	}

	// The test's own grouping of the events it got.
	type group struct {
		lat   []time.Duration
		bytes int64
	}
	groups := map[string]*group{}
	routeOf := func(path string) string {
		if strings.HasPrefix(path, "/bytes/") {
			return "/bytes/{id}"
		}
		if strings.HasPrefix(path, "/status/") {
			return "/status/{id}"
		}
		return path
	}
	for _, ev := range events {
		x := jsonExchange(t, ev)
		m, path, _, _ := requestParts(ev)
		k := fmt.Sprintf("%s %s %s %dxx", server.Name, m, routeOf(path), x.status/100)
		g := groups[k]
		if g == nil {
			g = &group{}
			groups[k] = g
		}
		g.lat = append(g.lat, x.latency)
		g.bytes += max(x.size, 0)
	}

	raw, err := os.ReadFile(sumFile)
	if err != nil {
		t.Fatalf("--summary-json: %v", err)
	}
	var doc struct {
		Rows []struct {
			Container, Method, Route, Status string
			Count                            int
			P50                              int64 `json:"p50_ns"`
			P90                              int64 `json:"p90_ns"`
			P99                              int64 `json:"p99_ns"`
			Max                              int64 `json:"max_ns"`
			Bytes                            int64
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("--summary-json: %v\n%s", err, raw)
	}
	if len(doc.Rows) != len(groups) {
		t.Errorf("%d summary rows, want %d: %s", len(doc.Rows), len(groups), raw)
	}
	for _, r := range doc.Rows {
		k := fmt.Sprintf("%s %s %s %s", r.Container, r.Method, r.Route, r.Status)
		g := groups[k]
		if g == nil {
			t.Errorf("unexpected row %s", k)
			continue
		}
		if r.Count != len(g.lat) || r.Bytes != g.bytes {
			t.Errorf("%s: count %d bytes %d, want %d and %d", k, r.Count, r.Bytes, len(g.lat), g.bytes)
		}
		for _, c := range []struct {
			name string
			got  int64
			p    float64
		}{{"p50", r.P50, 50}, {"p90", r.P90, 90}, {"p99", r.P99, 99}} {
			want := percentileNearestRank(g.lat, c.p)
			// HDR buckets: at most 1% above the exact value (µs unit).
			if d := time.Duration(c.got) - want; d < -time.Microsecond || d > want/100+time.Microsecond {
				t.Errorf("%s %s = %v, exact %v", k, c.name, time.Duration(c.got), want)
			}
		}
		if want := percentileNearestRank(g.lat, 100); time.Duration(r.Max) != want {
			t.Errorf("%s max = %v, want %v", k, time.Duration(r.Max), want)
		}
		if sleep, ok := sleeps[r.Route]; ok && time.Duration(r.P50) < sleep {
			t.Errorf("%s: p50 %v below the %v the server slept", k, time.Duration(r.P50), sleep)
		}
	}
	// The same table is on stderr.
	stderr := p.Stderr()
	if !regexp.MustCompile(`(?m)^CONTAINER\s+METHOD\s+ROUTE\s+STATUS\s+COUNT\s+RATE/s\s+P50\s+P90\s+P99\s+MAX\s+BYTES`).MatchString(stderr) ||
		!regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(server.Name)+`\s+GET\s+/sleep/45ms\s+2xx\s+25\s`).MatchString(stderr) {
		t.Errorf("stderr lacks the summary table:\n%s", stderr)
	}
}

// The hook takes filters from the container's annotation: its file holds
// exactly the matching exchanges.
func TestHookAnnotationFiltersWriteOnlyMatchingExchanges(t *testing.T) {
	e := newHookEnv(t)
	port := itest.FreePort(t)
	id := e.prefix + "flt"
	b := e.bundle(t, id, e.exampleHooks(t), "serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	setBundleAnnotation(t, b, "io.boxtap.trace", "status=5xx,status=404,method=GET")
	if err := e.start(t, id, b); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	firstResponse(t, base+"/status/503", time.Now())
	reqs := []viewRequest{
		{"GET", "/status/200", ""}, {"GET", "/status/404", ""}, {"POST", "/status/500", ""},
		{"GET", "/status/502", ""}, {"GET", "/status/301", ""}, {"PUT", "/status/404", ""},
	}
	sendRequests(t, base, reqs)
	e.kill(t, id)
	e.delete(t, id)
	waitNoTracer(t, id, 10*time.Second)
	var got []string
	for _, ev := range readHookEvents(t, filepath.Join(e.out, id+".json")) {
		got = append(got, fmt.Sprintf("%s %d", ev.URIPath, ev.Status))
	}
	// The first call, /status/503, may have come before the server listened
	// (connection refused, retried): it is in the file once it was answered.
	want := "/status/503 503|/status/404 404|/status/502 502"
	if strings.Join(got, "|") != want {
		t.Errorf("file holds %q, want %q\nhook log:\n%s", strings.Join(got, "|"), want, e.hookLog())
	}
}

// setBundleAnnotation sets an annotation in a bundle's config.json.
func setBundleAnnotation(t *testing.T, bundle, key, value string) {
	t.Helper()
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	ann, _ := spec["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
	}
	ann[key] = value
	spec["annotations"] = ann
	if data, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// boxtap watch applies the same filters and summary as trace.
func TestWatchWritesOnlyMatchingExchangesAndSummarisesThem(t *testing.T) {
	e := newWatchEnv(t, "")
	d := itest.RequireDocker(t)
	mark := ctrtest.RandomID("view")
	p := e.startBoxtap(t, "watch", "--label", "boxtap-view="+mark, "--format", "json", "--status", "404", "--summary")
	port := itest.FreePort(t)
	c := d.Run(t, itest.RunOpts{Flags: []string{"--label", "boxtap-view=" + mark}, Args: []string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}})
	if err := p.WaitStderr(fmt.Sprintf("tracing %s (%s)\n", c.Name, itest.ShortID(c.ID)), traceStartTimeout); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitServer(t, base) // one GET / (200): filtered out
	sendRequests(t, base, []viewRequest{
		{"GET", "/status/200", ""}, {"GET", "/status/404", ""}, {"GET", "/status/503", ""},
		{"GET", "/status/404", ""}, {"POST", "/status/404", ""},
	})
	if _, err := p.WaitLines(3, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	stopAll(t, p)
	var got []string
	for _, ev := range decodeEvents(t, p.Lines()) {
		x := jsonExchange(t, ev)
		got = append(got, x.request+" "+strconv.Itoa(x.status))
	}
	if strings.Join(got, "|") != "GET /status/404 404|GET /status/404 404|POST /status/404 404" {
		t.Errorf("watch wrote %q", got)
	}
	stderr := p.Stderr()
	if !regexp.MustCompile(`boxtap: 3 events, .*, 3 filtered out(?: \(\d+ of them in the kernel\))?\n`).MatchString(stderr) {
		t.Errorf("exit line does not count 3 written and 3 filtered out:\n%s", stderr)
	}
	if !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(c.Name)+`\s+GET\s+/status/\{id\}\s+4xx\s+2\s`).MatchString(stderr) ||
		!regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(c.Name)+`\s+POST\s+/status/\{id\}\s+4xx\s+1\s`).MatchString(stderr) {
		t.Errorf("summary rows missing:\n%s", stderr)
	}
}
