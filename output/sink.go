package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Sink receives encoded events. Implementations are safe for concurrent use
// (a writer goroutine and a periodic Flush may overlap). Write must not keep
// the *Event after it returns: the caller may reuse it.
type Sink interface {
	// Write encodes one event.
	Write(*Event) error
	// Flush pushes buffered events to the underlying writer.
	Flush() error
	// Close flushes and releases the sink; it does not close the writer it
	// was given (the caller owns that). Write after Close fails.
	Close() error
}

// Discarder is a Sink that may write nothing at all (--output none, where
// only metrics or spans are fed). When Discards reports true, the events it
// is given may lack what only a written line shows: the process fields and
// the pre-encoded Identity. The exchange, the container and the counters
// are always filled.
type Discarder interface {
	Discards() bool
}

// Discards reports whether s writes nothing (see Discarder).
func Discards(s Sink) bool {
	d, ok := s.(Discarder)
	return ok && d.Discards()
}

// ErrClosed is returned by Write and Flush after Close.
var ErrClosed = errors.New("output: sink is closed")

// lineBufferSize is the buffer of a LineSink.
const lineBufferSize = 64 << 10

// lineRoom is the free space a LineSink wants before it encodes an event
// in place: more than a typical event (about 2 KB).
const lineRoom = 8 << 10

// bufferedSink is what LineSink and PrettySink share: a buffered writer
// behind a mutex, refusing writes once closed.
type bufferedSink struct {
	mu     sync.Mutex
	w      *bufio.Writer
	closed bool
	what   string // "JSON lines" or "pretty events", for errors
}

// Flush writes buffered events to the underlying writer.
func (s *bufferedSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("output: flush %s: %w", s.what, err)
	}
	return nil
}

// Close flushes buffered events. Closing twice is a no-op.
func (s *bufferedSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("output: flush %s on close: %w", s.what, err)
	}
	return nil
}

// LineSink writes JSON Lines: one compact event per line. Lines are buffered
// (64 KiB) and the underlying writer only ever receives whole lines.
type LineSink struct {
	bufferedSink
	r *Redactor
}

// NewLineSink returns a JSON Lines sink writing to w, redacting with r (nil:
// default rules).
func NewLineSink(w io.Writer, r *Redactor) *LineSink {
	return &LineSink{
		bufferedSink: bufferedSink{w: bufio.NewWriterSize(w, lineBufferSize), what: "JSON lines"},
		r:            r,
	}
}

// Write encodes e as one line.
func (s *LineSink) Write(e *Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	// Encode straight into the buffer's free space when a typical event
	// fits, so the line is not copied once more; flush first when it is
	// nearly full, so that the buffer never splits a line.
	if s.w.Available() < lineRoom && s.w.Buffered() > 0 {
		if err := s.w.Flush(); err != nil {
			return fmt.Errorf("output: flush JSON lines: %w", err)
		}
	}
	free := s.w.AvailableBuffer()
	line := append(e.AppendJSONWith(free, s.r), '\n')
	if cap(line) != cap(free) {
		// Longer than the free space (an event of more than lineRoom
		// bytes: huge header blocks): append moved it to a new array.
		// Flush, then write it in one call.
		if s.w.Buffered() > 0 {
			if err := s.w.Flush(); err != nil {
				return fmt.Errorf("output: flush JSON lines: %w", err)
			}
		}
	}
	if _, err := s.w.Write(line); err != nil {
		return fmt.Errorf("output: write JSON line: %w", err)
	}
	return nil
}

// PrettySink writes indented JSON objects separated by blank lines, for
// humans (demos, terminals). Each event is flushed as it is written.
type PrettySink struct {
	bufferedSink
	r       *Redactor
	scratch []byte
	indent  bytes.Buffer
	n       int
}

// NewPrettySink returns a sink writing indented JSON to w, redacting with r
// (nil: default rules).
func NewPrettySink(w io.Writer, r *Redactor) *PrettySink {
	return &PrettySink{bufferedSink: bufferedSink{w: bufio.NewWriter(w), what: "pretty events"}, r: r}
}

// Write encodes e as an indented object and flushes it.
func (s *PrettySink) Write(e *Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.scratch = e.AppendJSONWith(s.scratch[:0], s.r)
	s.indent.Reset()
	if err := json.Indent(&s.indent, s.scratch, "", "  "); err != nil {
		return fmt.Errorf("output: indent event JSON (encoder bug, please report): %w", err)
	}
	if s.n > 0 {
		s.w.WriteByte('\n')
	}
	s.n++
	s.indent.WriteByte('\n')
	if _, err := s.w.Write(s.indent.Bytes()); err != nil {
		return fmt.Errorf("output: write pretty event: %w", err)
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("output: write pretty event: %w", err)
	}
	return nil
}

var (
	_ Sink = (*LineSink)(nil)
	_ Sink = (*PrettySink)(nil)
)
