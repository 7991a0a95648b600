package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// exchangeOn sends paths as GET requests on one new keep-alive connection to
// addr (a server the test started on 127.0.0.1): one at a time, or all in
// one write when pipelined. It reads every response whole and returns the
// connection's local address, which is the client address of its events.
func exchangeOn(t *testing.T, addr string, pipelined bool, paths []string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	request := func(p string) string { return "GET " + p + " HTTP/1.1\r\nHost: kfilter.test\r\n\r\n" }
	read := func(p string) {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET %s: reading the body: %v", p, err)
		}
	}
	if pipelined {
		var all strings.Builder
		for _, p := range paths {
			all.WriteString(request(p))
		}
		if _, err := io.WriteString(conn, all.String()); err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			read(p)
		}
	} else {
		for _, p := range paths {
			if _, err := io.WriteString(conn, request(p)); err != nil {
				t.Fatal(err)
			}
			read(p)
		}
	}
	return conn.LocalAddr().String()
}

// With --status 5xx, the kernel leaves out responses it can bound (here the
// 2xx ones, small and with bodies past their first segment) and sends user
// space only a small record for each, which pairs them with their requests:
// the 5xx responses after them on the same keep-alive connection, one at a
// time or pipelined, are written with exactly their own requests, and the
// exit line counts every response left out, the kernel's share among them.
func TestStatusFilterLeavesOutResponsesInTheKernelAndKeepsPairing(t *testing.T) {
	e := newTraceEnv(t)
	addr := fmt.Sprintf("127.0.0.1:%d", itest.FreePort(t))
	server := e.startContainer(t, "listening on", "serve", "-addr", addr)
	waitServer(t, "http://"+addr)
	p := e.startTrace(t, []*itest.Container{server}, "--format", "json", "--status", "5xx")

	sequential := []string{"/status/200", "/bytes/100000", "/status/200", "/status/500", "/status/201", "/bytes/5000", "/status/204", "/status/503"}
	pipelined := []string{"/status/200", "/status/500", "/bytes/3000", "/status/200", "/bytes/70000", "/status/502", "/status/204"}
	seqClient := exchangeOn(t, addr, false, sequential)
	pipeClient := exchangeOn(t, addr, true, pipelined)
	stopAll(t, p)

	var want []string
	for _, c := range []struct {
		client string
		paths  []string
	}{{seqClient, sequential}, {pipeClient, pipelined}} {
		for _, path := range c.paths {
			if strings.HasPrefix(path, "/status/5") {
				want = append(want, c.client+" GET "+path+" "+strings.TrimPrefix(path, "/status/"))
			}
		}
	}
	var got []string
	for _, ev := range decodeEvents(t, p.Lines()) {
		x := jsonExchange(t, ev)
		got = append(got, x.client+" "+x.request+" "+strconv.Itoa(x.status))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("written exchanges\n got %q\nwant %q", got, want)
	}

	left := len(sequential) + len(pipelined) - len(want)
	m := regexp.MustCompile(`boxtap: (\d+) events, .*, (\d+) resyncs, .*, (\d+) requests dropped unpaired, .*, (\d+) filtered out \((\d+) of them in the kernel\)\n`).FindStringSubmatch(p.Stderr())
	if m == nil {
		t.Fatalf("no exit line counting responses filtered out in the kernel:\n%s", p.Stderr())
	}
	n := make([]int, len(m))
	for i := 1; i < len(m); i++ {
		n[i], _ = strconv.Atoi(m[i])
	}
	events, resyncs, dropped, filtered, inKernel := n[1], n[2], n[3], n[4], n[5]
	if events != len(want) || filtered != left || resyncs != 0 || dropped != 0 {
		t.Errorf("exit line: %d events, %d filtered out, %d resyncs, %d requests dropped; want %d, %d, 0, 0", events, filtered, resyncs, dropped, len(want), left)
	}
	if inKernel < 1 || inKernel > left {
		t.Errorf("%d responses left out in the kernel, want between 1 and %d", inKernel, left)
	}
	t.Logf("%d of %d responses left out in the kernel", inKernel, left)
}
