package httpstream

import "bytes"

// state of a direction's framer.
type state uint8

const (
	stResync    state = iota // out of sync: waiting for a start line at a segment start
	stIdle                   // in sync, between messages
	stHeader                 // collecting a start line + header block
	stBody                   // Content-Length body: remaining bytes
	stChunkSize              // reading a chunk-size line
	stChunkData              // chunk data: remaining bytes
	stChunkCRLF              // CRLF after chunk data: need bytes
	stTrailer                // trailer section after the last chunk
	stClose                  // close-delimited body: everything until FIN
	stDead                   // finished, or HTTP ended on the connection
)

const (
	// pieceOverhead is what one buffered out-of-order piece costs besides its bytes.
	pieceOverhead = 64
	// maxChunkLine bounds a chunk-size line including extensions.
	maxChunkLine = 4096
)

// piece is a contiguous span of one direction's sequence space.
type piece struct {
	seq, n   uint32
	data     []byte // captured prefix of the span; the rest is uncaptured
	fin      bool
	segStart bool // data[0] is the first byte of a kernel segment
	// filtered: the whole span is one response the kernel left out (Segment.Filtered)
	filtered bool
	status   int
	bodyLeft uint32 // filtered: bytes of the response after the span
	info     PacketInfo
}

// stream is the reassembly and framing state of one direction.
type stream struct {
	dir      Direction
	started  bool
	finished bool
	atStart  bool // nothing delivered to the framer yet
	lost     bool // bytes were discarded or lost since the last sync
	next     uint32
	ooo      []piece // sorted by seq, all beyond next
	oooBytes int

	role      kind
	st        state
	remaining uint64 // body/chunk bytes left; trailer bytes seen in stTrailer
	need      int    // bytes of CRLF still expected after chunk data
	line      []byte // partial chunk-size line
	lineLen   int    // trailer: bytes of the current line so far
	lastCR    bool   // trailer: the current line so far ends with CR
	hdr       headerBlock
	msgInfo   PacketInfo
}

// pendingRequest is a queued request and the bytes its strings alias.
type pendingRequest struct {
	req Request
	// block is a copy of the request's stored start line + header block; req's
	// URI, Host and header strings are substrings of it (see aliasString). It is
	// rewritten only when the pendingRequest is reused for a later request.
	block []byte
}

// Conn reassembles and frames the two directions of one TCP connection.
// It is not safe for concurrent use.
type Conn struct {
	lim     Limits
	stats   *Stats
	dirs    [2]stream
	pending []*pendingRequest // FIFO of requests awaiting a final response
	free    []*pendingRequest
	// pendingBytes is what the pending requests' copied blocks hold.
	pendingBytes int
	// unanswered counts requests dropped from the head of a full queue whose
	// final responses have not come yet: the next that many final responses
	// answer them and are emitted without a request, never with a later one.
	unanswered  int
	resp        Response
	respHeaders []HeaderField
	ended       bool      // 101 or CONNECT tunnel: HTTP is over on this connection
	proto       Protocol  // set once the connection switched to HTTP/2: it gets every byte
	h2hold      [2][]byte // a direction's first bytes, too few to tell HTTP/2 (protocol.go)
	// h2wait: joined midway, this direction has not yet reached a segment
	// that starts a frame; its bytes are not handed to proto (protocol.go).
	h2wait [2]bool
	// h2expect: 1 + the direction whose first bytes must be the client
	// preface (the connection was taken for HTTP/2 from a server's
	// SETTINGS); 0 when none is expected.
	h2expect Direction
	reset    bool
	closed   bool
}

// NewConn returns the state for one connection. Zero Limits fields mean defaults;
// a nil stats is replaced by a private one.
func NewConn(lim Limits, stats *Stats) *Conn {
	if stats == nil {
		stats = new(Stats)
	}
	c := &Conn{lim: lim.withDefaults(), stats: stats}
	for i := range c.dirs {
		c.dirs[i].dir = Direction(i)
		c.dirs[i].hdr.limit = c.lim.MaxHeaderBytes
	}
	return c
}

// seqLT reports a < b in TCP sequence space (wrap-safe).
func seqLT(a, b uint32) bool { return int32(a-b) < 0 }

// Feed processes one segment. emit is called once per response head completed by it;
// the Response is only valid during the call, and emit must not call back into c.
func (c *Conn) Feed(seg *Segment, emit func(*Response)) {
	if c.closed || c.reset || seg == nil || seg.Dir > Ingress {
		return
	}
	s := &c.dirs[seg.Dir]
	if seg.RST {
		if c.proto != nil { // streams with a response head still give their event
			c.proto.Finish(Egress, emit)
			c.proto.Finish(Ingress, emit)
		}
		c.reset = true
		c.release()
		return
	}
	if c.ended {
		if seg.FIN {
			s.finished = true
		}
		return
	}
	if s.finished {
		c.stats.DuplicateBytes += uint64(len(seg.Data))
		return
	}
	data := seg.Data
	if uint64(len(data)) > 1<<31 {
		data = data[:1<<31]
	}
	n := seg.Len
	if uint64(len(data)) > uint64(n) {
		n = uint32(len(data))
	}
	if seg.Gap && s.started && seqLT(s.next, seg.Seq) {
		c.giveUpBefore(s, seg.Seq, emit)
	}
	if seg.Filtered {
		c.acceptFiltered(s, seg, n, emit)
		return
	}
	c.accept(s, piece{seq: seg.Seq, n: n, data: data, fin: seg.FIN, segStart: true, info: seg.Info}, emit)
	if seg.HasSkip && !seg.FIN {
		end := seg.Seq + n
		if seqLT(end, seg.SkipTo) && !c.ended && !s.finished {
			c.accept(s, piece{seq: end, n: seg.SkipTo - end, info: seg.Info}, emit)
		}
	}
}

// acceptFiltered takes a response the kernel left out as one piece spanning
// it, body included, so that it is paired in stream order.
func (c *Conn) acceptFiltered(s *stream, seg *Segment, n uint32, emit func(*Response)) {
	p := piece{seq: seg.Seq, n: n, fin: seg.FIN, segStart: true, filtered: true, status: seg.FilteredStatus, info: seg.Info}
	if end := seg.Seq + n; seqLT(end, seg.FilteredEnd) {
		p.bodyLeft = seg.FilteredEnd - end
	}
	c.accept(s, p, emit)
	if seg.HasSkip && !seg.FIN && seqLT(seg.Seq+n, seg.SkipTo) && !c.ended && !s.finished {
		c.accept(s, piece{seq: seg.Seq + n, n: seg.SkipTo - seg.Seq - n, info: seg.Info}, emit)
	}
}

// Close releases the buffers; later Feeds are ignored.
func (c *Conn) Close() {
	c.closed = true
	c.release()
}

// Done reports whether both directions finished (FIN delivered in order), the
// connection was reset, or Close was called.
func (c *Conn) Done() bool {
	return c.closed || c.reset || c.dirs[0].finished && c.dirs[1].finished
}

func (c *Conn) release() {
	for i := range c.dirs {
		s := &c.dirs[i]
		s.ooo, s.oooBytes, s.line = nil, 0, nil
		s.hdr = headerBlock{limit: c.lim.MaxHeaderBytes}
		s.st = stDead
		s.finished = true
	}
	c.pending, c.free, c.respHeaders = nil, nil, nil
	c.pendingBytes, c.unanswered = 0, 0
	c.resp = Response{}
	c.proto = nil
}

func (c *Conn) accept(s *stream, p piece, emit func(*Response)) {
	if !s.started {
		s.started, s.next, s.atStart = true, p.seq, true
	}
	if p.n == 0 && !p.fin {
		return
	}
	if !c.trim(s, &p) {
		return
	}
	if p.seq == s.next {
		c.deliver(s, &p, emit)
		c.drain(s, emit)
		return
	}
	c.buffer(s, p, emit)
}

// trim drops the part of p that was already delivered. It returns false when
// nothing of p is left.
func (c *Conn) trim(s *stream, p *piece) bool {
	if !seqLT(p.seq, s.next) {
		return true
	}
	end := p.seq + p.n
	if !seqLT(s.next, end) {
		c.stats.DuplicateBytes += uint64(len(p.data))
		if p.fin && end == s.next {
			c.finish(s)
		}
		return false
	}
	k := s.next - p.seq
	if uint64(k) >= uint64(len(p.data)) {
		c.stats.DuplicateBytes += uint64(len(p.data))
		p.data = nil
	} else {
		c.stats.DuplicateBytes += uint64(k)
		p.data = p.data[k:]
	}
	// What is left of a filtered response that was partly delivered
	// already is only uncaptured bytes.
	p.seq, p.n, p.segStart, p.filtered = s.next, p.n-k, false, false
	return true
}

// deliver hands an in-order piece (p.seq == s.next) to the framer.
func (c *Conn) deliver(s *stream, p *piece, emit func(*Response)) {
	if p.filtered {
		c.passFiltered(s, p)
	} else if len(p.data) > 0 {
		c.consume(s, p.data, &p.info, p.segStart, emit)
	}
	if unc := uint64(p.n) - uint64(len(p.data)); unc > 0 && !p.filtered && !c.ended && !s.finished {
		c.unknown(s, unc)
	}
	s.atStart = false
	s.next = p.seq + p.n
	if p.fin && !c.ended && !s.finished {
		c.finish(s)
		if c.proto != nil {
			c.proto.Finish(s.dir, emit)
		}
	}
}

// drain delivers buffered pieces that became in order.
func (c *Conn) drain(s *stream, emit func(*Response)) {
	for len(s.ooo) > 0 && !s.finished && !c.ended {
		p := s.ooo[0]
		if seqLT(s.next, p.seq) {
			return
		}
		copy(s.ooo, s.ooo[1:])
		s.ooo[len(s.ooo)-1] = piece{}
		s.ooo = s.ooo[:len(s.ooo)-1]
		s.oooBytes -= len(p.data) + pieceOverhead
		if c.trim(s, &p) {
			c.deliver(s, &p, emit)
		}
	}
}

// buffer keeps a piece beyond the expected sequence; when the bound is exceeded the
// oldest hole is given up and delivered as unknown bytes.
func (c *Conn) buffer(s *stream, p piece, emit func(*Response)) {
	end := p.seq + p.n
	for i := range s.ooo {
		q := &s.ooo[i]
		qend := q.seq + q.n
		if !seqLT(p.seq, q.seq) && !seqLT(qend, end) &&
			!seqLT(q.seq+uint32(len(q.data)), p.seq+uint32(len(p.data))) {
			c.stats.DuplicateBytes += uint64(len(p.data))
			if p.fin && end == qend {
				q.fin = true
			}
			return
		}
	}
	if len(p.data) > 0 {
		p.data = append([]byte(nil), p.data...)
	}
	i := len(s.ooo)
	for i > 0 && seqLT(p.seq, s.ooo[i-1].seq) {
		i--
	}
	s.ooo = append(s.ooo, piece{})
	copy(s.ooo[i+1:], s.ooo[i:])
	s.ooo[i] = p
	s.oooBytes += len(p.data) + pieceOverhead
	for s.oooBytes > c.lim.MaxOutOfOrderBytes && len(s.ooo) > 0 && !s.finished && !c.ended {
		first := s.ooo[0].seq
		gap := first - s.next
		c.stats.GapBytes += uint64(gap)
		c.unknown(s, uint64(gap))
		s.next = first
		c.drain(s, emit)
	}
}

// giveUpBefore declares every hole before seq lost for good: buffered pieces
// before seq are delivered, the holes between them as unknown bytes.
func (c *Conn) giveUpBefore(s *stream, seq uint32, emit func(*Response)) {
	for seqLT(s.next, seq) && !s.finished && !c.ended {
		upTo := seq
		if len(s.ooo) > 0 && seqLT(s.ooo[0].seq, seq) {
			upTo = s.ooo[0].seq
		}
		gap := upTo - s.next
		c.stats.GapBytes += uint64(gap)
		c.unknown(s, uint64(gap))
		s.next = upTo
		c.drain(s, emit)
	}
}

func (c *Conn) finish(s *stream) {
	s.finished = true
	s.st = stDead
	s.ooo, s.oooBytes = nil, 0
}

// endHTTP stops parsing both directions (after 101 or a CONNECT tunnel).
func (c *Conn) endHTTP() {
	c.ended = true
	for i := range c.dirs {
		c.dirs[i].st = stDead
		c.dirs[i].ooo, c.dirs[i].oooBytes = nil, 0
	}
}

func (c *Conn) desync(s *stream) {
	c.stats.Desyncs++
	s.st = stResync
	s.lost = true
	s.atStart = false
	s.line = s.line[:0]
}

func (s *stream) beginMessage(info *PacketInfo) {
	s.st = stHeader
	s.hdr.reset(s.hdr.limit)
	s.msgInfo = *info
}

// consume runs the framer over in-order captured bytes.
func (c *Conn) consume(s *stream, data []byte, info *PacketInfo, segStart bool, emit func(*Response)) {
	for ; len(data) > 0 && !c.ended && !s.finished; segStart = false {
		if c.proto == nil && c.lim.NewHTTP2 != nil && (len(c.h2hold[s.dir]) > 0 || s.st == stResync && s.atStart && !s.lost) {
			if data = c.h2Detect(s, data); len(data) == 0 {
				return
			}
		}
		if c.proto != nil {
			if c.h2expect != 0 {
				c.h2Rejoin(s, data, segStart)
			}
			if c.h2wait[s.dir] && !c.h2Synced(s, data, segStart) {
				return
			}
			c.proto.Consume(s.dir, data, *info, emit)
			return
		}
		switch s.st {
		case stResync:
			if s.atStart && !s.lost && (data[0] == '\r' || data[0] == '\n') {
				// Empty lines before the first start line, which servers
				// accept: skip them as between messages.
				s.st = stIdle
				continue
			}
			ok := false
			if s.atStart && !s.lost {
				ok = startLinePrefixAt(data, s.role)
			} else if segStart {
				ok = startLineAt(data, s.role)
			}
			if !ok {
				s.lost = true
				return
			}
			c.resynced(s, data[0] == 'H')
			s.beginMessage(info)
		case stIdle:
			i := 0
			for i < len(data) && (data[i] == '\r' || data[i] == '\n') {
				i++
			}
			if data = data[i:]; len(data) > 0 {
				s.beginMessage(info)
			}
		case stHeader:
			n, done, ok := s.hdr.write(data, s.role)
			data = data[n:]
			if !ok {
				c.desync(s)
			} else if done {
				c.endHeader(s, emit)
			}
		case stBody, stChunkData:
			k := uint64(len(data))
			if k > s.remaining {
				k = s.remaining
			}
			s.remaining -= k
			data = data[k:]
			c.bodyProgress(s)
		case stChunkCRLF:
			switch {
			case s.need == 2 && data[0] == '\r':
				s.need = 1
			case data[0] == '\n':
				s.st = stChunkSize
			default:
				c.desync(s)
				continue
			}
			data = data[1:]
		case stChunkSize:
			j := bytes.IndexByte(data, '\n')
			if j < 0 {
				if len(s.line)+len(data) > maxChunkLine {
					c.desync(s)
					continue
				}
				s.line = append(s.line, data...)
				return
			}
			if len(s.line)+j > maxChunkLine {
				c.desync(s)
				continue
			}
			s.line = append(s.line, data[:j]...)
			data = data[j+1:]
			size, ok := parseChunkSize(s.line)
			s.line = s.line[:0]
			switch {
			case !ok:
				c.desync(s)
			case size == 0:
				s.st, s.remaining, s.lineLen, s.lastCR = stTrailer, 0, 0, false
			default:
				s.st, s.remaining = stChunkData, size
			}
		case stTrailer:
			j := bytes.IndexByte(data, '\n')
			if j < 0 {
				s.lineLen += len(data)
				s.lastCR = data[len(data)-1] == '\r'
				s.remaining += uint64(len(data))
				if s.remaining > uint64(s.hdr.hardCap()) {
					c.desync(s)
				}
				return
			}
			n := s.lineLen + j
			lastCR := s.lastCR
			if j > 0 {
				lastCR = data[j-1] == '\r'
			}
			s.remaining += uint64(j + 1)
			data = data[j+1:]
			s.lineLen, s.lastCR = 0, false
			if n == 0 || n == 1 && lastCR {
				s.st = stIdle
			} else if s.remaining > uint64(s.hdr.hardCap()) {
				c.desync(s)
			}
		default: // stClose, stDead
			return
		}
		s.atStart = false
	}
}

// bodyProgress moves on when a body or chunk is complete.
func (c *Conn) bodyProgress(s *stream) {
	if s.remaining != 0 {
		return
	}
	if s.st == stBody {
		s.st = stIdle
	} else {
		s.st, s.need = stChunkCRLF, 2
	}
}

// unknown handles n uncaptured (or lost) bytes delivered in order.
func (c *Conn) unknown(s *stream, n uint64) {
	c.h2hold[s.dir] = nil
	if c.proto != nil {
		if !c.h2wait[s.dir] {
			c.proto.Unknown(s.dir, n)
		}
		return
	}
	for n > 0 && !c.ended && !s.finished {
		switch s.st {
		case stResync:
			s.lost = true
			return
		case stBody, stChunkData:
			k := n
			if k > s.remaining {
				k = s.remaining
			}
			s.remaining -= k
			n -= k
			c.bodyProgress(s)
		case stChunkCRLF:
			// The CRLF's content is fixed; assume the uncaptured bytes were it.
			k := uint64(s.need)
			if k > n {
				k = n
			}
			s.need -= int(k)
			n -= k
			if s.need == 0 {
				s.st = stChunkSize
			}
		case stClose, stDead:
			return
		default: // the framer needed to read these bytes
			c.desync(s)
			return
		}
	}
}

// passFiltered pairs a response the kernel left out, in order, with the
// request it answers, as endResponse would, and passes its bytes. The kernel
// only leaves out final responses it found at a message boundary; when the
// framing here disagrees (bytes of another message pending, a request
// stream), the bytes are uncaptured ones and the direction resynchronises.
func (c *Conn) passFiltered(s *stream, p *piece) {
	if s.role == kindRequest || (s.st != stIdle && s.st != stResync) {
		c.unknown(s, uint64(p.n))
		return
	}
	if s.st == stResync {
		c.resynced(s, true)
	}
	s.role, s.st, s.atStart = kindResponse, stIdle, false
	c.stats.Filtered++
	var req *Request
	switch {
	case c.unanswered > 0:
		c.unanswered--
	case len(c.pending) > 0:
		pr := c.shiftPending()
		req = &pr.req
		defer c.recycle(pr)
	}
	switch {
	case req != nil && req.Method == "CONNECT" && p.status/100 == 2:
		c.endHTTP()
	case req != nil && req.Method == "HEAD":
		// The kernel counted a body that an answer to HEAD does not
		// have: resynchronise at the next response that starts a
		// segment (where the kernel, too, gives up its count).
		c.desync(s)
	case p.bodyLeft > 0:
		s.st, s.remaining = stBody, uint64(p.bodyLeft)
	}
}

// resynced is called when a direction (re)starts framing at a start line.
// After lost responses, queued requests can no longer be matched one by one; the
// next response most likely answers the newest request, so older ones are dropped.
func (c *Conn) resynced(s *stream, response bool) {
	if s.lost && response {
		// How many lost responses answered dropped requests is unknown too.
		c.unanswered = 0
		if drop := len(c.pending) - 1; drop > 0 {
			for range drop {
				c.popPending()
			}
			c.stats.DroppedRequests += uint64(drop)
		}
	}
	s.lost = false
}

func (c *Conn) endHeader(s *stream, emit func(*Response)) {
	h := &s.hdr
	if s.role == kindNone {
		s.role = h.kind
	}
	if h.overflow {
		c.stats.Truncated++
	}
	if h.kind == kindRequest {
		c.endRequest(s)
	} else {
		c.endResponse(s, emit)
	}
}

func (c *Conn) endRequest(s *stream) {
	h := &s.hdr
	pr := c.newRequest()
	// The stream's buffer is rewritten by the next request while this one waits
	// for its response: the request keeps its own copy.
	pr.block = append(pr.block[:0], h.buf[:h.storedEnd]...)
	str := aliasString(pr.block)
	req := &pr.req
	req.Method, req.Proto, req.URI = h.method, h.proto, str[h.uriStart:h.uriEnd]
	req.Headers = h.build(pr.block, str, req.Headers[:0])
	for _, f := range req.Headers {
		if f.Name == "Host" {
			req.Host = f.Value
			break
		}
	}
	switch {
	case h.teSeen || h.clBad:
		req.ContentLength = -1
	case h.clSeen:
		req.ContentLength = h.cl
	}
	req.Truncated, req.Info = h.overflow, s.msgInfo
	c.push(pr)
	c.stats.Requests++
	switch {
	case h.teSeen && h.teChunked:
		s.st = stChunkSize
	case h.teSeen || h.clBad: // a request body that cannot be framed
		c.desync(s)
	case h.clSeen && h.cl > 0:
		s.st, s.remaining = stBody, uint64(h.cl)
	case h.method == "CONNECT":
		// Tunnel bytes may follow at once; only a new request at a segment start
		// (after a refused CONNECT) is framed again.
		s.st = stResync
	default:
		s.st = stIdle
	}
}

func (c *Conn) endResponse(s *stream, emit func(*Response)) {
	h := &s.hdr
	var pr *pendingRequest
	var req *Request
	// A response to a request dropped from the queue has no request: the
	// queue's head is a later request, which its own response will answer.
	if len(c.pending) > 0 && c.unanswered == 0 {
		pr = c.pending[0]
		req = &pr.req
	}
	code := h.code
	final := code >= 200 || code == 101
	c.stats.Responses++
	if emit != nil {
		c.emitResponse(s, req, emit)
	}
	switch {
	case final && c.unanswered > 0:
		c.unanswered--
	case final && pr != nil:
		c.shiftPending()
	}
	switch {
	case code == 101 && req != nil && isH2cUpgrade(h.build(h.buf[:h.storedEnd], aliasString(h.buf[:h.storedEnd]), nil)) &&
		c.switchToH2(Upgrade{Client: s.dir ^ 1, Request: req}):
		s.st = stIdle // the framer sees no more bytes: c.proto takes them
	case code == 101 || req != nil && req.Method == "CONNECT" && code/100 == 2:
		c.endHTTP()
	case code < 200 || code == 204 || code == 304 || req != nil && req.Method == "HEAD":
		s.st = stIdle
	case h.teSeen && h.teChunked:
		s.st = stChunkSize
	case h.teSeen:
		s.st = stClose
	case h.clBad:
		c.desync(s)
	case h.clSeen && h.cl > 0:
		s.st, s.remaining = stBody, uint64(h.cl)
	case h.clSeen:
		s.st = stIdle
	default:
		s.st = stClose
	}
	if final && pr != nil {
		c.recycle(pr)
	}
}

func (c *Conn) emitResponse(s *stream, req *Request, emit func(*Response)) {
	h := &s.hdr
	// The strings alias the stream's header buffer, which is only rewritten when
	// the next message of this direction begins, after emit has returned.
	b := h.buf[:h.storedEnd]
	str := aliasString(b)
	c.respHeaders = h.build(b, str, c.respHeaders[:0])
	r := &c.resp
	*r = Response{
		Dir:           s.dir,
		Proto:         h.proto,
		StatusCode:    h.code,
		Status:        h.status(b, str),
		Headers:       c.respHeaders,
		ContentLength: h.contentLength(),
		HeaderBytes:   h.total,
		Truncated:     h.overflow,
		Info:          s.msgInfo,
		Request:       req,
	}
	if req != nil {
		r.LatencyNs = int64(r.Info.TimestampNs - req.Info.TimestampNs)
	}
	emit(r)
	// Not cleared: the Response and its strings stay reachable until the next event
	// or Close, which keeps the hot path free of write barriers.
}

func (c *Conn) newRequest() *pendingRequest {
	if n := len(c.free); n > 0 {
		r := c.free[n-1]
		c.free = c.free[:n-1]
		return r
	}
	return new(pendingRequest)
}

func (c *Conn) recycle(r *pendingRequest) {
	r.req = Request{Headers: r.req.Headers[:0]}
	if len(c.free) < 4 {
		c.free = append(c.free, r)
	}
}

// push queues a request. When the queue is full, in count or in bytes, the
// oldest requests are dropped; their responses, still to come, are then
// emitted without a request (see unanswered).
func (c *Conn) push(r *pendingRequest) {
	for len(c.pending) > 0 && (len(c.pending) >= c.lim.MaxPendingRequests ||
		c.pendingBytes+cap(r.block) > c.lim.MaxPendingBytes) {
		c.popPending()
		c.unanswered++
		c.stats.DroppedRequests++
	}
	if cap(r.block) > c.lim.MaxPendingBytes {
		// Alone it is over the cap: keep none of it.
		c.recycle(r)
		c.unanswered++
		c.stats.DroppedRequests++
		return
	}
	c.pending = append(c.pending, r)
	c.pendingBytes += cap(r.block)
}

// popPending drops the oldest queued request.
func (c *Conn) popPending() {
	c.recycle(c.shiftPending())
}

// shiftPending removes the oldest queued request and returns it. The queue
// keeps its array (no allocation in the steady state).
func (c *Conn) shiftPending() *pendingRequest {
	r := c.pending[0]
	copy(c.pending, c.pending[1:])
	c.pending[len(c.pending)-1] = nil
	c.pending = c.pending[:len(c.pending)-1]
	c.pendingBytes -= cap(r.block)
	return r
}

// parseChunkSize parses "hex[;ext]" with an optional trailing CR.
func parseChunkSize(l []byte) (uint64, bool) {
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	var size uint64
	i := 0
	for ; i < len(l); i++ {
		c := l[i]
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			goto rest
		}
		if size>>56 != 0 {
			return 0, false
		}
		size = size<<4 | uint64(v)
	}
rest:
	if i == 0 {
		return 0, false
	}
	for ; i < len(l) && (l[i] == ' ' || l[i] == '\t'); i++ {
	}
	if i < len(l) && l[i] != ';' {
		return 0, false
	}
	return size, true
}
