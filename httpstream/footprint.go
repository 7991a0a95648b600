package httpstream

import "unsafe"

// Footprint estimates the heap bytes c keeps: its own structure, header and
// line buffers, buffered out-of-order bytes and queued requests. It is an
// estimate for a memory budget (slice capacities, not allocator classes),
// and costs a walk over the pending queue. It includes the parser the
// connection was handed to (HTTP/2), if any.
func (c *Conn) Footprint() int {
	n := int(unsafe.Sizeof(*c)) + c.ProtocolFootprint()
	for i := range c.dirs {
		s := &c.dirs[i]
		n += s.oooBytes + cap(s.ooo)*int(unsafe.Sizeof(piece{})) + cap(s.line)
		n += s.hdr.footprint()
	}
	n += cap(c.pending)*8 + cap(c.free)*8 + cap(c.respHeaders)*int(unsafe.Sizeof(HeaderField{}))
	for _, r := range c.pending {
		n += r.footprint()
	}
	for _, r := range c.free {
		n += r.footprint()
	}
	return n
}

func (h *headerBlock) footprint() int {
	return cap(h.buf) + cap(h.ovLine) + cap(h.fields)*int(unsafe.Sizeof(fieldSpan{})) + cap(h.folds)*int(unsafe.Sizeof(foldSpan{}))
}

func (r *pendingRequest) footprint() int {
	return int(unsafe.Sizeof(*r)) + cap(r.block) + cap(r.req.Headers)*int(unsafe.Sizeof(HeaderField{}))
}
