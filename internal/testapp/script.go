package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// A script is a list of steps run in order on one TCP connection. Its JSON form is a list of
// objects with exactly one key each:
//
//	{"send":"GET / HTTP/1.1\r\n\r\n"}  one write() of the string's bytes (UTF-8 as written)
//	{"send_fill":N}                     one write() of N filler bytes (for large bodies)
//	{"sleep_ms":N}                      pause N milliseconds
//	{"recv_request":N}                  read N complete request heads (up to CRLFCRLF) and
//	                                    their Content-Length bodies
//	{"recv_bytes":N}                    read exactly N bytes
//	{"recv_until_close":true}           read until the peer closes
//	{"close":true}                      close the connection
//	{"wait_signal":true}                print "waiting for SIGUSR1" on stderr, then block until
//	                                    the process gets SIGUSR1 (script-client only)
//
// With TCP_NODELAY each send normally leaves as its own segment, which lets tests place
// HTTP message boundaries exactly where they want them.
type script []step

type stepKind int

const (
	stepSend stepKind = iota
	stepSleep
	stepRecvRequest
	stepRecvBytes
	stepRecvUntilClose
	stepClose
	stepWaitSignal
)

type step struct {
	kind stepKind
	data []byte // stepSend
	n    int    // stepSleep (ms), stepRecvRequest (count), stepRecvBytes (bytes)
}

// maxFill bounds send_fill so a typo cannot allocate gigabytes.
const maxFill = 64 << 20

// parseScript decodes the JSON form of a script.
func parseScript(raw []byte) (script, error) {
	var objs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &objs); err != nil {
		return nil, fmt.Errorf(`script must be a JSON list of one-key objects such as [{"send":"..."},{"close":true}]: %w`, err)
	}
	steps := make(script, 0, len(objs))
	for i, obj := range objs {
		st, err := parseStep(obj)
		if err != nil {
			return nil, fmt.Errorf("script step %d: %w", i+1, err)
		}
		steps = append(steps, st)
	}
	return steps, nil
}

func parseStep(obj map[string]json.RawMessage) (step, error) {
	if len(obj) != 1 {
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		return step{}, fmt.Errorf("want exactly one key per step, got %d (%s)", len(obj), strings.Join(keys, ", "))
	}
	for key, val := range obj {
		switch key {
		case "send":
			var s string
			if err := json.Unmarshal(val, &s); err != nil {
				return step{}, fmt.Errorf("send: want a JSON string: %w", err)
			}
			return step{kind: stepSend, data: []byte(s)}, nil
		case "send_fill":
			n, err := stepInt(key, val, 1, maxFill)
			if err != nil {
				return step{}, err
			}
			return step{kind: stepSend, data: fill(n)}, nil
		case "sleep_ms":
			n, err := stepInt(key, val, 0, 10*60*1000)
			return step{kind: stepSleep, n: n}, err
		case "recv_request":
			n, err := stepInt(key, val, 1, 1<<20)
			return step{kind: stepRecvRequest, n: n}, err
		case "recv_bytes":
			n, err := stepInt(key, val, 0, 1<<40)
			return step{kind: stepRecvBytes, n: n}, err
		case "recv_until_close":
			return step{kind: stepRecvUntilClose}, stepTrue(key, val)
		case "close":
			return step{kind: stepClose}, stepTrue(key, val)
		case "wait_signal":
			return step{kind: stepWaitSignal}, stepTrue(key, val)
		default:
			return step{}, fmt.Errorf("unknown step %q (known: send, send_fill, sleep_ms, recv_request, recv_bytes, recv_until_close, close, wait_signal)", key)
		}
	}
	return step{}, errors.New("empty step") // not reached: the map has exactly one key
}

func stepInt(key string, val json.RawMessage, lo, hi int) (int, error) {
	var n int
	if err := json.Unmarshal(val, &n); err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s: want an integer in [%d, %d], got %s", key, lo, hi, val)
	}
	return n, nil
}

func stepTrue(key string, val json.RawMessage) error {
	var b bool
	if err := json.Unmarshal(val, &b); err != nil || !b {
		return fmt.Errorf("%s: want true, got %s", key, val)
	}
	return nil
}

// scriptRun runs a script on one connection.
type scriptRun struct {
	conn        net.Conn
	readTimeout time.Duration    // per read: how long the peer may stay silent
	keep        bool             // keep a copy of everything read in received
	signals     <-chan os.Signal // SIGUSR1 deliveries for wait_signal steps; nil: not supported
	notes       io.Writer        // where wait_signal says it is waiting

	sent    tcpSent // what the kernel sent, read before the connection closes
	sentErr error   // why sent could not be read

	pending  []byte // read from the socket but not yet consumed by a recv step
	received []byte // everything read, when keep is set
	total    int64  // number of bytes read
	closed   bool
}

// run executes steps in order. Cancelling ctx closes the connection, which ends any read or
// write in progress.
func (r *scriptRun) run(ctx context.Context, steps script) error {
	stop := context.AfterFunc(ctx, func() { r.conn.Close() })
	defer stop()
	for i, st := range steps {
		if err := r.step(ctx, st); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("step %d: interrupted: %w", i+1, ctx.Err())
			}
			return fmt.Errorf("step %d: %w", i+1, err)
		}
	}
	return nil
}

func (r *scriptRun) step(ctx context.Context, st step) error {
	if r.closed && st.kind != stepSleep && st.kind != stepWaitSignal {
		return errors.New("connection already closed by an earlier close step")
	}
	switch st.kind {
	case stepSend:
		if _, err := r.conn.Write(st.data); err != nil {
			return fmt.Errorf("send %d bytes: %w", len(st.data), err)
		}
	case stepSleep:
		t := time.NewTimer(time.Duration(st.n) * time.Millisecond)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	case stepRecvRequest:
		for i := 0; i < st.n; i++ {
			if err := r.recvRequest(); err != nil {
				return fmt.Errorf("recv_request %d of %d: %w", i+1, st.n, err)
			}
		}
	case stepRecvBytes:
		if err := r.fillTo(st.n); err != nil {
			return fmt.Errorf("recv_bytes %d: %w", st.n, err)
		}
		r.pending = r.pending[st.n:]
	case stepRecvUntilClose:
		for {
			err := r.readMore()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("recv_until_close: %w", err)
			}
		}
		r.pending = r.pending[:0]
	case stepWaitSignal:
		if r.signals == nil {
			return errors.New("wait_signal: only script-client listens for SIGUSR1; remove the step from this script")
		}
		return waitForSignal(ctx, r.signals, r.notes)
	case stepClose:
		r.noteSent()
		r.closed = true
		if err := r.conn.Close(); err != nil {
			return fmt.Errorf("close: %w", err)
		}
	}
	return nil
}

// noteSent reads what the kernel sent on the connection while it is still open.
func (r *scriptRun) noteSent() {
	if !r.closed {
		r.sent, r.sentErr = readTCPSent(r.conn)
	}
}

// recvRequest consumes one request head and its Content-Length body from the stream.
func (r *scriptRun) recvRequest() error {
	for {
		end := bytes.Index(r.pending, []byte("\r\n\r\n"))
		if end < 0 {
			if err := r.readMore(); err != nil {
				return fmt.Errorf("waiting for the end of a request head (have %d bytes): %w", len(r.pending), err)
			}
			continue
		}
		head := r.pending[:end+4]
		bodyLen, err := requestBodyLength(head)
		if err != nil {
			return err
		}
		need := len(head) + bodyLen
		if err := r.fillTo(need); err != nil {
			return fmt.Errorf("waiting for a %d-byte request body: %w", bodyLen, err)
		}
		r.pending = r.pending[need:]
		return nil
	}
}

// requestBodyLength returns the Content-Length of a request head (0 when absent).
func requestBodyLength(head []byte) (int, error) {
	length := 0
	for _, line := range strings.Split(string(head), "\r\n")[1:] {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length":
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("bad Content-Length %q in request head", value)
			}
			length = n
		case "transfer-encoding":
			if !strings.EqualFold(value, "identity") {
				return 0, fmt.Errorf("request uses Transfer-Encoding %q, which recv_request does not decode; use recv_bytes", value)
			}
		}
	}
	return length, nil
}

// fillTo reads until at least n bytes are pending.
func (r *scriptRun) fillTo(n int) error {
	for len(r.pending) < n {
		if err := r.readMore(); err != nil {
			return fmt.Errorf("have %d of %d bytes: %w", len(r.pending), n, err)
		}
	}
	return nil
}

// readMore does one read() into pending. It returns io.EOF when the peer closed.
func (r *scriptRun) readMore() error {
	var buf [32 * 1024]byte
	if r.readTimeout > 0 {
		if err := r.conn.SetReadDeadline(time.Now().Add(r.readTimeout)); err != nil {
			return fmt.Errorf("set read deadline: %w", err)
		}
	}
	n, err := r.conn.Read(buf[:])
	if n > 0 {
		r.pending = append(r.pending, buf[:n]...)
		r.total += int64(n)
		if r.keep {
			r.received = append(r.received, buf[:n]...)
		}
	}
	if n > 0 && errors.Is(err, io.EOF) {
		return nil // report EOF on the next read
	}
	if err != nil && !errors.Is(err, io.EOF) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("peer sent nothing for %s: %w", r.readTimeout, err)
		}
	}
	return err
}

// hasStep reports whether the script contains a step of kind k.
func (s script) hasStep(k stepKind) bool {
	for _, st := range s {
		if st.kind == k {
			return true
		}
	}
	return false
}

// waitForSignal writes "waiting for SIGUSR1" to notes, then blocks until a signal arrives on
// sigs or ctx is cancelled. Tests wait for that line before sending the signal, so the
// handler is always installed when the signal comes (an unhandled SIGUSR1 would kill the
// process, or be ignored when it is a container's PID 1).
func waitForSignal(ctx context.Context, sigs <-chan os.Signal, notes io.Writer) error {
	if notes != nil {
		fmt.Fprintln(notes, "waiting for SIGUSR1")
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("waiting for SIGUSR1: %w", ctx.Err())
	case <-sigs:
		return nil
	}
}

// loadScriptArg returns the script text of a -script flag: inline JSON, or @FILE.
func loadScriptArg(arg string, readFile func(string) ([]byte, error)) ([]byte, error) {
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		b, err := readFile(name)
		if err != nil {
			return nil, fmt.Errorf("read script file: %w", err)
		}
		return b, nil
	}
	if strings.TrimSpace(arg) == "" {
		return nil, errors.New(`-script is required (inline JSON, or @FILE), e.g. -script '[{"recv_request":1},{"send":"HTTP/1.1 204 No Content\r\n\r\n"}]'`)
	}
	return []byte(arg), nil
}
