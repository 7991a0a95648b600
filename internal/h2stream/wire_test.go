package h2stream

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/boxtap/boxtap/httpstream"
)

// chunk is bytes one side wrote, in the order of the conversation.
type chunk struct {
	dir  httpstream.Direction
	data []byte
}

// side writes frames of one peer with its own HPACK encoder.
type side struct {
	dir httpstream.Direction
	buf bytes.Buffer
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder
}

// wire builds a conversation with x/net's framer and HPACK encoder: the
// client is Ingress (the traced container is the server).
type wire struct {
	t        testing.TB
	cli, srv *side
	chunks   []chunk
}

func newSide(dir httpstream.Direction) *side {
	s := &side{dir: dir}
	s.fr = http2.NewFramer(&s.buf, nil)
	s.enc = hpack.NewEncoder(&s.hb)
	return s
}

func newWire(t testing.TB) *wire {
	w := &wire{t: t, cli: newSide(httpstream.Ingress), srv: newSide(httpstream.Egress)}
	w.cli.buf.WriteString(http2.ClientPreface)
	w.must(w.cli.fr.WriteSettings())
	w.flush(w.cli)
	w.must(w.srv.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100}))
	w.flush(w.srv)
	return w
}

func (w *wire) must(err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
}

// flush ends a write of one side: what it wrote becomes the next chunk.
func (w *wire) flush(s *side) {
	if s.buf.Len() > 0 {
		w.chunks = append(w.chunks, chunk{s.dir, bytes.Clone(s.buf.Bytes())})
		s.buf.Reset()
	}
}

// block encodes "name", "value", ... pairs.
func (w *wire) block(s *side, kv ...string) []byte {
	s.hb.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		w.must(s.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}))
	}
	return bytes.Clone(s.hb.Bytes())
}

// headers writes one HEADERS frame (no CONTINUATION).
func (w *wire) headers(s *side, id uint32, end bool, pad uint8, kv ...string) {
	w.must(s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: w.block(s, kv...),
		EndStream: end, EndHeaders: true, PadLength: pad}))
	w.flush(s)
}

// headersSplit writes a header block as HEADERS plus CONTINUATION frames of
// at most n bytes each.
func (w *wire) headersSplit(s *side, id uint32, end bool, n int, kv ...string) {
	b := w.block(s, kv...)
	first := min(n, len(b))
	w.must(s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b[:first], EndStream: end,
		EndHeaders: first == len(b), Priority: http2.PriorityParam{StreamDep: 0, Weight: 15}}))
	for b = b[first:]; len(b) > 0; {
		k := min(n, len(b))
		w.must(s.fr.WriteContinuation(id, k == len(b), b[:k]))
		b = b[k:]
	}
	w.flush(s)
}

func (w *wire) data(s *side, id uint32, end bool, pad int, p []byte) {
	if pad > 0 {
		w.must(s.fr.WriteDataPadded(id, end, p, make([]byte, pad)))
	} else {
		w.must(s.fr.WriteData(id, end, p))
	}
	w.flush(s)
}

func (w *wire) get(id uint32, path string) {
	w.headers(w.cli, id, true, 0, ":method", "GET", ":scheme", "http", ":path", path, ":authority", "example.test")
}

// event is what a test compares of a Response.
type event struct {
	Stream        uint32
	Code          int
	Status        string
	Method, Path  string
	Host          string
	CL            int64
	GRPC          bool
	GRPCCode      int
	GRPCMsg       string
	Headers       string
	Partial       bool
	LatencyKnown  bool
	Proto, Dir    string
	ReqHasHeaders bool
}

func (e event) String() string { type plain event; return fmt.Sprintf("%+v", plain(e)) }

func record(r *httpstream.Response) event {
	// A Response's strings may alias the connection's buffers, valid only
	// during the callback (httpstream's documented lifetime): keep copies.
	e := event{Stream: r.StreamID, Code: r.StatusCode, Status: strings.Clone(r.Status), CL: r.ContentLength,
		GRPC: r.HasGRPCStatus, GRPCCode: r.GRPCStatus, GRPCMsg: strings.Clone(r.GRPCMessage), Partial: r.Partial,
		Proto: strings.Clone(r.Proto), Dir: r.Dir.String()}
	var h []string
	for _, f := range r.Headers {
		h = append(h, f.Name+"="+f.Value)
	}
	e.Headers = strings.Join(h, ",")
	if q := r.Request; q != nil {
		e.Method, e.Path, e.Host, e.LatencyKnown = strings.Clone(q.Method), strings.Clone(q.URI), strings.Clone(q.Host), true
		e.ReqHasHeaders = len(q.Headers) > 0
	}
	return e
}

// feed runs chunks through a Parser, each chunk cut into pieces of at most
// n bytes (n <= 0: whole), and returns the events in order.
func feed(chunks []chunk, n int) ([]event, *Parser, *httpstream.Stats) {
	st := new(httpstream.Stats)
	return feedTo(New(st), st, chunks, n)
}

func feedTo(p *Parser, st *httpstream.Stats, chunks []chunk, n int) ([]event, *Parser, *httpstream.Stats) {
	var evs []event
	emit := func(r *httpstream.Response) { evs = append(evs, record(r)) }
	for _, c := range chunks {
		d := c.data
		for len(d) > 0 {
			k := len(d)
			if n > 0 {
				k = min(n, k)
			}
			p.Consume(c.dir, d[:k], httpstream.PacketInfo{}, emit)
			d = d[k:]
		}
	}
	return evs, p, st
}

func byStream(evs []event) []event {
	out := append([]event(nil), evs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Stream < out[j].Stream })
	return out
}
