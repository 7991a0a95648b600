package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/boxtap/boxtap/internal/itest"
)

func TestPadHeadersAddUpToN(t *testing.T) {
	for n := 0; n <= 5000; n++ {
		values := padHeaders(n)
		total := 0
		for i, v := range values {
			total += len(fmt.Sprintf("X-Pad-%03d: %s\r\n", i+1, v))
			if v == "" {
				t.Fatalf("n=%d: header %d has an empty value", n, i+1)
			}
		}
		switch {
		case n == 0 && len(values) != 0:
			t.Fatalf("n=0: got %d headers, want none", len(values))
		case n >= 14 && total != n:
			t.Fatalf("n=%d: header lines add up to %d bytes", n, total)
		case n > 0 && n < 14 && len(values) != 1:
			t.Fatalf("n=%d: got %d headers, want one minimal header", n, len(values))
		}
	}
}

func TestServeRoutes(t *testing.T) {
	addr, stop := startCommand(t, "serve", "-addr", "127.0.0.1:0")
	base := "http://" + addr
	tests := []struct {
		path       string
		wantStatus int
		wantBody   string // exact body when set
		wantLen    int    // body length when wantBody is empty
		check      func(t *testing.T, resp *http.Response)
	}{
		{path: "/", wantStatus: 200, wantBody: "ok\n"},
		{path: "/status/503", wantStatus: 503, wantBody: "status 503\n"},
		{path: "/status/204", wantStatus: 204, wantBody: ""},
		{path: "/status/304", wantStatus: 304, wantBody: ""},
		{path: "/status/99", wantStatus: 400, wantLen: -1},
		{path: "/bytes/0", wantStatus: 200, wantLen: 0},
		{path: "/bytes/100000", wantStatus: 200, wantLen: 100000, check: func(t *testing.T, resp *http.Response) {
			if resp.ContentLength != 100000 {
				t.Errorf("Content-Length = %d, want 100000", resp.ContentLength)
			}
		}},
		{path: "/bytes/-5", wantStatus: 400, wantLen: -1},
		{path: "/chunked/5000", wantStatus: 200, wantLen: 5000, check: func(t *testing.T, resp *http.Response) {
			if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
				t.Errorf("Transfer-Encoding = %v, want [chunked]", resp.TransferEncoding)
			}
		}},
		{path: "/headers/2000", wantStatus: 200, wantBody: "headers\n", check: func(t *testing.T, resp *http.Response) {
			total := 0
			for name, vals := range resp.Header {
				if strings.HasPrefix(name, "X-Pad-") {
					total += len(name) + len(": ") + len(vals[0]) + len("\r\n")
				}
			}
			if total != 2000 {
				t.Errorf("X-Pad headers add up to %d bytes, want 2000", total)
			}
		}},
		{path: "/echo?q=1", wantStatus: 200, wantBody: "GET /echo?q=1\n"},
		{path: "/nope", wantStatus: 404, wantLen: -1},
		{path: "/sleep/20ms", wantStatus: 200, wantBody: "slept 20ms\n"},
		{path: "/sleep/0s", wantStatus: 200, wantBody: "slept 0s\n"},
		{path: "/sleep/11s", wantStatus: 400, wantLen: -1},
		{path: "/sleep/soon", wantStatus: 400, wantLen: -1},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(base + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", resp.StatusCode, tc.wantStatus, body)
			}
			switch {
			case tc.wantBody != "" || tc.wantLen == 0:
				if string(body) != tc.wantBody {
					t.Errorf("body = %q, want %q", body, tc.wantBody)
				}
			case tc.wantLen > 0:
				if len(body) != tc.wantLen || !bytes.Equal(body, fill(tc.wantLen)) {
					t.Errorf("body is %d bytes (pattern ok: %v), want %d bytes of the fill pattern",
						len(body), bytes.Equal(body, fill(len(body))), tc.wantLen)
				}
			}
			if tc.check != nil {
				tc.check(t, resp)
			}
		})
	}
	if err, out := stop(); err != nil {
		t.Fatalf("serve: %v; output: %s", err, out)
	}
}

func TestGetPrintsStatusAndSizePerResponse(t *testing.T) {
	addr, _ := startCommand(t, "serve", "-addr", "127.0.0.1:0")
	for _, keepalive := range []string{"true", "false"} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"get", "-url", "http://" + addr + "/bytes/10", "-n", "3", "-keepalive=" + keepalive}, &out, &errOut)
		if err != nil {
			t.Fatalf("keepalive=%s: get: %v (%s)", keepalive, err, errOut.String())
		}
		if want := "200 10\n200 10\n200 10\n"; out.String() != want {
			t.Errorf("keepalive=%s: output %q, want %q", keepalive, out.String(), want)
		}
	}
}

func TestGetFailsWhenNothingListens(t *testing.T) {
	addr, stop := startCommand(t, "serve", "-addr", "127.0.0.1:0")
	stop() // the port is now closed
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"get", "-url", "http://" + addr + "/", "-timeout", "5s"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "request 1 of 1") {
		t.Fatalf("get error = %v, want a failed request 1 of 1", err)
	}
}

func TestServeIPv6Loopback(t *testing.T) {
	// A host without ::1 skips locally and fails in CI, where IPv6 loopback must exist.
	l, err := net.Listen("tcp6", "[::1]:0")
	itest.Require(t, err == nil, "needs IPv6 loopback (::1; sysctl net.ipv6.conf.lo.disable_ipv6=0): %v", err)
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-addr", "127.0.0.1:0", "-addr6", "[::1]:0"}, &out, &errOut)
	}()
	addr6 := ""
	for i := 0; i < 1000 && addr6 == ""; i++ {
		if line, ok := strings.CutPrefix(out.String(), "listening on "); ok {
			if f := strings.Fields(line); len(f) == 2 {
				addr6 = f[1]
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve with -addr6 [::1]:0 ended before listening: %v", err)
		default:
		}
		if addr6 == "" {
			waitBriefly()
		}
	}
	if addr6 == "" {
		t.Fatalf("serve did not report two listeners; output %q", out.String())
	}
	var gout, gerr bytes.Buffer
	if err := run(ctx, []string{"get", "-url", "http://" + addr6 + "/status/201"}, &gout, &gerr); err != nil {
		t.Fatalf("get over ::1: %v", err)
	}
	if gout.String() != "201 11\n" {
		t.Errorf("get output %q, want %q", gout.String(), "201 11\n")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}

func TestRunRejectsUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"dance"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), `unknown command "dance"`) {
		t.Fatalf("error = %v", err)
	}
	if err := run(context.Background(), nil, &out, &errOut); err == nil {
		t.Fatal("no command: want an error")
	}
}
