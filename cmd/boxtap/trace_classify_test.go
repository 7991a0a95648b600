package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
)

// classifyCase is one connection to a traced server: how the client's first bytes reach
// the wire, and the request the response must be paired with ("" when the connection is
// not HTTP and must produce no event).
type classifyCase struct {
	name       string
	client     []map[string]any
	wantMethod string
	wantPath   string
}

func classifyCases() []classifyCase {
	recvAll := []map[string]any{step("recv_until_close", true)}
	with := func(pieces ...string) []map[string]any { return append(sends(pieces...), recvAll...) }
	get := request("GET", "/split")
	return []classifyCase{
		{"empty line before the request", with("\r\n" + request("GET", "/crlf")), "GET", "/crlf"},
		{"empty line in a segment of its own", with("\r\n", request("GET", "/crlf-alone")), "GET", "/crlf-alone"},
		{"3-byte first segment", with(get[:3], get[3:]), "GET", "/split"},
		{"request in 4-byte segments", with(splitEvery(request("POST", "/tiny"), 4)...), "POST", "/tiny"},
		{"WebDAV PROPFIND", with(request("PROPFIND", "/dav")), "PROPFIND", "/dav"},
		{"WebDAV MKCOL", with(request("MKCOL", "/dav/new")), "MKCOL", "/dav/new"},
		{"REPORT", with(request("REPORT", "/cal")), "REPORT", "/cal"},
		// Not HTTP: the server still answers with a response, which must not be reported.
		{"binary first bytes", with("\x16\x03\x01\x00\x05hello\r\n\r\n"), "", ""},
		{"a valid start, then a byte no request line has", with("GE", "T\x00binary\r\n\r\n"), "", ""},
		{"token, SP, target, SP, then no version", with("220 smtp ready\r\n\r\n"), "", ""},
	}
}

var notHTTPRE = regexp.MustCompile(`, (\d+) connections not HTTP`)

// A connection is traced whatever its first bytes look like on the wire, as long as they
// start an HTTP/1.x request: empty lines before it, a start line cut into writes shorter
// than any method, any token as the method. Connections that are not HTTP produce no
// event, and the exit line counts them.
func TestTraceClassifiesConnectionsOnTheirBytesNotTheirFirstSegment(t *testing.T) {
	e := newTraceEnv(t)
	port := itest.FreePort(t)
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Case: classify\r\n\r\nok"
	server := []map[string]any{step("recv_request", 1), step("send", resp), step("close", true)}
	c := e.startContainer(t, "listening on", "script-serve", "-addr", "127.0.0.1:"+strconv.Itoa(port), "-loop",
		"-timeout", "30s", "-script", scriptJSON(t, server))
	p := e.startTrace(t, []*itest.Container{c})
	cases := classifyCases()
	for _, tc := range cases {
		runHostScriptClient(t, e, "127.0.0.1:"+strconv.Itoa(port), tc.client)
	}
	// Stop the container, not boxtap: its stop line must count the connections too,
	// and boxtap exits by itself once no traced container is left.
	c.Stop()
	x := stopTrace(t, p, nil)
	if x.code != 0 {
		t.Fatalf("boxtap exited with status %d; stderr:\n%s", x.code, x.stderr)
	}
	checkCountsLine(t, x.stderr, len(x.events))
	vs := viewEvents(t, x.events)

	var want []classifyCase
	notHTTP := 0
	for _, tc := range cases {
		if tc.wantMethod == "" {
			notHTTP++
		} else {
			want = append(want, tc)
		}
	}
	if len(vs) != len(want) {
		for i, v := range vs {
			if v.req != nil {
				t.Logf("event %d: %s %s", i, v.req.Method, v.req.URIPath)
			}
		}
		t.Fatalf("%d events, want %d (one per HTTP case)", len(vs), len(want))
	}
	sent := parseScriptedResponse(t, resp)
	for i, v := range vs {
		checkScripted(t, i, v, sent)
		if v.req == nil {
			t.Errorf("%s: no request paired, want %s %s", want[i].name, want[i].wantMethod, want[i].wantPath)
			continue
		}
		if v.req.Method != want[i].wantMethod || v.req.URIPath != want[i].wantPath {
			t.Errorf("%s: paired with %s %s, want %s %s", want[i].name, v.req.Method, v.req.URIPath, want[i].wantMethod, want[i].wantPath)
		}
	}
	m := notHTTPRE.FindStringSubmatch(x.stderr)
	if m == nil {
		t.Fatalf("exit line reports no count of connections not HTTP:\n%s", x.stderr)
	}
	if m[1] != strconv.Itoa(notHTTP) {
		t.Errorf("exit line: %s connections not HTTP, want %d (the non-HTTP cases)\n%s", m[1], notHTTP, x.stderr)
	}
	stopLine := fmt.Sprintf("container %s (%s) stopped: %d events, %d connections not HTTP\n", c.Name, itest.ShortID(c.ID), len(want), notHTTP)
	if !strings.Contains(x.stderr, stopLine) {
		t.Errorf("stderr has no stop line %q:\n%s", stopLine, x.stderr)
	}
}
