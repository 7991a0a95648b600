package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestServeCount checks that serve -count reports every response and connection on
// shutdown, and keeps Content-Length framing on the routes that declare it.
func TestServeCount(t *testing.T) {
	addr, stop := startCommand(t, "serve", "-addr", "127.0.0.1:0", "-count")
	keepAlive := &http.Client{Transport: &http.Transport{}}
	oneShot := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(c *http.Client, path string) {
		t.Helper()
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
			t.Errorf("%s: Content-Length %d, Transfer-Encoding %v, body %d bytes; want Content-Length framing", path, resp.ContentLength, resp.TransferEncoding, len(body))
		}
	}
	for i := 0; i < 3; i++ {
		get(keepAlive, fmt.Sprintf("/status/%d", 200+i))
	}
	get(oneShot, "/status/404")
	get(oneShot, "/bytes/10")
	keepAlive.CloseIdleConnections()
	err, out := stop()
	if err != nil {
		t.Fatalf("serve: %v\n%s", err, out)
	}
	if want := "served 5 responses on 3 connections (5 begun)\n"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

// TestServeWithoutCountPrintsNothing checks that the count line is opt-in.
func TestServeWithoutCountPrintsNothing(t *testing.T) {
	addr, stop := startCommand(t, "serve", "-addr", "127.0.0.1:0")
	resp, err := http.Get("http://" + addr + "/status/200")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, out := stop()
	if strings.Contains(out, "served") {
		t.Errorf("serve without -count printed a count:\n%s", out)
	}
}
