package output

import (
	"encoding/json"
	"time"
)

// NoticeEventName is the eventName of the lines boxtap itself writes into a
// container's file to say that something happened to its tracing (a crash
// of the host tracer, say), so that a gap in the events is explained where
// they are read.
const NoticeEventName = "boxtap_notice"

// WriteNotice appends one notice line: {"timestamp":NS,"eventName":
// "boxtap_notice","message":MSG}.
func (s *FileSink) WriteNotice(at time.Time, msg string) error {
	line, err := json.Marshal(struct {
		Timestamp int64  `json:"timestamp"`
		EventName string `json:"eventName"`
		Message   string `json:"message"`
	}{at.UnixNano(), NoticeEventName, msg})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.buf = append(append(s.buf, line...), '\n')
	s.lines++
	return s.flushLocked()
}
