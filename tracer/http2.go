package tracer

import (
	"github.com/boxtap/boxtap/httpstream"
	"github.com/boxtap/boxtap/internal/h2stream"
)

// limits are the parser limits of a new connection: one that switches to
// HTTP/2, or that is HTTP/2 joined midway, is handed to internal/h2stream
// unless the options name another parser.
func (t *Tracer) limits() httpstream.Limits {
	l := t.opts.Limits
	if l.NewHTTP2 == nil {
		l.NewHTTP2 = h2stream.NewProtocol
	}
	if l.NewHTTP2Midway == nil {
		l.NewHTTP2Midway = h2stream.NewMidwayProtocol
	}
	return l
}
