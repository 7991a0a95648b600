package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aquasecurity/tracee/types/trace"

	"github.com/boxtap/boxtap/internal/itest"
	"github.com/boxtap/boxtap/runtime/containerd/ctrtest"
)

// watchBinary is the boxtap binary under test: $BOXTAP_TEST_BIN when set (a
// binary built elsewhere, e.g. with extra build flags), else a fresh build.
func watchBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("BOXTAP_TEST_BIN"); bin != "" {
		return bin
	}
	return itest.BuildBoxtap(t)
}

// watchEnv is what the watch/containerd integration tests need.
type watchEnv struct {
	boxtap  string
	ctrd    *ctrtest.Env
	cgroup2 string
}

func newWatchEnv(t *testing.T, containerdAddress string) *watchEnv {
	t.Helper()
	mount := itest.RequireBPF(t)
	return &watchEnv{boxtap: watchBinary(t), ctrd: ctrtest.Require(t, containerdAddress), cgroup2: mount}
}

// startBoxtap runs boxtap with args, killed when the test ends.
func (e *watchEnv) startBoxtap(t *testing.T, args ...string) *itest.Proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return itest.StartProc(t, ctx, e.boxtap, args...)
}

// namespace returns a fresh containerd namespace, removed at the end.
func (e *watchEnv) namespace(t *testing.T) string {
	t.Helper()
	ns := ctrtest.RandomID("boxtap-itest")
	t.Cleanup(func() { e.ctrd.RemoveNamespace(t, ns) })
	return ns
}

// getN sends n GET requests to url (a server the test started on 127.0.0.1). It first
// waits, with bare TCP connections that carry no HTTP, until the server accepts; from then
// on every request must succeed at its first try, so that no retry can hide a failure
// that the test is about.
func getN(t *testing.T, url string, n int) {
	t.Helper()
	waitAccepting(t, url)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range n {
		resp, err := client.Get(url + "?i=" + strconv.Itoa(i))
		if err != nil {
			t.Fatalf("GET %s (request %d of %d, the server was accepting): %v", url, i+1, n, err)
		}
		resp.Body.Close()
	}
}

// waitAccepting waits until the host of an http:// URL accepts TCP connections (the
// server may still be starting). The connections are closed without sending a byte.
func waitAccepting(t *testing.T, rawURL string) {
	t.Helper()
	u, err := neturl.Parse(rawURL)
	if err != nil {
		t.Fatalf("bad URL %q: %v", rawURL, err)
	}
	var lastErr error
	ok := hxWaitUntil(30*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", u.Host, time.Second)
		if err != nil {
			lastErr = err
			return false
		}
		conn.Close()
		return true
	})
	if !ok {
		t.Fatalf("nothing accepts connections at %s: %v", u.Host, lastErr)
	}
}

// fileEvents decodes a JSON Lines file with Tracee's types; every line must
// be whole and valid.
func fileEvents(t *testing.T, path string) []trace.Event {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("%s ends in a partial line", path)
	}
	var lines []string
	for _, l := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(l) > 0 {
			lines = append(lines, string(l))
		}
	}
	return decodeEvents(t, lines)
}

// waitFileEvents waits until path holds at least n events.
func waitFileEvents(t *testing.T, path string, n int, timeout time.Duration) []trace.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			if evs := fileEvents(t, path); len(evs) >= n {
				return evs
			}
		}
		if time.Now().After(deadline) {
			have := 0
			if _, err := os.Stat(path); err == nil {
				have = len(fileEvents(t, path))
			}
			t.Fatalf("%s: %d events after %s, want %d", path, have, timeout, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// responseStatus returns the status code of a net_packet_http_response event.
func responseOf(t *testing.T, ev trace.Event) (int, string) {
	t.Helper()
	for _, a := range ev.Args {
		if a.Name == "http_response" {
			if r, ok := a.Value.(trace.ProtoHTTPResponse); ok {
				return r.StatusCode, r.Protocol
			}
			b, _ := json.Marshal(a.Value)
			t.Fatalf("http_response arg has type %T: %s", a.Value, b)
		}
	}
	t.Fatal("event has no http_response arg")
	return 0, ""
}

func argString(ev trace.Event, name string) string {
	for _, a := range ev.Args {
		if a.Name == name {
			if s, ok := a.Value.(string); ok {
				return s
			}
		}
	}
	return ""
}

// openFilesOf lists the files under dir that process pid holds open.
func openFilesOf(pid int, dir string) []string {
	var out []string
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, dir+"/") {
			out = append(out, target)
		}
	}
	return out
}

// cgroupOfPID returns the cgroup v2 directory of a process.
func (e *watchEnv) cgroupOfPID(t *testing.T, pid uint32) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatalf("read cgroup of pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(e.cgroup2, rest)
		}
	}
	t.Fatalf("pid %d has no cgroup v2 line", pid)
	return ""
}
