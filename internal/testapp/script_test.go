package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseScript(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		want    script
		wantErr string
	}{
		{
			name: "all steps",
			json: `[{"send":"GET / HTTP/1.1\r\n\r\n"},{"send_fill":3},{"sleep_ms":5},{"recv_request":2},{"recv_bytes":7},{"recv_until_close":true},{"close":true}]`,
			want: script{
				{kind: stepSend, data: []byte("GET / HTTP/1.1\r\n\r\n")},
				{kind: stepSend, data: []byte("012")},
				{kind: stepSleep, n: 5},
				{kind: stepRecvRequest, n: 2},
				{kind: stepRecvBytes, n: 7},
				{kind: stepRecvUntilClose},
				{kind: stepClose},
			},
		},
		{name: "empty list", json: `[]`, want: script{}},
		{name: "wait signal", json: `[{"wait_signal":true},{"close":true}]`, want: script{{kind: stepWaitSignal}, {kind: stepClose}}},
		{name: "wait signal false", json: `[{"wait_signal":false}]`, wantErr: "wait_signal: want true"},
		{name: "not a list", json: `{"send":"x"}`, wantErr: "JSON list"},
		{name: "two keys", json: `[{"send":"x","close":true}]`, wantErr: "step 1: want exactly one key"},
		{name: "no key", json: `[{}]`, wantErr: "exactly one key per step, got 0"},
		{name: "unknown key", json: `[{"close":true},{"shout":"x"}]`, wantErr: `step 2: unknown step "shout"`},
		{name: "send not string", json: `[{"send":5}]`, wantErr: "send: want a JSON string"},
		{name: "negative sleep", json: `[{"sleep_ms":-1}]`, wantErr: "sleep_ms: want an integer"},
		{name: "zero requests", json: `[{"recv_request":0}]`, wantErr: "recv_request: want an integer in [1,"},
		{name: "close false", json: `[{"close":false}]`, wantErr: "close: want true"},
		{name: "huge fill", json: `[{"send_fill":1000000000}]`, wantErr: "send_fill: want an integer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseScript([]byte(tc.json))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseScript error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseScript: %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d steps, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i].kind != tc.want[i].kind || got[i].n != tc.want[i].n || !bytes.Equal(got[i].data, tc.want[i].data) {
					t.Errorf("step %d = %+v, want %+v", i+1, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestRequestBodyLength(t *testing.T) {
	tests := []struct {
		head    string
		want    int
		wantErr string
	}{
		{head: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", want: 0},
		{head: "POST / HTTP/1.1\r\ncontent-LENGTH:  12 \r\n\r\n", want: 12},
		{head: "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", wantErr: "bad Content-Length"},
		{head: "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", wantErr: "bad Content-Length"},
		{head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", wantErr: "use recv_bytes"},
		// A colon in the request line must not be read as a header.
		{head: "GET /content-length:5 HTTP/1.1\r\n\r\n", want: 0},
	}
	for _, tc := range tests {
		got, err := requestBodyLength([]byte(tc.head))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("requestBodyLength(%q) error = %v, want %q", tc.head, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("requestBodyLength(%q) = %d, %v; want %d", tc.head, got, err, tc.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer goroutine and polling readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startCommand runs a testapp subcommand in the background and waits for its
// "listening on ADDR" line. It returns the address and a function that stops the command
// and returns its error and output.
func startCommand(t *testing.T, args ...string) (addr string, stop func() (error, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &out, &errOut) }()
	var result error
	finished := false
	stop = func() (error, string) {
		cancel()
		if !finished {
			select {
			case result = <-done:
			case <-time.After(10 * time.Second):
				result = fmt.Errorf("command %v did not stop within 10s", args)
			}
			finished = true
		}
		return result, out.String() + errOut.String()
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if line, ok := strings.CutPrefix(out.String(), "listening on "); ok {
			return strings.Fields(line)[0], stop
		}
		select {
		case err := <-done:
			finished, result = true, err
			t.Fatalf("command %v exited before listening: %v; output: %s", args, err, errOut.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("command %v did not print 'listening on' within 10s", args)
	return "", nil
}

func runClient(t *testing.T, addr, scriptJSON string, dump bool) (string, error) {
	t.Helper()
	args := []string{"script-client", "-addr", addr, "-script", scriptJSON, "-timeout", "10s"}
	if dump {
		args = append(args, "-dump")
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), err
}

func TestScriptServerAndClientExchangeExactBytes(t *testing.T) {
	response := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	server := fmt.Sprintf(`[{"recv_request":2},{"send":%q},{"sleep_ms":20},{"send":%q},{"send_fill":100},{"close":true}]`,
		response[:10], response[10:])
	addr, stop := startCommand(t, "script-serve", "-addr", "127.0.0.1:0", "-script", server)

	// Two pipelined requests; the second's body is split over three writes.
	client := `[
		{"send":"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 6\r\n"},
		{"send":"\r\nabc"},
		{"sleep_ms":10},
		{"send":"def"},
		{"recv_until_close":true}
	]`
	got, err := runClient(t, addr, client, true)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	if want := response + string(fill(100)); got != want {
		t.Fatalf("client received %q, want %q", got, want)
	}
	err, out := stop()
	if err != nil {
		t.Fatalf("server: %v; output: %s", err, out)
	}
	// The server read both requests completely: 2 heads + 6 body bytes.
	wantRead := len("GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 6\r\n\r\nabcdef")
	if !strings.Contains(out, fmt.Sprintf("received %d\n", wantRead)) {
		t.Errorf("server output %q does not report %d bytes received", out, wantRead)
	}
}

func TestScriptServerLoopServesEveryConnection(t *testing.T) {
	addr, stop := startCommand(t, "script-serve", "-addr", "127.0.0.1:0", "-loop",
		"-script", `[{"recv_bytes":4},{"send":"pong"},{"close":true}]`)
	for i := 0; i < 3; i++ {
		got, err := runClient(t, addr, `[{"send":"ping"},{"recv_bytes":4}]`, false)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if got != "received 4\n" {
			t.Fatalf("client %d printed %q, want %q", i, got, "received 4\n")
		}
	}
	if err, out := stop(); err != nil {
		t.Fatalf("server: %v; output: %s", err, out)
	} else if n := strings.Count(out, "done "); n != 3 {
		t.Errorf("server reported %d finished connections, want 3; output: %s", n, out)
	}
}

func TestScriptClientReportsEarlyClose(t *testing.T) {
	addr, _ := startCommand(t, "script-serve", "-addr", "127.0.0.1:0", "-script", `[{"send":"abc"},{"close":true}]`)
	out, err := runClient(t, addr, `[{"recv_bytes":10}]`, false)
	if err == nil || !strings.Contains(err.Error(), "have 3 of 10 bytes") {
		t.Fatalf("client error = %v, want it to report 3 of 10 bytes", err)
	}
	if out != "received 3\n" {
		t.Errorf("client printed %q, want %q", out, "received 3\n")
	}
}

func TestScriptStepAfterCloseFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	_, err = runClient(t, ln.Addr().String(), `[{"close":true},{"send":"x"}]`, false)
	if err == nil || !strings.Contains(err.Error(), "step 2: connection already closed") {
		t.Fatalf("error = %v, want step 2 to fail on a closed connection", err)
	}
}

func TestLoadScriptArg(t *testing.T) {
	files := map[string][]byte{"s.json": []byte(`[{"close":true}]`)}
	readFile := func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			return b, nil
		}
		return nil, fmt.Errorf("open %s: no such file", name)
	}
	if got, err := loadScriptArg("@s.json", readFile); err != nil || string(got) != `[{"close":true}]` {
		t.Errorf("@s.json = %q, %v", got, err)
	}
	if _, err := loadScriptArg("@missing.json", readFile); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("@missing.json error = %v, want it to name the file", err)
	}
	if _, err := loadScriptArg(" ", readFile); err == nil || !strings.Contains(err.Error(), "-script is required") {
		t.Errorf("empty script error = %v", err)
	}
}

func FuzzParseScript(f *testing.F) {
	f.Add([]byte(`[{"send":"GET / HTTP/1.1\r\n\r\n"},{"recv_request":1},{"close":true}]`))
	f.Add([]byte(`[{"sleep_ms":1},{"recv_bytes":0},{"recv_until_close":true},{"send_fill":4}]`))
	f.Add([]byte(`[{"send":"x","close":true}]`))
	f.Add([]byte(`[{"recv_request":-3}]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		steps, err := parseScript(raw)
		if err != nil {
			if steps != nil {
				t.Fatalf("steps %v returned with error %v", steps, err)
			}
			return
		}
		// Property: a parsed script, written back as JSON, parses to the same steps.
		again, err := parseScript(encodeScript(t, steps))
		if err != nil {
			t.Fatalf("re-encoded script does not parse: %v", err)
		}
		if len(again) != len(steps) {
			t.Fatalf("round trip changed the step count from %d to %d", len(steps), len(again))
		}
		for i := range steps {
			if again[i].kind != steps[i].kind || again[i].n != steps[i].n || !bytes.Equal(again[i].data, steps[i].data) {
				t.Fatalf("round trip changed step %d from %+v to %+v", i+1, steps[i], again[i])
			}
		}
	})
}

// encodeScript writes steps in the JSON form parseScript reads.
func encodeScript(t *testing.T, steps script) []byte {
	objs := make([]map[string]any, 0, len(steps))
	for _, st := range steps {
		switch st.kind {
		case stepSend:
			objs = append(objs, map[string]any{"send": string(st.data)})
		case stepSleep:
			objs = append(objs, map[string]any{"sleep_ms": st.n})
		case stepRecvRequest:
			objs = append(objs, map[string]any{"recv_request": st.n})
		case stepRecvBytes:
			objs = append(objs, map[string]any{"recv_bytes": st.n})
		case stepRecvUntilClose:
			objs = append(objs, map[string]any{"recv_until_close": true})
		case stepClose:
			objs = append(objs, map[string]any{"close": true})
		case stepWaitSignal:
			objs = append(objs, map[string]any{"wait_signal": true})
		default:
			t.Fatalf("parseScript produced unknown step kind %d", st.kind)
		}
	}
	b, err := json.Marshal(objs)
	if err != nil {
		t.Fatalf("encode script: %v", err)
	}
	return b
}

func FuzzRequestBodyLength(f *testing.F) {
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		n, err := requestBodyLength(head)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("negative length %d", n)
		}
		if n > 0 && !bytes.Contains(bytes.ToLower(head), []byte("content-length")) {
			t.Fatalf("length %d from a head without Content-Length: %q", n, head)
		}
	})
}

func waitBriefly() { time.Sleep(10 * time.Millisecond) }

// TestScriptServerReportsSentSegments: with a pause between them, each send leaves as a
// segment of its own, and script-serve says so from TCP_INFO.
func TestScriptServerReportsSentSegments(t *testing.T) {
	addr, stop := startCommand(t, "script-serve", "-addr", "127.0.0.1:0",
		"-script", `[{"recv_bytes":4},{"send":"a"},{"sleep_ms":30},{"send":"b"},{"sleep_ms":30},{"send":"c"},{"sleep_ms":30},{"close":true}]`)
	if got, err := runClient(t, addr, `[{"send":"ping"},{"recv_until_close":true}]`, false); err != nil || got != "received 3\n" {
		t.Fatalf("client printed %q, %v; want %q", got, err, "received 3\n")
	}
	err, out := stop()
	if err != nil {
		t.Fatalf("server: %v; output: %s", err, out)
	}
	if !strings.Contains(out, ": 3 data segments, 0 retransmitted\n") {
		t.Errorf("server output %q does not report 3 data segments sent", out)
	}
}
