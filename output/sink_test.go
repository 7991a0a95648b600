package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// recordingWriter keeps every Write call separately.
type recordingWriter struct {
	mu     sync.Mutex
	writes [][]byte
	err    error
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func (w *recordingWriter) all() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Join(w.writes, nil)
}

func TestLineSinkWritesWholeLines(t *testing.T) {
	w := &recordingWriter{}
	s := NewLineSink(w, nil)
	e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	const n = 500
	for i := 0; i < n; i++ {
		e.Timestamp = int64(i)
		if i == 250 {
			// One line larger than the whole buffer.
			e.Response.Headers = append(e.Response.Headers, Header{"X-Big", strings.Repeat("b", 2*lineBufferSize)})
		}
		if err := s.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.writes) == 0 {
		t.Fatal("64 KiB buffer should have spilled before Flush")
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, p := range w.writes {
		if len(p) == 0 || p[len(p)-1] != '\n' {
			t.Fatalf("write %d does not end at a line boundary (len %d)", i, len(p))
		}
	}
	checkTimestampLines(t, w.all(), n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Write(e); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
}

func TestLineSinkRedactsByDefaultAndHonoursRedactor(t *testing.T) {
	e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	e.Response.Headers = append(e.Response.Headers, Header{"X-Tenant", "tok-secret-1"}, Header{"Set-Cookie", "s=cookie-secret-2"})
	for _, tc := range []struct {
		r          *Redactor
		wantCookie bool
		wantToken  bool
	}{
		{nil, false, true},
		{NewRedactor([]string{"x-tenant"}, false), false, false},
		{NewRedactor([]string{"x-tenant"}, true), true, true},
	} {
		var buf bytes.Buffer
		s := NewLineSink(&buf, tc.r)
		if err := s.Write(e); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != 0 {
			t.Error("LineSink wrote before Flush")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if got := strings.Contains(out, "cookie-secret-2"); got != tc.wantCookie {
			t.Errorf("redactor %+v: cookie visible=%v, want %v", tc.r, got, tc.wantCookie)
		}
		if got := strings.Contains(out, "tok-secret-1"); got != tc.wantToken {
			t.Errorf("redactor %+v: token visible=%v, want %v", tc.r, got, tc.wantToken)
		}
	}
}

func TestLineSinkConcurrentWriteFlush(t *testing.T) {
	w := &recordingWriter{}
	s := NewLineSink(w, nil)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
			for i := 0; i < 200; i++ {
				if err := s.Write(e); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					if err := s.Flush(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(w.all()))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		if !json.Valid(sc.Bytes()) {
			t.Fatalf("line %d is not valid JSON", n)
		}
		n++
	}
	if n != 800 {
		t.Errorf("got %d lines, want 800", n)
	}
}

func TestLineSinkReportsWriterErrors(t *testing.T) {
	w := &recordingWriter{err: errors.New("disk full")}
	s := NewLineSink(w, nil)
	e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	if err := s.Write(e); err != nil {
		t.Fatalf("buffered Write should not fail yet: %v", err)
	}
	err := s.Flush()
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Flush error = %v, want wrapped writer error", err)
	}
}

func TestPrettySink(t *testing.T) {
	var buf bytes.Buffer
	s := NewPrettySink(&buf, nil)
	e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	for i := 0; i < 3; i++ {
		e.Timestamp = int64(i)
		if err := s.Write(e); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(buf.String(), "}\n") {
			t.Fatalf("event %d not flushed on Write", i)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	objs := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n\n")
	if len(objs) != 3 {
		t.Fatalf("got %d blank-line separated objects, want 3:\n%s", len(objs), buf.String())
	}
	for i, o := range objs {
		if !strings.Contains(o, "\n  \"timestamp\": "+fmt.Sprint(i)+",") {
			t.Errorf("object %d not indented or wrong:\n%s", i, o)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(o)); err != nil {
			t.Fatalf("object %d invalid: %v", i, err)
		}
		e.Timestamp = int64(i)
		if !bytes.Equal(compact.Bytes(), e.AppendJSON(nil)) {
			t.Errorf("object %d differs from AppendJSON output", i)
		}
	}
	if strings.Contains(buf.String(), "a=1") {
		t.Error("PrettySink with nil redactor leaked a cookie value")
	}
	pretty, err := e.MarshalPretty(nil)
	if err != nil || !bytes.HasPrefix(pretty, []byte("{\n  \"timestamp\"")) {
		t.Errorf("MarshalPretty = %q, %v", pretty, err)
	}
}

// A LineSink encodes events straight into its buffer: no allocation per
// event once warm, and the lines still arrive whole and in order.
func TestLineSinkEncodesInPlaceWithoutAllocating(t *testing.T) {
	w := &recordingWriter{}
	s := NewLineSink(w, nil)
	e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	var n int64
	write := func() {
		e.Timestamp = n
		n++
		if err := s.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		write()
	}
	if allocs := testing.AllocsPerRun(200, write); allocs != 0 {
		t.Errorf("%.1f allocations per event, want 0", allocs)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	checkTimestampLines(t, w.all(), int(n))
}

// checkTimestampLines checks that out is n JSON lines whose timestamps are
// 0, 1, ..., n-1 in order.
func checkTimestampLines(t *testing.T, out []byte, n int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("got %d lines, want %d", len(lines), n)
	}
	for i, line := range lines {
		var v struct {
			Timestamp int64 `json:"timestamp"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil || v.Timestamp != int64(i) {
			t.Fatalf("line %d: ts=%d err=%v", i, v.Timestamp, err)
		}
	}
}
