package h2stream

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/boxtap/boxtap/httpstream"
)

// Joining a real grpc-go connection midway. grpc-go's client and server
// run in this process over loopback; every Write of either side is
// recorded, in order, before it reaches the socket (so a request is
// recorded before its response). The full parse of the recording is the
// truth; a midway parser fed from the first write of call join on must
// never differ from it except by leaving a field empty, and must mark such
// events partial.

// wireLog records what both ends of connections wrote.
type wireLog struct {
	mu     sync.Mutex
	chunks []chunk
}

func (l *wireLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.chunks)
}

// loggedConn records its writes as dir (the server's egress, the client's
// ingress, as the server's tracer would see them).
type loggedConn struct {
	net.Conn
	log *wireLog
	dir httpstream.Direction
}

func (c *loggedConn) Write(b []byte) (int, error) {
	c.log.mu.Lock()
	c.log.chunks = append(c.log.chunks, chunk{dir: c.dir, data: bytes.Clone(b)})
	c.log.mu.Unlock()
	return c.Conn.Write(b)
}

type loggedListener struct {
	net.Listener
	log *wireLog
}

func (l loggedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &loggedConn{Conn: c, log: l.log, dir: httpstream.Egress}, nil
}

// grpcRun makes n sequential health Check calls on one grpc-go connection,
// each with a deadline (grpc-timeout), every fifth for an unknown service
// (NOT_FOUND, trailers-only). With requestIDs both sides add metadata unique
// to the call (x-request-id), as tracing middleware does. It returns the
// recording and, per call, the index of its first recorded write.
func grpcRun(t *testing.T, n int, requestIDs bool) ([]chunk, []int) {
	t.Helper()
	log := &wireLog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if requestIDs {
		opts = append(opts, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			if id := md.Get("x-request-id"); len(id) == 1 {
				if err := grpc.SetHeader(ctx, metadata.Pairs("x-request-id", "srv-"+id[0])); err != nil {
					return nil, err
				}
			}
			return h(ctx, req)
		}))
	}
	srv := grpc.NewServer(opts...)
	hs := health.NewServer()
	hs.SetServingStatus("app", grpc_health_v1.HealthCheckResponse_SERVING)
	grpc_health_v1.RegisterHealthServer(srv, hs)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(loggedListener{Listener: ln, log: log}) }()
	defer func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return &loggedConn{Conn: c, log: log, dir: httpstream.Ingress}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := grpc_health_v1.NewHealthClient(cc)
	starts := make([]int, n)
	for i := range n {
		starts[i] = log.len()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if requestIDs {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15))
		}
		svc, want := "app", codes.OK
		if i%5 == 4 {
			svc, want = "missing", codes.NotFound
		}
		_, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: svc})
		cancel()
		if status.Code(err) != want {
			t.Fatalf("call %d: %v, want %v", i, err, want)
		}
	}
	cc.Close()
	log.mu.Lock()
	defer log.mu.Unlock()
	return log.chunks, starts
}

// frameStarts returns the offsets at which each direction's frames start
// (after the client's preface), so that a join can be checked to fall on a
// frame boundary as the midway parser requires.
func frameStarts(t *testing.T, chunks []chunk) [2]map[int]bool {
	t.Helper()
	var all [2][]byte
	for _, c := range chunks {
		all[c.dir] = append(all[c.dir], c.data...)
	}
	if !bytes.HasPrefix(all[httpstream.Ingress], []byte(http2.ClientPreface)) {
		t.Fatal("the client's bytes do not start with the preface")
	}
	var out [2]map[int]bool
	for d, b := range all {
		out[d] = map[int]bool{}
		off := 0
		if httpstream.Direction(d) == httpstream.Ingress {
			off = len(http2.ClientPreface)
		}
		for off+9 <= len(b) {
			out[d][off] = true
			off += 9 + int(binary.BigEndian.Uint32(append([]byte{0}, b[off:off+3]...)))
		}
		if off != len(b) {
			t.Fatalf("direction %d: frames end at %d of %d bytes", d, off, len(b))
		}
	}
	return out
}

// joinAt checks that the recording from chunk i on starts at a frame
// boundary in both directions.
func joinAt(t *testing.T, chunks []chunk, i int) {
	t.Helper()
	starts := frameStarts(t, chunks)
	var off [2]int
	for _, c := range chunks[:i] {
		off[c.dir] += len(c.data)
	}
	for d := range off {
		if !starts[d][off[d]] && off[d] != 0 {
			t.Fatalf("joining at write %d: direction %d at byte %d, not a frame start", i, d, off[d])
		}
	}
}

// honestHeaders reports whether every header of got is the truth's at the
// same place, or the same with its name or value (or both) left empty.
func honestHeaders(got, truth string) bool {
	g, w := strings.Split(got, ","), strings.Split(truth, ",")
	if len(g) != len(w) {
		return false
	}
	for i := range g {
		gn, gv, _ := strings.Cut(g[i], "=")
		wn, wv, _ := strings.Cut(w[i], "=")
		if (gn != "" && gn != wn) || (gv != "" && gv != wv) {
			return false
		}
	}
	return true
}

// fieldsKnown counts, per field of recovery, the events whose field equals
// the truth.
func fieldsKnown(got, truth []event) string {
	var m, p, h, st, hd, g int
	for i, e := range got {
		w := truth[i]
		for _, f := range []struct {
			n    *int
			same bool
		}{{&m, e.Method == w.Method}, {&p, e.Path == w.Path}, {&h, e.Host == w.Host}, {&st, e.Status == w.Status},
			{&hd, e.Headers == w.Headers}, {&g, e.GRPC == w.GRPC && e.GRPCCode == w.GRPCCode}} {
			if f.same {
				*f.n++
			}
		}
	}
	pct := func(k int) string { return fmt.Sprintf("%.0f%%", 100*float64(k)/float64(len(got))) }
	return fmt.Sprintf("method %s, path %s, host %s, status %s, all headers %s, grpc status %s", pct(m), pct(p), pct(h), pct(st), pct(hd), pct(g))
}

// TestMidwayJoinOfARealGRPCGoConnection joins a long-lived grpc-go
// connection at call 100 of 1500: no event may differ from the full parse
// except by empty fields, every event lacking a field is partial, and the
// figures are logged (BENCHMARKS.md quotes them). The tables are never
// rebuilt on grpc-go's connections: x/net's encoder (both ends) sends a
// header whose name is in its table as a literal naming the newest entry of
// that name, so a name first sent before the join (grpc-status, te,
// x-request-id, ...) is never sent again and every entry it names stays
// unknown; only emptying the table (a size update to 0) would rebuild it,
// which the synthetic TestMidwayJoinNeverInventsAValueAndStopsMarkingOnceTheTableIsKnown
// covers. So every event stays partial, however long the connection lives.
func TestMidwayJoinOfARealGRPCGoConnection(t *testing.T) {
	const n, join = 1500, 100
	for _, tc := range []struct {
		name       string
		requestIDs bool
	}{
		{"health checks with deadlines", false},
		{"with a request id each way", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chunks, starts := grpcRun(t, n, tc.requestIDs)
			truth, _, tst := feed(chunks, 0)
			if len(truth) != n || tst.Desyncs != 0 {
				t.Fatalf("full parse: %d events for %d calls, %d desyncs", len(truth), n, tst.Desyncs)
			}
			for i, e := range truth {
				if e.Partial || e.Stream != uint32(2*i+1) {
					t.Fatalf("full parse, call %d: %v", i, e)
				}
			}
			joinAt(t, chunks, starts[join])
			got := midwayFeed(chunks[starts[join]:])
			for i := range got {
				if i < len(truth)-join && !honestHeaders(got[i].Headers, truth[join+i].Headers) {
					t.Errorf("call %d: headers %q, truth %q: invented", join+i, got[i].Headers, truth[join+i].Headers)
				}
			}
			frac, partial := recovery(t, got, truth[join:])
			t.Logf("grpc-go, joined at call %d of %d: %.0f%% of fields recovered (%s), %d of %d events partial",
				join, n, 100*frac, fieldsKnown(got, truth[join:]), partial, len(got))
			if partial != len(got) {
				t.Errorf("%d of %d events partial, want all (the tables are never known)", partial, len(got))
			}
		})
	}
}
