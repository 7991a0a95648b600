package output

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// textEvent is an egress exchange with a request, as the tracer fills it.
func textEvent() *Event {
	e := benchEvent()
	e.Timestamp = time.Date(2026, 11, 30, 5, 6, 7, 891_000_000, time.UTC).UnixNano()
	e.Container.Name = "web"
	e.Meta.SrcIP, e.Meta.SrcPort = netip.MustParseAddr("172.17.0.2"), 8080
	e.Meta.DstIP, e.Meta.DstPort = netip.MustParseAddr("::ffff:10.0.0.9"), 46856
	e.Request.Method, e.Request.URIPath = "GET", "/search?q=secret&page=2"
	e.Response.StatusCode, e.Response.Protocol, e.Response.ContentLength = 503, "HTTP/1.1", 180
	e.Latency, e.LatencyKnown = 12345*time.Microsecond, true
	e.Direction = DirectionEgress
	e.ProcessName = "nginx"
	e.Truncated, e.LostRecords = false, 0
	return e
}

func TestTextLineHasEveryColumnInOrder(t *testing.T) {
	line := string(textEvent().AppendText(nil, nil, TextOptions{}))
	want := []string{"05:06:07.891", "web", "egress", "10.0.0.9:46856", "→", "172.17.0.2:8080",
		"GET", "/search?q=<redacted>&page=<redacted>", "HTTP/1.1", "503", "12.3ms", "180", "nginx"}
	if got := strings.Fields(line); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("fields\n got %q\nwant %q\nline %q", got, want, line)
	}
}

func TestTextHeaderTitlesStartWhereTheirValuesStart(t *testing.T) {
	header := string(AppendTextHeader(nil))
	e := textEvent()
	e.Request.URIPath = "/search?q=1" // a request longer than its column pushes the rest right
	line := string(e.AppendText(nil, nil, TextOptions{}))
	// Left-aligned columns start at the same rune offset as their title;
	// right-aligned ones (latency, size) end where their title ends.
	for _, c := range []struct{ title, value string }{
		{"CONTAINER", "web"}, {"DIR", "egress"}, {"CLIENT", "10.0.0.9"}, {"→ SERVER", "→ 172.17.0.2"},
		{"REQUEST", "GET /search"}, {"PROTO", "HTTP/1.1"}, {"STATUS", "503"}, {"PROCESS", "nginx"},
	} {
		if h, v := runeIndex(header, c.title), runeIndex(line, c.value); h != v || h < 0 {
			t.Errorf("%s starts at %d, its value %q at %d\n%s\n%s", c.title, h, c.value, v, header, line)
		}
	}
	for _, c := range []struct{ title, value string }{{"LATENCY", "12.3ms"}, {"SIZE", " 180"}} {
		h := runeIndex(header, c.title) + len(c.title)
		v := runeIndex(line, c.value) + len([]rune(c.value))
		if h != v {
			t.Errorf("%s ends at %d, its value %q at %d\n%s\n%s", c.title, h, c.value, v, header, line)
		}
	}
}

func runeIndex(s, sub string) int {
	i := strings.Index(s, sub)
	if i < 0 {
		return -1
	}
	return len([]rune(s[:i]))
}

func TestTextColoursOnlyTheStatusAndOnlyWhenAsked(t *testing.T) {
	e := textEvent()
	plain := e.AppendText(nil, nil, TextOptions{})
	if bytes.IndexByte(plain, 0x1b) >= 0 {
		t.Errorf("escape code without Color: %q", plain)
	}
	for code, color := range map[int]string{200: colorGreen, 301: colorCyan, 404: colorYel, 503: colorRed} {
		e.Response.StatusCode = code
		line := string(e.AppendText(nil, nil, TextOptions{Color: true}))
		if strings.Count(line, "\x1b[") != 2 || !strings.Contains(line, color) || !strings.Contains(line, colorReset) {
			t.Errorf("status %d: want exactly %q...%q around the status: %q", code, color, colorReset, line)
		}
		if stripped := strings.NewReplacer(color, "", colorReset, "").Replace(line); stripped != string(e.AppendText(nil, nil, TextOptions{})) {
			t.Errorf("status %d: colour changed the layout:\n%q\n%q", code, stripped, e.AppendText(nil, nil, TextOptions{}))
		}
	}
	e.Response.StatusCode = 101
	if line := e.AppendText(nil, nil, TextOptions{Color: true}); bytes.IndexByte(line, 0x1b) >= 0 {
		t.Errorf("1xx must stay uncoloured: %q", line)
	}
}

func TestTextMarksIncompleteEvents(t *testing.T) {
	e := textEvent()
	e.Truncated, e.LostRecords = true, 7
	e.Request, e.LatencyKnown = nil, false
	line := string(e.AppendText(nil, nil, TextOptions{}))
	for _, want := range []string{"[truncated headers]", "[partial: request not seen]", "[lost 7 records so far]"} {
		if !strings.Contains(line, want) {
			t.Errorf("line lacks %q: %q", want, line)
		}
	}
	if f := strings.Fields(line); f[6] != "-" || f[9] != "-" {
		t.Errorf("unknown request and latency must read '-': %q", f)
	}
	if line := string(textEvent().AppendText(nil, nil, TextOptions{})); strings.Contains(line, "[") {
		t.Errorf("a complete event has no notes: %q", line)
	}
}

func TestTextEscapesControlBytes(t *testing.T) {
	e := textEvent()
	e.Container.Name = "evil\x1b[2J"
	e.ProcessName = "a\nb"
	e.Request.URIPath = "/x\x1b]0;title\x07"
	line := e.AppendText(nil, NewRedactor(nil, true), TextOptions{})
	for _, c := range line {
		if c < 0x20 {
			t.Fatalf("control byte %#x reached the line: %q", c, line)
		}
	}
}

func TestTextSinkWritesTheHeaderOnce(t *testing.T) {
	var buf bytes.Buffer
	s := NewTextSink(&buf, nil, TextOptions{})
	for range 3 {
		if err := s.Write(textEvent()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 4 || lines[0] != string(AppendTextHeader(nil)) {
		t.Fatalf("want the header then 3 lines, got %q", lines)
	}
}

func TestAppendTextNoAllocs(t *testing.T) {
	e := textEvent()
	r := NewRedactor(nil, false)
	buf := make([]byte, 0, 1024)
	if allocs := testing.AllocsPerRun(200, func() { buf = e.AppendText(buf[:0], r, TextOptions{Color: true}) }); allocs != 0 {
		t.Errorf("AppendText allocates %.1f times per event with a reused buffer, want 0", allocs)
	}
}

func TestTextSinkWriteNoAllocs(t *testing.T) {
	s := NewTextSink(discard{}, nil, TextOptions{})
	e := textEvent()
	if allocs := testing.AllocsPerRun(200, func() { _ = s.Write(e) }); allocs != 0 {
		t.Errorf("TextSink.Write allocates %.1f times per event, want 0", allocs)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkAppendText(b *testing.B) {
	e := textEvent()
	r := NewRedactor(nil, false)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendText(buf[:0], r, TextOptions{})
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func FuzzAppendText(f *testing.F) {
	f.Add("web", "nginx", "GET", "/a?b=c", 200, int64(12))
	f.Add("\x1b", "\xff", "", "", 0, int64(-1))
	f.Fuzz(func(t *testing.T, name, proc, method, uri string, code int, latency int64) {
		e := textEvent()
		e.Container.Name, e.ProcessName, e.Request.Method, e.Request.URIPath = name, proc, method, uri
		e.Response.StatusCode, e.Latency = code, time.Duration(latency)
		line := e.AppendText(nil, nil, TextOptions{})
		if bytes.IndexByte(line, '\n') >= 0 || bytes.IndexByte(line, 0x1b) >= 0 {
			t.Fatalf("newline or escape in a line: %q", line)
		}
	})
}
