package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/textproto"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxtap/boxtap/internal/itest"
)

// step is one step of a testapp script (see internal/testapp/script.go).
func step(kind string, v any) map[string]any { return map[string]any{kind: v} }

func scriptJSON(t *testing.T, steps []map[string]any) string {
	t.Helper()
	b, err := json.Marshal(steps)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// scripted is what an event must say about a response the test wrote byte by byte.
type scripted struct {
	proto, status string
	code          int
	header        http.Header
	contentLength int64
}

// parseScriptedResponse reads the status line and header block at the start of raw, the
// way the bytes were written by the script (canonical names, repeated names kept).
func parseScriptedResponse(t *testing.T, raw string) scripted {
	t.Helper()
	tp := textproto.NewReader(bufio.NewReader(strings.NewReader(raw)))
	line, err := tp.ReadLine()
	if err != nil {
		t.Fatalf("bad scripted response %q: %v", raw, err)
	}
	proto, status, _ := strings.Cut(line, " ")
	codeText, _, _ := strings.Cut(status, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil {
		t.Fatalf("bad status line %q", line)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("bad scripted header block in %q: %v", raw, err)
	}
	header := http.Header(h)
	return scripted{proto: proto, status: status, code: code, header: header, contentLength: declaredLength(header)}
}

// checkScripted checks an event's response against the scripted one.
func checkScripted(t *testing.T, i int, v eventView, want scripted) {
	t.Helper()
	r := v.resp
	if r.Protocol != want.proto || r.Status != want.status || r.StatusCode != want.code || r.ContentLength != want.contentLength {
		t.Errorf("event %d: %s %q code %d content_length %d, want %s %q %d %d",
			i, r.Protocol, r.Status, r.StatusCode, r.ContentLength, want.proto, want.status, want.code, want.contentLength)
	}
	if v.truncated {
		t.Errorf("event %d: truncated, want a whole header block", i)
	}
	checkHeaders(t, i, r.Headers, want.header)
}

// request is a minimal HTTP/1.1 GET request for path.
func request(method, path string) string {
	return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: framing.test\r\nX-Path: %s\r\n\r\n", method, path, path)
}

// fakeResponse looks like a whole response; the framing cases put it inside bodies.
const fakeResponse = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

// pause is the sleep between writes that makes each write its own segment.
var pause = step("sleep_ms", 30)

// framingCase is one exchange over one connection: the client script runs on the host, the
// server script in the traced container; wantHeads are the raw heads (status line and
// header block) of the responses events must report, in order, and wantPaths the request
// each response pairs with.
type framingCase struct {
	name          string
	client        []map[string]any
	server        []map[string]any
	wantHeads     []string
	wantPaths     []string
	wantTruncated []bool // per response; nil means none truncated
}

// sends returns a step per piece, each followed by a pause.
func sends(pieces ...string) []map[string]any {
	var steps []map[string]any
	for _, p := range pieces {
		steps = append(steps, step("send", p), pause)
	}
	return steps
}

// splitEvery cuts s into pieces of n bytes.
func splitEvery(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

// bigHead returns a 200 head with Content-Length 2 and count X-Big-NN headers of size bytes.
func bigHead(count, size int) string {
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
	for i := 0; i < count; i++ {
		fmt.Fprintf(&b, "X-Big-%02d: %s\r\n", i, strings.Repeat(string(rune('a'+i%26)), size))
	}
	b.WriteString("\r\n")
	return b.String()
}

func framingCases() []framingCase {
	r1 := "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Seq: 1\r\n\r\none"
	r2 := "HTTP/1.1 201 Created\r\nContent-Length: 3\r\nX-Seq: 2\r\nX-Seq: 2b\r\n\r\ntwo"
	r3 := "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\nX-Seq: 3\r\n\r\nthree"
	accepted := "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nX-Case: after\r\n\r\n"

	clHead := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Case: cl-body\r\n\r\n", len(fakeResponse))
	chunkHead := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Case: chunk-body\r\n\r\n"
	chunkedHead := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
	oldHead := "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nX-Case: close-delimited\r\n\r\n"
	headResp := "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Case: head\r\n\r\n"
	created := "HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc"
	noContent := "HTTP/1.1 204 No Content\r\nX-Case: 204\r\n\r\n"
	notModified := "HTTP/1.1 304 Not Modified\r\nEtag: \"v1\"\r\nContent-Length: 99\r\n\r\n"
	okTwo := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	cont := "HTTP/1.1 100 Continue\r\n\r\n"
	post := "POST /upload HTTP/1.1\r\nHost: framing.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
	big := bigHead(50, 280)  // about 14.8 KiB: under the 16 KiB limit
	huge := bigHead(70, 290) // about 21 KiB: over it

	closeAll := []map[string]any{step("close", true)}
	recvAll := []map[string]any{step("recv_until_close", true)}
	cat := func(parts ...[]map[string]any) []map[string]any {
		var out []map[string]any
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	return []framingCase{
		{
			name:      "pipelined requests and responses in one write each",
			client:    cat(sends(request("GET", "/p1")+request("GET", "/p2")+request("GET", "/p3")), recvAll),
			server:    cat([]map[string]any{step("recv_request", 3)}, sends(r1+r2+r3), closeAll),
			wantHeads: []string{r1, r2, r3},
			wantPaths: []string{"/p1", "/p2", "/p3"},
		},
		{
			name:      "16 KiB header block split over many writes",
			client:    cat(sends(request("GET", "/big")), recvAll),
			server:    cat([]map[string]any{step("recv_request", 1)}, sends(splitEvery(big+"ok", 1000)...), closeAll),
			wantHeads: []string{big},
			wantPaths: []string{"/big"},
		},
		{
			name:      "response look-alike inside a Content-Length body",
			client:    cat(sends(request("GET", "/cl")+request("GET", "/after")), recvAll),
			server:    cat([]map[string]any{step("recv_request", 2)}, sends(clHead, fakeResponse, accepted), closeAll),
			wantHeads: []string{clHead, accepted},
			wantPaths: []string{"/cl", "/after"},
		},
		{
			name:   "response look-alike inside a chunk",
			client: cat(sends(request("GET", "/chunk")+request("GET", "/after")), recvAll),
			server: cat([]map[string]any{step("recv_request", 2)},
				sends(chunkHead, fmt.Sprintf("%x\r\n", len(fakeResponse)), fakeResponse, "\r\n0\r\n\r\n", accepted), closeAll),
			wantHeads: []string{chunkHead, accepted},
			wantPaths: []string{"/chunk", "/after"},
		},
		{
			name:   "chunked response with extensions and trailer, then another response",
			client: cat(sends(request("GET", "/chunked")+request("GET", "/after")), recvAll),
			server: cat([]map[string]any{step("recv_request", 2)},
				sends(chunkedHead, "5;ext=1\r\nhello\r\n", "1\r\n \r\n", "6\r\nworld!\r\n", "0\r\nX-Trailer: t\r\n\r\n", accepted), closeAll),
			wantHeads: []string{chunkedHead, accepted},
			wantPaths: []string{"/chunked", "/after"},
		},
		{
			name:   "close-delimited HTTP/1.0 response with a look-alike in its body",
			client: cat(sends("GET /old HTTP/1.0\r\n\r\n"), recvAll),
			server: cat([]map[string]any{step("recv_request", 1)},
				sends(oldHead, "HTTP/1.1 500 Internal Server Error\r\n\r\n", "the body ends when the server closes\n"), closeAll),
			wantHeads: []string{oldHead},
			wantPaths: []string{"/old"},
		},
		{
			name:      "HEAD with Content-Length and no body, then another response",
			client:    cat(sends(request("HEAD", "/h")+request("GET", "/g")), recvAll),
			server:    cat([]map[string]any{step("recv_request", 2)}, sends(headResp+created), closeAll),
			wantHeads: []string{headResp, created},
			wantPaths: []string{"/h", "/g"},
		},
		{
			name:      "204 and 304 without bodies, then another response",
			client:    cat(sends(request("GET", "/a")+request("GET", "/b")+request("GET", "/c")), recvAll),
			server:    cat([]map[string]any{step("recv_request", 3)}, sends(noContent+notModified+okTwo), closeAll),
			wantHeads: []string{noContent, notModified, okTwo},
			wantPaths: []string{"/a", "/b", "/c"},
		},
		{
			name:   "100 Continue then the final response",
			client: cat(sends(post), []map[string]any{step("recv_bytes", len(cont))}, sends("hello"), recvAll),
			server: cat([]map[string]any{step("recv_bytes", len(post))}, sends(cont),
				[]map[string]any{step("recv_bytes", 5)}, sends(okTwo), closeAll),
			wantHeads: []string{cont, okTwo},
			wantPaths: []string{"/upload", "/upload"},
		},
		{
			name:          "header block over the limit, then another response",
			client:        cat(sends(request("GET", "/huge")+request("GET", "/after")), recvAll),
			server:        cat([]map[string]any{step("recv_request", 2)}, sends(splitEvery(huge+"ok", 1400)...), sends(accepted), closeAll),
			wantHeads:     []string{huge, accepted},
			wantPaths:     []string{"/huge", "/after"},
			wantTruncated: []bool{true, false},
		},
	}
}

func TestTraceFramesEveryResponseShapeExactly(t *testing.T) {
	e := newTraceEnv(t)
	for _, tc := range framingCases() {
		t.Run(tc.name, func(t *testing.T) {
			port := itest.FreePort(t)
			c := e.startContainer(t, "listening on", "script-serve", "-addr", "127.0.0.1:"+strconv.Itoa(port), "-loop",
				"-timeout", "30s", "-script", scriptJSON(t, tc.server))
			server := containerInit(t, c)
			p := e.startTrace(t, []*itest.Container{c})
			clientOut := runHostScriptClient(t, e, "127.0.0.1:"+strconv.Itoa(port), tc.client)
			vs := viewEvents(t, stopTraceOK(t, p, syscall.SIGINT))
			checkOneSegmentPerSend(t, c, tc.server)
			checkSentLine(t, "client", clientOut, tc.client)
			requireCount(t, vs, len(tc.wantHeads))
			for i, v := range vs {
				checkOrigin(t, i, v, c, e.image, server)
				checkEndpoints(t, i, v, "127.0.0.1", uint16(port), "127.0.0.1", 0)
				if v.direction != "egress" {
					t.Errorf("event %d: direction %q, want egress", i, v.direction)
				}
				want := parseScriptedResponse(t, tc.wantHeads[i])
				if tc.wantTruncated != nil && tc.wantTruncated[i] {
					checkTruncated(t, i, v, want)
				} else {
					checkScripted(t, i, v, want)
				}
				if v.req == nil {
					t.Errorf("event %d: no http_request arg, want the request for %s", i, tc.wantPaths[i])
				} else if v.req.URIPath != tc.wantPaths[i] {
					t.Errorf("event %d: paired with %s %s, want %s", i, v.req.Method, v.req.URIPath, tc.wantPaths[i])
				}
			}
		})
	}
}

// sentLineRE is script-serve's per-connection report of what the kernel sent (TCP_INFO).
var sentLineRE = regexp.MustCompile(`sent \S+: (\d+) data segments, (\d+) retransmitted`)

// checkOneSegmentPerSend checks that each send step of the server's script left as a TCP
// segment of its own, as the case means: the pause after each write is what splits them,
// and the kernel's count of data segments the connection sent proves that it did.
func checkOneSegmentPerSend(t *testing.T, c *itest.Container, server []map[string]any) {
	t.Helper()
	if err := c.WaitLog("sent ", containerTimeout); err != nil {
		t.Fatal(err)
	}
	checkSentLine(t, "server", c.Logs(), server)
}

// checkSentLine finds the "sent" line of a script's run in out and checks that each send
// step left as a data segment of its own.
func checkSentLine(t *testing.T, who, out string, steps []map[string]any) {
	t.Helper()
	sends := 0
	for _, st := range steps {
		if _, ok := st["send"]; ok {
			sends++
		}
	}
	m := sentLineRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the %s did not report the segments it sent:\n%s", who, out)
	}
	data, _ := strconv.Atoi(m[1])
	retrans, _ := strconv.Atoi(m[2])
	if data-retrans != sends {
		t.Errorf("the %s's %d writes left as %d data segments (%d more retransmitted); the case needs one segment per write", who, sends, data-retrans, retrans)
	}
}

// checkTruncated checks an event for a header block over the limit: truncated is set, the
// status is right, and the headers it kept are a prefix of what was sent.
func checkTruncated(t *testing.T, i int, v eventView, sent scripted) {
	t.Helper()
	r := v.resp
	if !v.truncated {
		t.Errorf("event %d: truncated false, want true for a header block over the limit", i)
	}
	if r.Protocol != sent.proto || r.Status != sent.status || r.StatusCode != sent.code {
		t.Errorf("event %d: %s %q, want %s %q", i, r.Protocol, r.Status, sent.proto, sent.status)
	}
	if len(r.Headers) == 0 || len(r.Headers) >= len(sent.header) {
		t.Errorf("event %d: %d header names kept of %d sent, want some but not all", i, len(r.Headers), len(sent.header))
	}
	for name, values := range r.Headers {
		if want := sent.header[name]; strings.Join(want, "\n") != strings.Join(values, "\n") {
			t.Errorf("event %d: kept header %s = %.40q, but %.40q was sent", i, name, values, want)
		}
	}
}

// runHostScriptClient runs `testapp script-client` on the host, requires it to succeed and
// returns its output.
func runHostScriptClient(t *testing.T, e *traceEnv, addr string, script []map[string]any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, e.testapp, "script-client", "-addr", addr, "-timeout", "30s", "-script", scriptJSON(t, script)).CombinedOutput()
	if err != nil {
		t.Fatalf("script-client: %v: %s", err, out)
	}
	return string(out)
}
