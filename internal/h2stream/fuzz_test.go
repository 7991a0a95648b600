package h2stream

import (
	"testing"

	"github.com/boxtap/boxtap/httpstream"
)

// FuzzSegmentation feeds arbitrary client and server bytes (the client
// starts with the preface) once whole and once cut where cuts says. The
// events must be the same, and no more final responses than streams
// opened; the parser's footprint stays bounded.
func FuzzSegmentation(f *testing.F) {
	mid, starts := grpcCalls(f, 12, 8)
	mid.chunks = mid.chunks[starts[4]:] // a midway seed: no preface
	for _, w := range []*wire{interleaved(f), grpcWire(f), mid} {
		var cli, srv []byte
		for _, c := range w.chunks {
			if c.dir == httpstream.Ingress {
				cli = append(cli, c.data...)
			} else {
				srv = append(srv, c.data...)
			}
		}
		f.Add(cli, srv, []byte{1, 9, 3, 200, 7})
	}
	f.Fuzz(func(t *testing.T, cli, srv, cuts []byte) {
		whole := []chunk{{httpstream.Ingress, cli}, {httpstream.Egress, srv}}
		want, p, _ := feed(whole, 0)
		got, q, _ := cutFeed(cli, srv, cuts)
		if len(got) != len(want) {
			t.Fatalf("%d events cut, %d whole", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("event %d:\n cut   %v\n whole %v", i, got[i], want[i])
			}
		}
		final := 0
		for _, e := range want {
			if e.Code < 100 || e.Code >= 200 {
				final++
			}
		}
		if final > p.opened {
			t.Fatalf("%d final events for %d streams opened", final, p.opened)
		}
		// Joined midway (no preface): the same must hold, and the shadow
		// table must never panic on any bytes.
		mw, m1, _ := feedTo(NewMidway(nil, httpstream.Ingress), new(httpstream.Stats), whole, 0)
		chunks := cutChunks(cli, srv, cuts)
		mc, m2, _ := feedTo(NewMidway(nil, httpstream.Ingress), new(httpstream.Stats), chunks, 0)
		if len(mw) != len(mc) {
			t.Fatalf("midway: %d events cut, %d whole", len(mc), len(mw))
		}
		for i := range mw {
			if mw[i] != mc[i] {
				t.Fatalf("midway event %d:\n cut   %v\n whole %v", i, mc[i], mw[i])
			}
		}
		for _, x := range []*Parser{p, q, m1, m2} {
			if fp := x.Footprint(); fp > 2*(maxTableSize+maxBufferedFrame+9+maxBlockBytes)+maxStreams*(streamOverhead+2*maxBlockBytes) {
				t.Fatalf("footprint %d", fp)
			}
		}
	})
}

// cutFeed feeds each direction in pieces whose lengths come from cuts.
func cutFeed(cli, srv, cuts []byte) ([]event, *Parser, *httpstream.Stats) {
	return feed(cutChunks(cli, srv, cuts), 0)
}

func cutChunks(cli, srv, cuts []byte) []chunk {
	var chunks []chunk
	i := 0
	for _, side := range []chunk{{httpstream.Ingress, cli}, {httpstream.Egress, srv}} {
		d := side.data
		for len(d) > 0 {
			k := len(d)
			if len(cuts) > 0 {
				k = min(k, int(cuts[i%len(cuts)])+1)
				i++
			}
			chunks = append(chunks, chunk{side.dir, d[:k]})
			d = d[k:]
		}
	}
	return chunks
}

// FuzzConnHandOver drives arbitrary bytes through httpstream.Conn with the
// HTTP/2 parser configured: the hand-over (preface, server SETTINGS,
// Upgrade: h2c) must give the same events for any segmentation.
func FuzzConnHandOver(f *testing.F) {
	up := "GET /up HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
	w := interleaved(f)
	var cli, srv []byte
	for _, c := range w.chunks {
		if c.dir == httpstream.Ingress {
			cli = append(cli, c.data...)
		} else {
			srv = append(srv, c.data...)
		}
	}
	f.Add(cli, srv, []byte{5, 1, 30})
	f.Add([]byte(up+http2Preface()), append([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"), srv...), []byte{3})
	f.Fuzz(func(t *testing.T, cli, srv, cuts []byte) {
		whole := connFeed([]chunk{{httpstream.Ingress, cli}, {httpstream.Egress, srv}})
		cut := connFeed(cutChunks(cli, srv, cuts))
		if len(whole) != len(cut) {
			t.Fatalf("%d events cut, %d whole", len(cut), len(whole))
		}
		for i := range whole {
			if whole[i] != cut[i] {
				t.Fatalf("event %d:\n cut   %v\n whole %v", i, cut[i], whole[i])
			}
		}
	})
}

func http2Preface() string { return "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" }

// connFeed feeds chunks as in-order segments of a Conn.
func connFeed(chunks []chunk) []event {
	c := httpstream.NewConn(httpstream.Limits{NewHTTP2: NewProtocol}, nil)
	var seq [2]uint32
	var evs []event
	for _, ch := range chunks {
		c.Feed(&httpstream.Segment{Dir: ch.dir, Seq: seq[ch.dir], Data: ch.data}, func(r *httpstream.Response) { evs = append(evs, record(r)) })
		seq[ch.dir] += uint32(len(ch.data))
	}
	return evs
}

// FuzzConnJoinMidway joins a gRPC conversation through httpstream.Conn at
// any chunk, cut into segments anywhere: a segment may start inside a
// frame. Whatever is recovered, no field of an event differs from the full
// parse (fields are the truth or empty), and an event lacking a field is
// marked partial.
func FuzzConnJoinMidway(f *testing.F) {
	w, _ := grpcCalls(f, 12, -1)
	truth, _, _ := feed(w.chunks, 0)
	byID := make(map[uint32]event)
	for _, e := range truth {
		byID[e.Stream] = e
	}
	lim := httpstream.Limits{NewHTTP2: NewProtocol, NewHTTP2Midway: NewMidwayProtocol}
	f.Add(byte(12), []byte{})
	f.Add(byte(20), []byte{40, 3, 200})
	f.Add(byte(31), []byte{8, 9})
	f.Fuzz(func(t *testing.T, join byte, cuts []byte) {
		var chunks []chunk
		i := 0
		// Chunks 0 and 1 are the connection's start (preface, SETTINGS):
		// a join there is no join.
		for _, c := range w.chunks[2+int(join)%(len(w.chunks)-2):] {
			for d := c.data; len(d) > 0; i++ {
				k := len(d)
				if len(cuts) > 0 {
					k = min(k, int(cuts[i%len(cuts)])+1)
				}
				chunks = append(chunks, chunk{c.dir, d[:k]})
				d = d[k:]
			}
		}
		got, _ := joinedConnFeed(chunks, lim)
		for _, g := range got {
			w, ok := byID[g.Stream]
			if !ok {
				t.Fatalf("event of stream %d, which the conversation never opened", g.Stream)
			}
			honest := func(got, want string) bool { return got == "" || got == want }
			if !honest(g.Method, w.Method) || !honest(g.Path, w.Path) || !honest(g.Host, w.Host) ||
				!honest(g.Status, w.Status) || g.Headers != "" && !honestHeaders(g.Headers, w.Headers) ||
				g.GRPC && (g.GRPCCode != w.GRPCCode || !w.GRPC) {
				t.Fatalf("invented value:\n got %v\nwant %v", g, w)
			}
			if !g.Partial && (g.Method != w.Method || g.Path != w.Path || g.Host != w.Host || g.Headers != w.Headers) {
				t.Fatalf("fields missing but not partial:\n got %v\nwant %v", g, w)
			}
		}
	})
}
