package h2stream

import (
	"bytes"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/boxtap/boxtap/httpstream"
)

// Bounds on what one connection may make the parser hold. A peer that goes
// beyond them loses its direction (Stats.Desyncs), never memory.
const (
	frameHeaderLen = 9
	// defaultMaxFrame is SETTINGS_MAX_FRAME_SIZE's initial value (RFC 9113 6.5.2).
	defaultMaxFrame = 16384
	// maxBufferedFrame caps the payload of a non-DATA frame that is buffered
	// whole, whatever SETTINGS_MAX_FRAME_SIZE says. DATA payloads are never
	// buffered: only their length is counted.
	maxBufferedFrame = 1 << 20
	// maxTableSize caps the HPACK dynamic table a SETTINGS_HEADER_TABLE_SIZE
	// may allow; an encoder using more makes its direction undecodable.
	maxTableSize = 1 << 16
	// maxStringLen caps one decoded header name or value.
	maxStringLen = 1 << 16
	// maxBlockBytes caps the decoded header fields kept for one header block;
	// fields beyond it are decoded (to keep the HPACK state) but dropped, and
	// the event is marked Truncated.
	maxBlockBytes = 64 << 10
	// maxStreams caps the streams tracked at once (SETTINGS_MAX_CONCURRENT_STREAMS
	// is usually 100 to 250); requests beyond it are not tracked
	// (Stats.DroppedRequests).
	maxStreams = 1024
	// maxTrackedBytes caps the strings all tracked streams hold; a request
	// beyond it is not tracked either (Stats.DroppedRequests).
	maxTrackedBytes = 1 << 20
	// streamOverhead is what a tracked stream costs besides its strings.
	streamOverhead = 256
)

// Parser decodes the HTTP/2 frames of one connection into one
// httpstream.Response per response stream. It implements httpstream.Protocol.
type Parser struct {
	stats   *httpstream.Stats
	client  httpstream.Direction
	dirs    [2]direction
	streams map[uint32]*stream
	size    int // bytes held by tracked streams
	opened  int // streams ever tracked
	// free holds dropped streams for reuse (newStream, recycle);
	// freeBytes is their share of Footprint.
	free      []*stream
	freeBytes int
	joined    bool // NewMidway: streams without a request were opened before the join
	// roleUnknown: joined midway without knowing which side is the client;
	// the first header block with :method or :status tells (midway.go).
	roleUnknown bool

	// Reused for each event; valid only during emit.
	resp httpstream.Response
	req  httpstream.Request
}

// New returns a parser for a connection whose client is the Ingress side
// until Start says otherwise. A nil stats is replaced by a private one.
func New(stats *httpstream.Stats) *Parser {
	if stats == nil {
		stats = new(httpstream.Stats)
	}
	p := &Parser{stats: stats, streams: make(map[uint32]*stream)}
	for i := range p.dirs {
		p.dirs[i].init(httpstream.Direction(i))
	}
	p.Start(httpstream.Upgrade{Client: httpstream.Ingress})
	return p
}

// NewProtocol is New as an httpstream.Limits.NewHTTP2 factory.
func NewProtocol(stats *httpstream.Stats) httpstream.Protocol { return New(stats) }

// Start sets the client direction; with an h2c upgrade, stream 1 is the
// HTTP/1.1 request that asked for it and the client sends the preface next.
func (p *Parser) Start(u httpstream.Upgrade) {
	p.client = u.Client
	p.dirs[u.Client].preface = len(http2.ClientPreface)
	p.dirs[u.Client^1].preface = 0
	if u.Request != nil {
		p.addUpgradeStream(u.Request)
	}
}

// stream is the state of one HTTP/2 stream.
type stream struct {
	id       uint32
	hasReq   bool
	method   string
	path     string
	host     string
	reqHdrs  []httpstream.HeaderField
	reqCL    int64
	reqInfo  httpstream.PacketInfo
	hasResp  bool // a final (non-1xx) response head was seen
	code     int
	status   string
	hdrs     []httpstream.HeaderField
	cl       int64 // declared content-length, -1 when absent
	hdrBytes int
	trunc    bool
	grpc     bool
	hasGRPC  bool
	grpcCode int
	grpcMsg  string
	partial  bool  // a field could not be decoded (joined midway)
	missed   bool  // its response head may have been in bytes the capture missed
	data     int64 // DATA payload bytes of the response, padding excluded
	info     httpstream.PacketInfo
	size     int
}

// direction is the frame reassembly and HPACK state of one direction.
type direction struct {
	dir  httpstream.Direction
	lost bool
	// hunting: bytes were missed outside a DATA payload; the next segment
	// that starts a frame resumes decoding (gap.go). rejoined: it did, and
	// a frame error since then means that start was not one: hunt again.
	hunting  bool
	rejoined bool
	preface  int // bytes of the client preface still expected

	hdr  [frameHeaderLen]byte
	nhdr int
	fh   http2.FrameHeader
	// in: a frame header was read and its payload is being consumed.
	in      bool
	payload []byte // payload of a buffered (non-DATA) frame
	left    uint32 // DATA payload bytes still to pass
	padWait bool   // DATA: PADDED and the pad length byte is still to come
	info    httpstream.PacketInfo

	// maxFrame is the largest frame this direction may send: the other
	// side's SETTINGS_MAX_FRAME_SIZE.
	maxFrame uint32

	rd  bytes.Reader
	fr  *http2.Framer
	dec *hpack.Decoder

	// Header block being decoded (HEADERS or PUSH_PROMISE, then CONTINUATION).
	inBlock    bool
	blockID    uint32 // stream the block belongs to
	promised   uint32 // PUSH_PROMISE: the promised stream
	blockEnd   bool   // the HEADERS carried END_STREAM
	blockInfo  httpstream.PacketInfo
	blockBytes int
	fields     []hpack.HeaderField
	fieldBytes int
	truncated  bool

	// Joined midway (see midway.go): the shadow table decodes until the
	// dynamic table is known; blk collects a whole block for it.
	shadow       *shadowTable
	blk          []byte
	blockPartial bool
}

func (d *direction) init(dir httpstream.Direction) {
	d.dir = dir
	d.maxFrame = defaultMaxFrame
	d.fr = http2.NewFramer(nil, &d.rd)
	d.fr.SetMaxReadFrameSize(maxBufferedFrame)
	d.dec = hpack.NewDecoder(4096, d.onField)
	d.dec.SetMaxStringLength(maxStringLen)
}

// onField keeps a decoded field of the current block, within maxBlockBytes.
func (d *direction) onField(f hpack.HeaderField) {
	n := len(f.Name) + len(f.Value) + 32
	if d.fieldBytes+n > maxBlockBytes {
		d.truncated = true
		return
	}
	d.fieldBytes += n
	d.fields = append(d.fields, f)
}

// Footprint returns the bytes the parser holds: buffered frames, header
// blocks being decoded and tracked streams (the HPACK tables are bounded by
// maxTableSize each and counted at their allowed size).
func (p *Parser) Footprint() int {
	n := p.size + p.freeBytes
	for i := range p.dirs {
		d := &p.dirs[i]
		n += cap(d.payload) + cap(d.blk) + d.fieldBytes + maxTableSize
	}
	return n
}

// Consume takes in-order captured bytes of one direction.
func (p *Parser) Consume(dir httpstream.Direction, data []byte, info httpstream.PacketInfo, emit func(*httpstream.Response)) {
	d := &p.dirs[dir&1]
	if d.hunting && !d.lost {
		if !p.frameStart(d, data) {
			return
		}
		p.resume(d, emit)
	}
	for len(data) > 0 && !d.lost && !d.hunting {
		switch {
		case d.preface > 0:
			data = p.matchPreface(d, data)
		case !d.in:
			data = p.readHeader(d, data, &info, emit)
		case d.fh.Type == http2.FrameData:
			data = p.readData(d, data, emit)
		default:
			data = p.readPayload(d, data, emit)
		}
	}
}

// Unknown handles n uncaptured bytes. Within a DATA payload they are only
// counted (an unknown pad length drops the padding exclusion: the count then
// includes the padding); anywhere else the direction rejoins (gap.go).
func (p *Parser) Unknown(dir httpstream.Direction, n uint64) {
	d := &p.dirs[dir&1]
	if d.lost || d.hunting || n == 0 {
		return
	}
	if !d.in || d.fh.Type != http2.FrameData || n > uint64(d.left) {
		p.hunt(d)
		return
	}
	if d.padWait {
		// The pad length is unknown: the count includes the padding (the
		// event is partial), and an END_STREAM of this frame is only seen
		// when the server's side ends.
		d.padWait = false
		p.countData(d, d.left)
		if st := p.streams[d.fh.StreamID]; st != nil && d.dir != p.client {
			st.partial = true
		}
	}
	d.left -= uint32(n)
	if d.left == 0 {
		d.in = false
	}
}

// Finish handles the end of a direction. When the server's side ends,
// every stream is settled: one with a response head gives its event, one
// without is counted as cut.
func (p *Parser) Finish(dir httpstream.Direction, emit func(*httpstream.Response)) {
	if dir&1 == p.client {
		return
	}
	p.settleWhere(func(uint32) bool { return true }, emit)
}

// settleWhere settles the streams whose id matches, in id order so that
// events come out in the same order every time.
func (p *Parser) settleWhere(match func(id uint32) bool, emit func(*httpstream.Response)) {
	var ids []uint32
	for id := range p.streams {
		if match(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		p.settle(p.streams[id], emit)
		p.drop(id)
	}
}

func (p *Parser) lose(d *direction) {
	if d.rejoined && !d.lost {
		p.hunt(d) // the frame start found after a gap was not one
		return
	}
	if !d.lost {
		d.lost = true
		d.payload, d.fields = nil, nil
		p.stats.Desyncs++
	}
}

func (p *Parser) matchPreface(d *direction, data []byte) []byte {
	off := len(http2.ClientPreface) - d.preface
	n := min(d.preface, len(data))
	if string(data[:n]) != http2.ClientPreface[off:off+n] {
		p.lose(d)
		return nil
	}
	d.preface -= n
	return data[n:]
}

// readHeader collects a 9-byte frame header, then decides how the payload is
// read: DATA is counted and passed, every other frame is buffered whole.
func (p *Parser) readHeader(d *direction, data []byte, info *httpstream.PacketInfo, emit func(*httpstream.Response)) []byte {
	if d.nhdr == 0 {
		d.info = *info
	}
	k := copy(d.hdr[d.nhdr:], data)
	d.nhdr += k
	data = data[k:]
	if d.nhdr < frameHeaderLen {
		return data
	}
	d.nhdr = 0
	fh, err := http2.ReadFrameHeader(bytes.NewReader(d.hdr[:]))
	if err != nil {
		p.lose(d)
		return nil
	}
	d.fh, d.in = fh, true
	if fh.Type == http2.FrameData {
		return p.startData(d, data, emit)
	}
	limit := min(max(d.maxFrame, defaultMaxFrame), maxBufferedFrame)
	if fh.Length > limit {
		p.lose(d)
		return nil
	}
	d.payload = append(d.payload[:0], d.hdr[:]...)
	if fh.Length == 0 {
		p.frame(d, emit)
	}
	return data
}

func (p *Parser) readPayload(d *direction, data []byte, emit func(*httpstream.Response)) []byte {
	need := frameHeaderLen + int(d.fh.Length) - len(d.payload)
	k := min(need, len(data))
	d.payload = append(d.payload, data[:k]...)
	if k == need {
		p.frame(d, emit)
	}
	return data[k:]
}

// startData begins a DATA frame's payload.
func (p *Parser) startData(d *direction, data []byte, emit func(*httpstream.Response)) []byte {
	d.left = d.fh.Length
	d.padWait = d.fh.Flags.Has(http2.FlagDataPadded)
	if d.padWait && d.left == 0 {
		p.lose(d) // PADDED needs the pad length byte
		return nil
	}
	if !d.padWait {
		p.countData(d, d.left)
		p.dataEnd(d, emit)
	}
	return data
}

// readData passes DATA payload bytes; only the pad length byte is read.
func (p *Parser) readData(d *direction, data []byte, emit func(*httpstream.Response)) []byte {
	if d.padWait {
		pad := uint32(data[0])
		if pad >= d.left {
			p.lose(d)
			return nil
		}
		d.padWait = false
		p.countData(d, d.left-1-pad)
		p.dataEnd(d, emit)
	}
	k := min(uint64(d.left), uint64(len(data)))
	d.left -= uint32(k)
	if d.left == 0 {
		d.in = false
	}
	return data[k:]
}

// dataEnd handles a DATA frame's END_STREAM once its size is counted, and
// finishes a zero-length frame.
func (p *Parser) dataEnd(d *direction, emit func(*httpstream.Response)) {
	if d.left == 0 {
		d.in = false
	}
	if d.fh.Flags.Has(http2.FlagDataEndStream) && d.dir != p.client {
		if st := p.streams[d.fh.StreamID]; st != nil {
			p.settle(st, emit)
			p.drop(st.id)
		}
	}
}

func (p *Parser) countData(d *direction, n uint32) {
	if d.dir == p.client {
		return
	}
	if st := p.streams[d.fh.StreamID]; st != nil {
		st.data += int64(n)
	}
}

// frame parses a buffered frame with the x/net framer and acts on it.
func (p *Parser) frame(d *direction, emit func(*httpstream.Response)) {
	d.in = false
	d.rd.Reset(d.payload)
	f, err := d.fr.ReadFrame()
	if err != nil {
		p.lose(d)
		return
	}
	switch f := f.(type) {
	case *http2.SettingsFrame:
		p.settings(d, f)
	case *http2.HeadersFrame:
		p.beginBlock(d, f.StreamID, 0, f.StreamEnded())
		p.fragment(d, f.HeaderBlockFragment(), f.HeadersEnded(), emit)
	case *http2.PushPromiseFrame:
		p.beginBlock(d, f.StreamID, f.PromiseID, false)
		p.fragment(d, f.HeaderBlockFragment(), f.HeadersEnded(), emit)
	case *http2.ContinuationFrame:
		if !d.inBlock || f.StreamID != d.blockID {
			p.lose(d)
			return
		}
		p.fragment(d, f.HeaderBlockFragment(), f.HeadersEnded(), emit)
	case *http2.RSTStreamFrame:
		if st := p.streams[f.StreamID]; st != nil {
			p.settle(st, emit)
			p.drop(f.StreamID)
		}
	case *http2.GoAwayFrame:
		p.goAway(d, f.LastStreamID, emit)
	}
	if cap(d.payload) > 2*defaultMaxFrame {
		d.payload = nil // a large frame's buffer is not kept
	}
}

// settings applies what a SETTINGS frame from d means for the other side.
func (p *Parser) settings(d *direction, f *http2.SettingsFrame) {
	if f.IsAck() {
		return
	}
	peer := &p.dirs[d.dir^1]
	_ = f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingHeaderTableSize:
			peer.dec.SetAllowedMaxDynamicTableSize(min(s.Val, maxTableSize))
		case http2.SettingMaxFrameSize:
			peer.maxFrame = max(peer.maxFrame, s.Val)
		}
		return nil
	})
}

// goAway settles the streams the sender will not process: those above
// LastStreamID that the receiver of the GOAWAY opened.
func (p *Parser) goAway(d *direction, last uint32, emit func(*httpstream.Response)) {
	p.settleWhere(func(id uint32) bool { return id > last && (id%2 == 1) == (d.dir != p.client) }, emit)
}

func (p *Parser) beginBlock(d *direction, id, promised uint32, end bool) {
	if d.inBlock {
		p.lose(d)
		return
	}
	d.inBlock, d.blockID, d.promised, d.blockEnd = true, id, promised, end
	d.blockInfo, d.blockBytes = d.info, 0
	d.fields, d.fieldBytes, d.truncated = d.fields[:0], 0, false
}

// fragment feeds a header block fragment to the direction's HPACK decoder
// (whose dynamic table lives for the whole connection) and handles the
// block when it ends.
func (p *Parser) fragment(d *direction, frag []byte, ended bool, emit func(*httpstream.Response)) {
	if d.lost || d.hunting {
		return
	}
	d.blockBytes += len(frag)
	if !p.decode(d, frag, ended) {
		p.lose(d)
		return
	}
	if !ended {
		return
	}
	d.inBlock = false
	if p.roleUnknown && !p.learnRole(d) {
		d.fields = d.fields[:0]
		d.fieldBytes = 0
		return
	}
	if d.dir == p.client {
		p.requestBlock(d)
	} else if d.promised != 0 {
		d.blockID = d.promised
		p.requestBlock(d)
	} else {
		p.responseBlock(d, emit)
	}
	d.fields = d.fields[:0]
	d.fieldBytes = 0
}

// decode feeds a fragment to the direction's decoder: x/net's HPACK decoder
// (whose dynamic table lives for the whole connection), or the shadow table
// of a connection joined midway until the table is known.
func (p *Parser) decode(d *direction, frag []byte, ended bool) bool {
	if d.shadow == nil {
		if _, err := d.dec.Write(frag); err != nil {
			return false
		}
		d.blockPartial = false // the table is known
		return !ended || d.dec.Close() == nil
	}
	if len(d.blk)+len(frag) > maxBufferedFrame {
		return false
	}
	d.blk = append(d.blk, frag...)
	if !ended {
		return true
	}
	err := d.shadow.decode(d.blk, d.onField)
	d.blk = d.blk[:0]
	d.blockPartial = d.shadow.partial
	if err != nil {
		return false
	}
	if d.shadow.complete() && d.shadow.allKnown() {
		return d.takeOver() == nil
	}
	return true
}

// requestBlock starts tracking the stream a request header block opens
// (or a PUSH_PROMISE promises). Request trailers are ignored.
func (p *Parser) requestBlock(d *direction) {
	if p.streams[d.blockID] != nil || !hasPseudo(d.fields) && !d.blockPartial {
		return // trailers of a request (they carry no pseudo-header)
	}
	p.stats.Requests++
	if len(p.streams) >= maxStreams || p.size >= maxTrackedBytes {
		p.stats.DroppedRequests++
		return
	}
	st := p.newStream(d.blockID)
	st.hasReq, st.reqInfo = true, d.blockInfo
	for _, f := range d.fields {
		switch f.Name {
		case ":method":
			st.method = f.Value
		case ":path":
			st.path = f.Value
		case ":authority":
			st.host = f.Value
		default:
			if strings.HasPrefix(f.Name, ":") {
				continue
			}
			if f.Name == "host" && st.host == "" {
				st.host = f.Value
			}
			if f.Name == "content-length" {
				st.reqCL = parseCL(f.Value)
			}
			st.reqHdrs = append(st.reqHdrs, field(f))
		}
	}
	st.trunc, st.partial = d.truncated, d.blockPartial
	p.track(st)
}

// responseBlock handles a header block of the server: an interim response
// (its own event at once), the final response head, or trailers.
func (p *Parser) responseBlock(d *direction, emit func(*httpstream.Response)) {
	st := p.streams[d.blockID]
	if st == nil {
		if len(p.streams) >= maxStreams {
			return
		}
		// A stream opened before a midway join: its request is unknown.
		st = p.newStream(d.blockID)
		st.partial = d.shadow != nil || p.joined
		p.track(st)
	}
	code, status := 0, ""
	for _, f := range d.fields {
		if f.Name == ":status" {
			status = f.Value
			code, _ = strconv.Atoi(f.Value)
		}
	}
	switch {
	case code >= 100 && code < 200 && !st.hasResp:
		interim := *st
		p.setHead(&interim, d, code, status)
		p.emit(&interim, emit)
		return
	case code != 0 && !st.hasResp:
		p.size += p.setHead(st, d, code, status)
	}
	p.grpcStatus(st, d.fields)
	st.partial = st.partial || d.blockPartial && st.grpc
	if d.blockEnd {
		p.settle(st, emit)
		p.drop(st.id)
	}
}

// setHead stores a response head in st and returns the bytes it added.
func (p *Parser) setHead(st *stream, d *direction, code int, status string) int {
	st.hasResp, st.code, st.status = true, code, status
	st.info, st.hdrBytes, st.trunc = d.blockInfo, d.blockBytes, st.trunc || d.truncated
	st.partial = st.partial || d.blockPartial
	// An interim head's copy of st shares st.hdrs: st has no head yet,
	// and the interim event is given before st's own head is read.
	st.hdrs = st.hdrs[:0]
	n := 0
	for _, f := range d.fields {
		if strings.HasPrefix(f.Name, ":") {
			continue
		}
		switch f.Name {
		case "content-length":
			st.cl = parseCL(f.Value)
		case "content-type":
			st.grpc = strings.HasPrefix(f.Value, "application/grpc")
		}
		st.hdrs = append(st.hdrs, field(f))
		n += len(f.Name) + len(f.Value)
	}
	st.size += n
	return n
}

// grpcStatus takes grpc-status and grpc-message of a gRPC response's
// trailers (or of a trailers-only response).
func (p *Parser) grpcStatus(st *stream, fields []hpack.HeaderField) {
	if !st.grpc {
		return
	}
	for _, f := range fields {
		switch f.Name {
		case "grpc-status":
			if c, err := strconv.Atoi(f.Value); err == nil {
				st.hasGRPC, st.grpcCode = true, c
			}
		case "grpc-message":
			st.grpcMsg = f.Value
		}
	}
}

func hasPseudo(fs []hpack.HeaderField) bool {
	for _, f := range fs {
		if strings.HasPrefix(f.Name, ":") {
			return true
		}
	}
	return false
}

func (p *Parser) track(st *stream) {
	st.size += streamOverhead + len(st.method) + len(st.path) + len(st.host)
	for _, h := range st.reqHdrs {
		st.size += len(h.Name) + len(h.Value)
	}
	p.size += st.size
	p.opened++
	p.streams[st.id] = st
}

func (p *Parser) drop(id uint32) {
	if st := p.streams[id]; st != nil {
		p.size -= st.size
		delete(p.streams, id)
		p.recycle(st)
	}
}

// Dropped streams are kept for reuse, with their header slices, so that a
// busy connection allocates no stream struct per stream: at most
// maxFreeStreams of them, and only slices of up to maxFreeFields fields.
// Footprint counts them.
const (
	maxFreeStreams = 16
	maxFreeFields  = 16
	fieldSize      = 32 // an httpstream.HeaderField: two strings
)

// newStream returns a stream with no state but its id, a dropped one if
// there is one.
func (p *Parser) newStream(id uint32) *stream {
	var st *stream
	if n := len(p.free); n > 0 {
		st = p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.freeBytes -= streamOverhead + (cap(st.reqHdrs)+cap(st.hdrs))*fieldSize
	} else {
		st = new(stream)
	}
	st.id, st.reqCL, st.cl = id, -1, -1
	return st
}

// recycle keeps a dropped stream for newStream, its strings cleared so
// that it holds no memory of the connection's traffic.
func (p *Parser) recycle(st *stream) {
	if len(p.free) >= maxFreeStreams {
		return
	}
	// Up to the capacity: an interim head may have used more of hdrs.
	req, hdrs := st.reqHdrs[:cap(st.reqHdrs)], st.hdrs[:cap(st.hdrs)]
	if cap(req) > maxFreeFields {
		req = nil
	}
	if cap(hdrs) > maxFreeFields {
		hdrs = nil
	}
	clear(req)
	clear(hdrs)
	*st = stream{reqHdrs: req[:0], hdrs: hdrs[:0]}
	p.free = append(p.free, st)
	p.freeBytes += streamOverhead + (cap(req)+cap(hdrs))*fieldSize
}

// settle gives a stream's event when it has a response head, else counts it
// as cut.
func (p *Parser) settle(st *stream, emit func(*httpstream.Response)) {
	if !st.hasResp {
		if !st.missed {
			p.stats.CutStreams++
		}
		return
	}
	p.emit(st, emit)
}

// emit writes the event of a response head.
func (p *Parser) emit(st *stream, emit func(*httpstream.Response)) {
	p.stats.Responses++
	if emit == nil {
		return
	}
	cl := st.cl
	if cl < 0 && st.code >= 200 {
		cl = st.data
	}
	r := &p.resp
	*r = httpstream.Response{
		Dir: p.client ^ 1, Proto: "HTTP/2.0", StatusCode: st.code, Status: st.status,
		Headers: st.hdrs, ContentLength: cl, HeaderBytes: st.hdrBytes, Truncated: st.trunc,
		Info: st.info, StreamID: st.id,
		HasGRPCStatus: st.hasGRPC, GRPCStatus: st.grpcCode, GRPCMessage: st.grpcMsg, Partial: st.partial,
	}
	if st.hasReq {
		p.req = httpstream.Request{Method: st.method, URI: st.path, Proto: "HTTP/2.0", Host: st.host,
			Headers: st.reqHdrs, ContentLength: st.reqCL, Info: st.reqInfo}
		r.Request = &p.req
		r.LatencyNs = int64(r.Info.TimestampNs - st.reqInfo.TimestampNs)
	}
	emit(r)
}

// addUpgradeStream makes stream 1 the HTTP/1.1 request of an h2c upgrade.
// The request's strings are only valid during Start: they are copied.
func (p *Parser) addUpgradeStream(q *httpstream.Request) {
	st := p.newStream(1)
	st.hasReq, st.method, st.path, st.host = true, q.Method, strings.Clone(q.URI), strings.Clone(q.Host)
	st.reqCL, st.reqInfo = q.ContentLength, q.Info
	for _, h := range q.Headers {
		st.reqHdrs = append(st.reqHdrs, httpstream.HeaderField{Name: strings.Clone(h.Name), Value: strings.Clone(h.Value)})
	}
	p.track(st)
}

// field converts a decoded field; names are lower case on the wire in
// HTTP/2 and are given the canonical form HTTP/1 events use.
func field(f hpack.HeaderField) httpstream.HeaderField {
	return httpstream.HeaderField{Name: httpstream.CanonicalName(f.Name), Value: f.Value}
}

func parseCL(v string) int64 {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}
