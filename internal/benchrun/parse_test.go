package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := `Running 10s test @ http://127.0.0.1:8080/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   780.12us    1.02ms  40.01ms   95.12%
    Req/Sec    33.01k     2.10k   38.93k    71.00%
  Latency Distribution
     50%  612.00us
     75%  801.00us
     90%    1.10ms
     99%    4.25ms
  657123 requests in 10.00s, 107.79MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  65701.58
Transfer/sec:     10.78MB
`
	l, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if l.rps != 65701.58 || l.p99 != 4250*time.Microsecond || l.requests != 657123 || l.errors != 12 {
		t.Fatalf("parsed %+v", l)
	}
	if _, err := parseWrk(strings.Replace(out, "99%", "98%", 1)); err == nil {
		t.Fatal("output without a 99% line parsed")
	}
}

func TestParseWrkDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"456.00us": 456 * time.Microsecond,
		"1.50ms":   1500 * time.Microsecond,
		"2.00s":    2 * time.Second,
		"1.00m":    time.Minute,
	} {
		got, err := parseWrkDuration(in)
		if err != nil || got != want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseWrkDuration("fast"); err == nil {
		t.Error("parseWrkDuration accepted garbage")
	}
}

func TestParseStubStatus(t *testing.T) {
	st, err := parseStubStatus("Active connections: 51 \nserver accepts handled requests\n 60 60 1234567 \nReading: 0 Writing: 1 Waiting: 50 \n")
	if err != nil || st.requests != 1234567 || st.active != 51 {
		t.Fatalf("got %+v, %v", st, err)
	}
	if _, err := parseStubStatus("<html>404</html>"); err == nil {
		t.Fatal("a page without counters parsed")
	}
}

func TestParseReport(t *testing.T) {
	var res observed
	err := parseReport(toolBoxtap, []string{"tracing web (abc)", "boxtap: 1200 events, 3 lost records, 1 truncated header blocks, 0 resyncs, 0 retransmits dropped"}, &res)
	if err != nil || res.events != 1200 || res.lost != 3 || res.truncated != 1 {
		t.Fatalf("boxtap: %+v, %v", res, err)
	}
	res = observed{}
	err = parseReport(toolTcpdump, []string{"tcpdump: listening on lo", "5000 packets captured", "5100 packets received by filter", "100 packets dropped by kernel"}, &res)
	if err != nil || res.captured != 5000 || res.dropped != 100 {
		t.Fatalf("tcpdump: %+v, %v", res, err)
	}
	if err := parseReport(toolBoxtap, []string{"boxtap: error"}, &observed{}); err == nil {
		t.Fatal("a run without the summary line parsed")
	}
}

func TestSpreadAndRatios(t *testing.T) {
	sp := spreadOf([]float64{3, 1, 2, 10})
	if sp.med != 2.5 || sp.min != 1 || sp.max != 10 {
		t.Fatalf("spread %+v", sp)
	}
	num := []measurement{{load: load{rps: 90}}, {load: load{rps: 50}}}
	den := []measurement{{load: load{rps: 100}}, {load: load{rps: 0}}}
	r := ratios(num, den, rps)
	if len(r) != 1 || r[0] != 0.9 {
		t.Fatalf("ratios %v: a zero denominator must be left out", r)
	}
}

func TestWriteMarkdownKeepsText(t *testing.T) {
	path := t.TempDir() + "/B.md"
	if err := os.WriteFile(path, []byte("# Benchmarks\n\nWhat was tried.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeMarkdown(path, "table one\n"); err != nil {
		t.Fatal(err)
	}
	if err := writeMarkdown(path, "table two\n"); err != nil {
		t.Fatal(err)
	}
	// Text the harness did not write survives a rewrite.
	b := mustRead(t, path)
	if strings.Count(b, beginMarker) != 1 || strings.Contains(b, "table one") || !strings.Contains(b, "table two") ||
		!strings.HasPrefix(b, "# Benchmarks\n\nWhat was tried.\n") {
		t.Fatalf("page after two writes:\n%s", b)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseHWM(t *testing.T) {
	status := "Name:\tboxtap\nVmPeak:\t 1300000 kB\nVmHWM:\t   37228 kB\nVmRSS:\t   37000 kB\n"
	if got, err := parseHWM(status); err != nil || got != 37228 {
		t.Fatalf("parseHWM = %d, %v; want 37228", got, err)
	}
	for _, bad := range []string{"VmRSS:\t 1 kB\n", "VmHWM:\t lots kB\n"} {
		if _, err := parseHWM(bad); err == nil {
			t.Errorf("parseHWM(%q): no error", bad)
		}
	}
}

func TestParseH2load(t *testing.T) {
	out := `starting benchmark...
spawning thread #0: 25 total client(s). Timing-based test with 0s of warm-up time and 10s of main duration for measurements.
Warm-up phase is over for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 10.00s, 51234.50 req/s, 9.12MB/s
requests: 512345 total, 512400 started, 512345 done, 512340 succeeded, 5 failed, 3 errored, 1 timeout
status codes: 512338 2xx, 0 3xx, 2 4xx, 0 5xx
traffic: 91.20MB (95630000) total, 10.00MB (10485760) headers (space savings 90.00%), 70.00MB (73400320) data
                     min         max         mean         sd        +/- sd
time for request:       98us     40.01ms      1.95ms      1.02ms    80.00%
`
	l, err := parseH2load(out)
	if err != nil {
		t.Fatal(err)
	}
	if l.rps != 51234.50 || l.requests != 512340 || l.errors != 11 || l.p99 != 0 {
		t.Fatalf("parsed %+v", l)
	}
	for _, cut := range []string{"finished in", "requests:", "status codes:"} {
		if _, err := parseH2load(strings.Replace(out, cut, "x", 1)); err == nil {
			t.Errorf("output without %q parsed", cut)
		}
	}
	if _, err := parseH2load(strings.Replace(out, "5 failed", "five failed", 1)); err == nil {
		t.Error("a requests line with a bad count parsed")
	}
}
