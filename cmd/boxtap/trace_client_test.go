package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"testing"
	"time"
)

// httpCall is one request the test makes and what came back, as the test's own client saw it.
type httpCall struct {
	method, path string
	token        string // value of the X-Boxtap-Test request header

	// Filled in by doCalls.
	status        string
	statusCode    int
	proto         string
	header        http.Header // as sent on the wire (see wireHeader)
	contentLength int64       // declared Content-Length, -1 when absent
	localPort     uint16      // the client's port of the connection that carried it
}

// doCalls makes the calls in order against base (e.g. "http://127.0.0.1:8080"), on one
// kept-alive connection or on a fresh connection each.
func doCalls(t *testing.T, base string, keepAlive bool, calls []httpCall) []httpCall {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: !keepAlive, Proxy: nil, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	out := make([]httpCall, len(calls))
	for i, c := range calls {
		var local net.Addr
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { local = info.Conn.LocalAddr() }}
		ctx := httptrace.WithClientTrace(context.Background(), trace)
		req, err := http.NewRequestWithContext(ctx, c.method, base+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.token == "" {
			c.token = fmt.Sprintf("%s-%d", t.Name(), i)
		}
		req.Header.Set("X-Boxtap-Test", c.token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("call %d %s %s: %v", i, c.method, c.path, err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatalf("call %d: read body: %v", i, err)
		}
		resp.Body.Close()
		c.status, c.statusCode, c.proto = resp.Status, resp.StatusCode, resp.Proto
		c.header = wireHeader(resp)
		c.contentLength = declaredLength(c.header)
		if a, ok := local.(*net.TCPAddr); ok {
			c.localPort = uint16(a.Port)
		}
		out[i] = c
	}
	return out
}

// wireHeader undoes what net/http's client does to the response header, to get the header
// lines the server sent: it moves Transfer-Encoding out, and drops "Connection: close".
func wireHeader(resp *http.Response) http.Header {
	h := resp.Header.Clone()
	if len(resp.TransferEncoding) > 0 {
		h["Transfer-Encoding"] = resp.TransferEncoding
	}
	if resp.Close && resp.ProtoAtLeast(1, 1) && h.Get("Connection") == "" {
		h.Set("Connection", "close")
	}
	return h
}

// declaredLength is the content_length an event must carry: the Content-Length header,
// or -1 when there is none (chunked, close-delimited).
func declaredLength(h http.Header) int64 {
	v := h.Get("Content-Length")
	if v == "" || h.Get("Transfer-Encoding") != "" {
		return -1
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// checkCallEvent checks one event against the call that produced it.
func checkCallEvent(t *testing.T, i int, v eventView, c httpCall, host string) {
	t.Helper()
	r := v.resp
	if r.Status != c.status || r.StatusCode != c.statusCode || r.Protocol != c.proto || r.ContentLength != c.contentLength {
		t.Errorf("event %d: status %q code %d proto %q content_length %d, want %q %d %q %d",
			i, r.Status, r.StatusCode, r.Protocol, r.ContentLength, c.status, c.statusCode, c.proto, c.contentLength)
	}
	checkHeaders(t, i, r.Headers, c.header)
	if v.req == nil {
		t.Errorf("event %d: no http_request arg (the request %s %s went over the same traced socket)", i, c.method, c.path)
		return
	}
	q := v.req
	if q.Method != c.method || q.URIPath != c.path || q.Host != host || q.Protocol != "HTTP/1.1" {
		t.Errorf("event %d: request %s %s host %q proto %q, want %s %s %q HTTP/1.1", i, q.Method, q.URIPath, q.Host, q.Protocol, c.method, c.path, host)
	}
	if got := q.Headers.Values("X-Boxtap-Test"); len(got) != 1 || got[0] != c.token {
		t.Errorf("event %d: request header X-Boxtap-Test = %q, want [%q]", i, got, c.token)
	}
}
