package h2stream

import (
	"strings"
	"testing"

	"github.com/boxtap/boxtap/httpstream"
)

// feedWithGap runs chunks through a new Parser; chunk i's bytes from cut on,
// and the next span whole chunks, are reported as missed (Unknown) instead.
func feedWithGap(chunks []chunk, i, cut, span int) ([]event, *httpstream.Stats) {
	st := new(httpstream.Stats)
	p := New(st)
	var evs []event
	emit := func(r *httpstream.Response) { evs = append(evs, record(r)) }
	for j, c := range chunks {
		switch {
		case j == i:
			cut = min(cut, len(c.data))
			p.Consume(c.dir, c.data[:cut], httpstream.PacketInfo{}, emit)
			p.Unknown(c.dir, uint64(len(c.data)-cut))
		case j > i && j <= i+span:
			p.Unknown(c.dir, uint64(len(c.data)))
		default:
			p.Consume(c.dir, c.data, httpstream.PacketInfo{}, emit)
		}
	}
	for _, d := range []httpstream.Direction{httpstream.Ingress, httpstream.Egress} {
		p.Finish(d, emit)
	}
	return evs, st
}

// consistent fails when an event's field differs from the truth of its
// stream without being empty: a gap may leave a value unknown, never make one up.
func consistent(t testing.TB, g, w event) {
	t.Helper()
	for _, f := range []struct{ name, got, want string }{
		{"method", g.Method, w.Method}, {"path", g.Path, w.Path}, {"host", g.Host, w.Host}, {"status", g.Status, w.Status},
	} {
		if f.got != "" && f.got != f.want {
			t.Errorf("stream %d: %s %q, truth %q: invented", g.Stream, f.name, f.got, f.want)
		}
	}
	if g.GRPC && (!w.GRPC || g.GRPCCode != w.GRPCCode) {
		t.Errorf("stream %d: grpc-status %d, truth %v %d: invented", g.Stream, g.GRPCCode, w.GRPC, w.GRPCCode)
	}
	truth := map[string]bool{}
	for _, h := range strings.Split(w.Headers, ",") {
		truth[h] = true
	}
	for _, h := range strings.Split(g.Headers, ",") {
		name, value, _ := strings.Cut(h, "=")
		if h != "" && name != "" && value != "" && !truth[h] {
			t.Errorf("stream %d: header %q not in the truth %q: invented", g.Stream, h, w.Headers)
		}
	}
	if g != w && !g.Partial {
		t.Errorf("stream %d differs from the truth but is not marked partial:\n got %v\nwant %v", g.Stream, g, w)
	}
}

// callChunk is the index of the chunk of call c (grpcCalls) written by dir,
// the k-th of that side in the call.
func callChunk(t *testing.T, w *wire, starts []int, c int, dir httpstream.Direction, k int) int {
	t.Helper()
	for i := starts[c]; i < len(w.chunks); i++ {
		if w.chunks[i].dir == dir {
			if k == 0 {
				return i
			}
			k--
		}
	}
	t.Fatalf("call %d has no chunk %d of %v", c, k, dir)
	return -1
}

func TestGapInAResponseHeaderBlockRejoinsWithoutInventing(t *testing.T) {
	const calls, gapAt, resetAt = 40, 10, 25
	w, starts := grpcCalls(t, calls, resetAt)
	truth, _, _ := feed(w.chunks, 0)
	if len(truth) != calls {
		t.Fatalf("full parse: %d events, want %d", len(truth), calls)
	}
	// The response head of call 10 is missed.
	i := callChunk(t, w, starts, gapAt, httpstream.Egress, 0)
	got, st := feedWithGap(w.chunks, i, 0, 0)
	if len(got) != calls-1 {
		t.Fatalf("%d events, want %d (every call but the one whose response head was missed):\n%v", len(got), calls-1, got)
	}
	partial := 0
	for k, g := range got {
		c := k
		if k >= gapAt {
			c++ // the missed call gives no event
		}
		wt := truth[c]
		if g.Stream != wt.Stream {
			t.Fatalf("event %d: stream %d, want %d", k, g.Stream, wt.Stream)
		}
		consistent(t, g, wt)
		if g.Partial {
			partial++
		}
		if (c < gapAt || c >= resetAt) && g != wt {
			t.Errorf("call %d, before the gap or after the tables were emptied, must be whole:\n got %v\nwant %v", c, g, wt)
		}
	}
	if partial == 0 {
		t.Error("no event after the gap is partial, yet the server's table held entries from before it")
	}
	if st.Desyncs != 1 || st.CutStreams != 0 {
		t.Errorf("stats %+v: want 1 desync and no cut stream (the missed response is no cut)", *st)
	}
}

func TestGapInARequestGivesItsResponseWithoutARequest(t *testing.T) {
	const calls, gapAt, resetAt = 40, 10, 25
	w, starts := grpcCalls(t, calls, resetAt)
	truth, _, _ := feed(w.chunks, 0)
	i := callChunk(t, w, starts, gapAt, httpstream.Ingress, 0)
	got, st := feedWithGap(w.chunks, i, 0, 0)
	if len(got) != calls {
		t.Fatalf("%d events, want %d: a missed request still has its response", len(got), calls)
	}
	for k, g := range got {
		consistent(t, g, truth[k])
		if k == gapAt && (g.LatencyKnown || !g.Partial || g.Status != "200") {
			t.Errorf("the call whose request was missed: %v, want status 200, no request, partial", g)
		}
		if (k < gapAt || k >= resetAt) && g != truth[k] {
			t.Errorf("call %d must be whole:\n got %v\nwant %v", k, g, truth[k])
		}
	}
	if st.Desyncs != 1 {
		t.Errorf("stats %+v: want 1 desync", *st)
	}
}

func TestGapAcrossFramesWaitsForAFrameStart(t *testing.T) {
	const calls, resetAt = 30, 20
	w, starts := grpcCalls(t, calls, resetAt)
	truth, _, _ := feed(w.chunks, 0)
	// From the middle of call 5's response head to the end of call 7's
	// server chunks: the segment after that is mid-conversation, and
	// bytes inside the first chunk are no frame start.
	i := callChunk(t, w, starts, 5, httpstream.Egress, 0)
	got, st := feedWithGap(w.chunks, i, 4, starts[8]-i-1)
	byID := map[uint32]event{}
	for _, e := range truth {
		byID[e.Stream] = e
	}
	for _, g := range got {
		wt, ok := byID[g.Stream]
		if !ok {
			t.Fatalf("event for stream %d, which the truth does not have", g.Stream)
		}
		consistent(t, g, wt)
	}
	// Calls 5, 6 and 7 lost their responses (requests too, for 6 and 7:
	// the span covers both sides).
	if len(got) != calls-3 {
		t.Errorf("%d events, want %d", len(got), calls-3)
	}
	if last := got[len(got)-1]; last != truth[calls-1] {
		t.Errorf("the last call, after the tables were emptied, must be whole:\n got %v\nwant %v", last, truth[calls-1])
	}
	if st.Desyncs < 1 {
		t.Errorf("stats %+v: want a desync per direction with a gap", *st)
	}
}

func TestFrameStart(t *testing.T) {
	p := New(nil)
	srv := &p.dirs[httpstream.Egress]
	cli := &p.dirs[httpstream.Ingress]
	hdr := func(length int, typ byte, id uint32) []byte {
		return []byte{byte(length >> 16), byte(length >> 8), byte(length), typ, 0, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
	}
	tests := []struct {
		name string
		d    *direction
		b    []byte
		want bool
	}{
		{"server HEADERS on a request's stream", srv, hdr(10, 1, 3), true},
		{"server DATA on a pushed stream", srv, hdr(10, 0, 2), true},
		{"client HEADERS on an even stream", cli, hdr(10, 1, 2), false},
		{"CONTINUATION", srv, hdr(10, 9, 3), false},
		{"DATA on stream 0", srv, hdr(10, 0, 0), false},
		{"SETTINGS on a stream", srv, hdr(6, 4, 1), false},
		{"SETTINGS of odd length", srv, hdr(5, 4, 0), false},
		{"PING", cli, hdr(8, 6, 0), true},
		{"PUSH_PROMISE from the client", cli, hdr(8, 5, 1), false},
		{"longer than the peer allows", srv, hdr(defaultMaxFrame+1, 0, 1), false},
		{"reserved bit set", srv, hdr(1, 0, 1<<31|1), false},
		{"unknown type", srv, hdr(1, 0x20, 1), false},
		{"short", srv, hdr(10, 1, 3)[:8], false},
		{"a plausible frame, then an implausible one", srv, append(append(hdr(2, 0, 1), 'o', 'k'), hdr(10, 9, 1)...), false},
		{"two plausible frames", srv, append(append(hdr(2, 0, 1), 'o', 'k'), hdr(4, 8, 0)...), true},
	}
	for _, tt := range tests {
		if got := p.frameStart(tt.d, tt.b); got != tt.want {
			t.Errorf("%s: frameStart = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// FuzzGapRejoin misses the tail of any chunk (from cut on) and up to seven
// chunks after it: no event for a stream the full parse has none for, none
// beyond its count, and no value made up.
func FuzzGapRejoin(f *testing.F) {
	f.Add(uint16(12), uint16(0), uint8(0), false)
	f.Add(uint16(30), uint16(5), uint8(3), false)
	f.Add(uint16(3), uint16(20), uint8(1), true)
	f.Add(uint16(9), uint16(9), uint8(7), true)
	f.Fuzz(func(t *testing.T, at, cut uint16, span uint8, mixed bool) {
		w := interleaved(t)
		if !mixed {
			w, _ = grpcCalls(t, 24, 16)
		}
		truth, _, _ := feed(w.chunks, 0)
		got, _ := feedWithGap(w.chunks, int(at)%len(w.chunks), int(cut), int(span%8))
		if len(got) > len(truth) {
			t.Fatalf("%d events, the full parse has %d", len(got), len(truth))
		}
		byID := map[uint32][]event{}
		for _, e := range truth {
			byID[e.Stream] = append(byID[e.Stream], e)
		}
		for _, g := range got {
			ws := byID[g.Stream]
			if len(ws) == 0 {
				t.Fatalf("event for stream %d, which has none in the full parse: %v", g.Stream, g)
			}
			// An interim and a final response share a stream: compare with
			// the one of the same status when the status is known.
			wt := ws[len(ws)-1]
			for _, e := range ws {
				if e.Status == g.Status {
					wt = e
				}
			}
			consistent(t, g, wt)
		}
	})
}
