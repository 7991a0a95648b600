package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aquasecurity/tracee/types/trace"
	"github.com/boxtap/boxtap/internal/itest"
	"golang.org/x/sys/unix"
)

// exchange is what the text view and a JSON event both say about one
// exchange, in the text view's terms.
type exchange struct {
	time      string // 15:04:05.000 UTC
	container string
	dir       string
	client    string // addr:port ([v6]:port)
	server    string
	request   string // "METHOD PATH" (redacted), "-" when not seen
	proto     string
	status    int
	latency   time.Duration // -1 when unknown
	size      int64         // -1 when unknown
	process   string
	notes     string
}

// key names an exchange across two tracers: each connection has its own
// client port and carries one exchange per request in these tests.
func (x exchange) key() string {
	return strings.Join([]string{x.container, x.dir, x.client, x.server, x.request, strconv.Itoa(x.status)}, " ")
}

// parseTextLine reads one line of the text view back. Columns are separated
// by runs of spaces; the process name is last before the notes.
func parseTextLine(t *testing.T, line string) exchange {
	t.Helper()
	main, notes, _ := strings.Cut(line, "  [")
	if notes != "" {
		notes = "[" + notes
	}
	f := strings.Fields(main)
	var x exchange
	// time container dir client → server METHOD PATH proto status latency size process
	// (or "-" in place of METHOD PATH)
	if len(f) < 12 || f[4] != "→" {
		t.Fatalf("text line %q: want 12 or 13 columns", line)
	}
	x.time, x.container, x.dir, x.client, x.server = f[0], f[1], f[2], f[3], f[5]
	rest := f[6:]
	if rest[0] == "-" {
		x.request, rest = "-", rest[1:]
	} else {
		x.request, rest = rest[0]+" "+rest[1], rest[2:]
	}
	if len(rest) != 5 {
		t.Fatalf("text line %q: %d columns after the request, want 5", line, len(rest))
	}
	x.proto = rest[0]
	var err error
	if x.status, err = strconv.Atoi(rest[1]); err != nil {
		t.Fatalf("text line %q: status %q", line, rest[1])
	}
	x.latency = parseTextLatency(t, rest[2])
	x.size = -1
	if rest[3] != "-" {
		if x.size, err = strconv.ParseInt(rest[3], 10, 64); err != nil {
			t.Fatalf("text line %q: size %q", line, rest[3])
		}
	}
	x.process, x.notes = rest[4], notes
	return x
}

func parseTextLatency(t *testing.T, s string) time.Duration {
	t.Helper()
	if s == "-" {
		return -1
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("latency %q: %v", s, err)
	}
	return d
}

// jsonExchange is what a JSON event says, in the text view's terms.
func jsonExchange(t *testing.T, ev trace.Event) exchange {
	t.Helper()
	meta := ev.Args[0].Value.(trace.PktMeta)
	resp := ev.Args[1].Value.(trace.ProtoHTTPResponse)
	x := exchange{
		time:      time.Unix(0, int64(ev.Timestamp)).UTC().Format("15:04:05.000"),
		container: ev.Container.Name,
		dir:       argString(ev, "direction"),
		client:    hostPort(meta.DstIP, meta.DstPort),
		server:    hostPort(meta.SrcIP, meta.SrcPort),
		request:   "-",
		proto:     resp.Protocol,
		status:    resp.StatusCode,
		latency:   -1,
		size:      resp.ContentLength,
		process:   ev.ProcessName,
	}
	for _, a := range ev.Args {
		switch a.Name {
		case "http_request":
			rq := a.Value.(trace.ProtoHTTPRequest)
			x.request = rq.Method + " " + rq.URIPath
		case "latency_ns":
			x.latency = time.Duration(toInt64(t, a.Value))
		}
	}
	if x.size < 0 {
		x.size = -1
	}
	return x
}

func toInt64(t *testing.T, v any) int64 {
	t.Helper()
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	t.Fatalf("latency_ns is %T", v)
	return 0
}

func hostPort(ip string, port uint16) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + strconv.Itoa(int(port))
	}
	return ip + ":" + strconv.Itoa(int(port))
}

// viewRequest is one request the test sends.
type viewRequest struct {
	method, path, host string
}

// sendRequests sends each request once from the test process to a server
// the test started on 127.0.0.1, on a new connection each.
func sendRequests(t *testing.T, base string, reqs []viewRequest) {
	t.Helper()
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, r := range reqs {
		req, err := http.NewRequest(r.method, base+r.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.host != "" {
			req.Host = r.host
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, r.path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// waitServer waits until a server the test started answers on base.
func waitServer(t *testing.T, base string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	for try := 0; try < 100; try++ {
		resp, err := client.Get(base + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no answer from %s", base)
}

// stopAll sends SIGINT to every boxtap and waits for each to exit with 0.
func stopAll(t *testing.T, ps ...*itest.Proc) {
	t.Helper()
	for _, p := range ps {
		if err := p.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range ps {
		if err := p.Wait(traceExitTimeout); err != nil {
			t.Fatalf("boxtap: %v; stderr:\n%s", err, p.Stderr())
		}
		if s := p.Stderr(); strings.Contains(s, "panic:") {
			t.Fatalf("boxtap panicked:\n%s", s)
		}
	}
}

// openPTY opens a pseudo-terminal pair: the test reads what a child writes
// to tty from master.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("opening /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlocking the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("opening the pty: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// percentileNearestRank is the exact nearest-rank percentile of values.
func percentileNearestRank(values []time.Duration, p float64) time.Duration {
	s := slices.Clone(values)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100 + 0.999999999)
	return s[max(rank, 1)-1]
}
