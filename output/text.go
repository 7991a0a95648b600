package output

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"
)

// Column widths of the text view (the widths TextHeader's titles take).
const (
	textTimeW      = 12 // 15:04:05.000
	textContainerW = 12
	textDirW       = 7
	textAddrW      = 21 // 255.255.255.255:65535
	textRequestW   = 36
	textProtoW     = 8
	textStatusW    = 6
	textLatencyW   = 8
	textSizeW      = 8
)

// ANSI colours of status classes (SGR codes).
const (
	colorReset = "\x1b[0m"
	colorGreen = "\x1b[32m"
	colorCyan  = "\x1b[36m"
	colorYel   = "\x1b[33m"
	colorRed   = "\x1b[31m"
)

// TextOptions shape the text view.
type TextOptions struct {
	// Color colours the status by class. Set it only when the writer is a
	// terminal and NO_COLOR is unset.
	Color bool
	// Local prints times in the local time zone; by default UTC.
	Local bool
}

// TextSink writes one aligned line per exchange under a header line, for
// people. Lines are flushed by the tracer's periodic Flush, like JSON
// lines.
type TextSink struct {
	bufferedSink
	r      *Redactor
	opts   TextOptions
	header bool
}

// NewTextSink returns a text sink writing to w, redacting paths with r (nil:
// default rules).
func NewTextSink(w io.Writer, r *Redactor, opts TextOptions) *TextSink {
	return &TextSink{
		bufferedSink: bufferedSink{w: bufio.NewWriterSize(w, lineBufferSize), what: "text lines"},
		r:            r,
		opts:         opts,
	}
}

// Write formats e as one line (after the header line, the first time).
func (s *TextSink) Write(e *Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if !s.header {
		s.header = true
		if _, err := s.w.Write(append(AppendTextHeader(s.w.AvailableBuffer()), '\n')); err != nil {
			return fmt.Errorf("output: write text header: %w", err)
		}
	}
	if s.w.Available() < lineRoom && s.w.Buffered() > 0 {
		if err := s.w.Flush(); err != nil {
			return fmt.Errorf("output: flush text lines: %w", err)
		}
	}
	line := append(e.AppendText(s.w.AvailableBuffer(), s.r, s.opts), '\n')
	if _, err := s.w.Write(line); err != nil {
		return fmt.Errorf("output: write text line: %w", err)
	}
	return nil
}

// AppendText appends the event as one line of the text view (no newline):
// time, container, direction, client → server, method and path (redacted
// with r, escaped as in JSON so that no control byte reaches a terminal),
// protocol, status, latency, response size, process, then notes for
// truncated header blocks, responses whose request was not seen (partial)
// and containers that lost capture records. Unknown values are "-". With a
// reused dst of sufficient capacity it does not allocate.
func (e *Event) AppendText(dst []byte, r *Redactor, opts TextOptions) []byte {
	start := len(dst)
	t := time.Unix(0, e.Timestamp)
	if !opts.Local {
		t = t.UTC()
	}
	dst = t.AppendFormat(dst, "15:04:05.000")
	dst = pad(dst, start, textTimeW+2)

	col := len(dst)
	dst = appendEscapedOr(dst, e.Container.Name, e.Container.ID)
	dst = pad(dst, col, textContainerW+2)

	col = len(dst)
	switch e.Direction {
	case DirectionEgress, DirectionIngress:
		dst = append(dst, e.Direction.String()...)
	default:
		dst = append(dst, '-')
	}
	dst = pad(dst, col, textDirW+2)

	// The response travels from the server to the client, whichever side
	// the container is on.
	col = len(dst)
	dst = appendAddrPort(dst, e.Meta.DstIP, e.Meta.DstPort)
	dst = pad(dst, col, textAddrW+1)
	dst = append(dst, "→ "...)
	col = len(dst)
	dst = appendAddrPort(dst, e.Meta.SrcIP, e.Meta.SrcPort)
	dst = pad(dst, col, textAddrW+2)

	col = len(dst)
	if rq := e.Request; rq != nil {
		dst = appendEscapedOr(dst, rq.Method, "-")
		dst = append(dst, ' ')
		dst = r.appendURI(dst, rq.URIPath)
	} else {
		dst = append(dst, '-')
	}
	dst = pad(dst, col, textRequestW+2)

	col = len(dst)
	dst = appendEscapedOr(dst, e.Response.Protocol, "-")
	dst = pad(dst, col, textProtoW+2)

	col = len(dst)
	dst, esc := appendStatus(dst, e.Response.StatusCode, opts.Color)
	dst = pad(dst, col+esc, textStatusW+2)

	col = len(dst)
	if e.LatencyKnown {
		dst = appendLatency(dst, e.Latency)
	} else {
		dst = append(dst, '-')
	}
	dst = padLeft(dst, col, textLatencyW)
	dst = append(dst, ' ', ' ')

	col = len(dst)
	if n := e.Response.ContentLength; n >= 0 {
		dst = strconv.AppendInt(dst, n, 10)
	} else {
		dst = append(dst, '-')
	}
	dst = padLeft(dst, col, textSizeW)
	dst = append(dst, ' ', ' ')

	dst = appendEscapedOr(dst, e.ProcessName, "-")
	return e.appendNotes(dst)
}

// AppendTextHeader appends the header line of the text view (no newline),
// its titles placed as AppendText places the values.
func AppendTextHeader(dst []byte) []byte {
	col := len(dst)
	for _, c := range []struct {
		title string
		width int
		right bool
	}{
		{"TIME", textTimeW + 2, false}, {"CONTAINER", textContainerW + 2, false}, {"DIR", textDirW + 2, false},
		{"CLIENT", textAddrW + 1, false}, {"→ SERVER", len("→ ") + textAddrW + 2, false},
		{"REQUEST", textRequestW + 2, false}, {"PROTO", textProtoW + 2, false}, {"STATUS", textStatusW + 2, false},
		{"LATENCY", textLatencyW, true}, {"", 2, false}, {"SIZE", textSizeW, true}, {"", 2, false},
	} {
		dst = append(dst, c.title...)
		if c.right {
			dst = padLeft(dst, col, c.width)
		} else {
			dst = pad(dst, col, c.width)
		}
		col = len(dst)
	}
	return append(dst, "PROCESS"...)
}

// appendNotes says on the line what makes the event incomplete.
func (e *Event) appendNotes(dst []byte) []byte {
	if e.Truncated {
		dst = append(dst, "  [truncated headers]"...)
	}
	if e.Request == nil {
		dst = append(dst, "  [partial: request not seen]"...)
	}
	if e.LostRecords > 0 {
		dst = append(dst, "  [lost "...)
		dst = strconv.AppendUint(dst, e.LostRecords, 10)
		dst = append(dst, " records so far]"...)
	}
	return dst
}

// appendEscapedOr writes s escaped as a JSON string body, or alt when s is
// empty.
func appendEscapedOr(dst []byte, s, alt string) []byte {
	if s == "" {
		s = alt
	}
	return appendEscaped(dst, s)
}

// appendAddrPort writes addr:port ([v6]:port), "-" for no address.
func appendAddrPort(dst []byte, a netip.Addr, port uint16) []byte {
	if !a.IsValid() {
		return append(dst, '-')
	}
	return netip.AddrPortFrom(a.Unmap(), port).AppendTo(dst)
}

// appendStatus writes the status code, coloured by class when color is set;
// esc is how many bytes of colour codes it wrote.
func appendStatus(dst []byte, code int, color bool) (_ []byte, esc int) {
	c := ""
	if color {
		switch code / 100 {
		case 2:
			c = colorGreen
		case 3:
			c = colorCyan
		case 4:
			c = colorYel
		case 5:
			c = colorRed
		}
	}
	dst = append(dst, c...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	if c != "" {
		dst = append(dst, colorReset...)
		esc = len(c) + len(colorReset)
	}
	return dst, esc
}

// appendLatency writes a duration with three significant digits and a unit
// (µs, ms or s), e.g. 490µs, 12.3ms, 1.20s.
func appendLatency(dst []byte, d time.Duration) []byte {
	var v float64
	var unit string
	switch {
	case d < time.Millisecond:
		v, unit = float64(d)/float64(time.Microsecond), "µs"
	case d < time.Second:
		v, unit = float64(d)/float64(time.Millisecond), "ms"
	default:
		v, unit = float64(d)/float64(time.Second), "s"
	}
	prec := 0
	switch {
	case v < 10:
		prec = 2
	case v < 100:
		prec = 1
	}
	dst = strconv.AppendFloat(dst, v, 'f', prec, 64)
	return append(dst, unit...)
}

// pad appends spaces until the column that began at start is width bytes
// wide, or one space when it is already wider (columns never touch).
func pad(dst []byte, start, width int) []byte {
	n := width - (len(dst) - start)
	if n < 1 {
		n = 1
		if len(dst) > start && dst[len(dst)-1] == ' ' {
			n = 0
		}
	}
	for ; n > 0; n-- {
		dst = append(dst, ' ')
	}
	return dst
}

// padLeft right-aligns the column that began at start in width bytes
// (counting "µ" as one column).
func padLeft(dst []byte, start, width int) []byte {
	visible := 0
	for _, c := range dst[start:] {
		if c&0xC0 != 0x80 { // count runes, not continuation bytes
			visible++
		}
	}
	n := width - visible
	if n <= 0 {
		return dst
	}
	dst = append(dst, make([]byte, n)...)
	copy(dst[start+n:], dst[start:len(dst)-n])
	for i := start; i < start+n; i++ {
		dst[i] = ' '
	}
	return dst
}

var _ Sink = (*TextSink)(nil)
