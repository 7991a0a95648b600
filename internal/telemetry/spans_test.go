package telemetry

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"unsafe"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// gateExporter holds every export until open is closed, then takes the
// batch (records its spans' url.path) or, if refuse is set, fails it.
type gateExporter struct {
	open    chan struct{}
	entered chan struct{} // closed at the first export
	once    sync.Once
	refuse  bool
	mu      sync.Mutex
	paths   []string
	calls   int
}

func newGateExporter() *gateExporter {
	return &gateExporter{open: make(chan struct{}), entered: make(chan struct{})}
}

func (g *gateExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	g.once.Do(func() { close(g.entered) })
	<-g.open // not ctx: a collector that does not answer at all
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	if g.refuse {
		return fmt.Errorf("refused")
	}
	for _, sp := range spans {
		for _, a := range sp.Attributes() {
			if a.Key == "url.path" {
				g.paths = append(g.paths, a.Value.AsString())
			}
		}
	}
	return nil
}

func (g *gateExporter) Shutdown(context.Context) error { return nil }

func (g *gateExporter) exported() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.paths...)
}

// observeN gives s n exchanges with distinct paths, from this goroutine.
// If Observe waited for the builder or the exporter, the test would hang
// here: the exporter does not return until the test opens it.
func observeN(s *Spans, n int) {
	for i := range n {
		s.Observe(exchange("web", "GET", fmt.Sprintf("/r/%d", i), 200, 0))
	}
}

// With the exporter stuck, the exchange queue, the builder (one exchange
// and one batch being gathered), the batch queue and the export under way
// hold at most queue + 1 + 3 batches (queue/maxBatch rounds up to one batch
// waiting), so most of n are dropped; every one is either exported or
// dropped, counted once.
func TestObserveNeverWaitsForAStuckExporterAndCountsEveryDrop(t *testing.T) {
	const queue, n = 4, 5000
	exp := newGateExporter()
	s := startSpans(exp, SpanOptions{QueueSize: queue})
	observeN(s, n)
	close(exp.open) // the collector answers again
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := exp.exported()
	if s.Exported() != uint64(len(got)) {
		t.Errorf("Exported() = %d, the exporter took %d", s.Exported(), len(got))
	}
	if s.Exported()+s.Dropped() != n {
		t.Errorf("%d exported + %d dropped, want %d in all", s.Exported(), s.Dropped(), n)
	}
	if held := uint64(queue + 1 + 3*maxBatch); s.Dropped() < n-held {
		t.Errorf("%d dropped; the queues hold %d, so at least %d must be", s.Dropped(), held, n-held)
	}
	if s.Exported() == 0 {
		t.Error("nothing exported once the collector answered")
	}
	// The exported spans came through the queues in order, each once,
	// starting with the first (which always finds room).
	last := -1
	for _, p := range got {
		var i int
		if _, err := fmt.Sscanf(p, "/r/%d", &i); err != nil || i <= last {
			t.Fatalf("exported url.path %q after /r/%d: not in order, or twice", p, last)
		}
		last = i
	}
	if len(got) > 0 && got[0] != "/r/0" {
		t.Errorf("first span exported is %s, want /r/0", got[0])
	}
	if sum := s.Summary(); sum != fmt.Sprintf("%d spans exported, %d dropped", s.Exported(), s.Dropped()) {
		t.Errorf("summary %q", sum)
	}
}

// A builder that does not build at all (not started yet): Observe still
// returns at once, the queue keeps exactly its size, and the rest is
// dropped and counted.
func TestObserveNeverWaitsForTheBuilder(t *testing.T) {
	const queue, n = 4, 1000
	exp := newGateExporter()
	close(exp.open)
	s := newSpans(exp, SpanOptions{QueueSize: queue})
	observeN(s, n) // would hang if Observe waited for room
	if s.Dropped() != n-queue {
		t.Errorf("%d dropped with the builder stalled, want %d", s.Dropped(), n-queue)
	}
	s.start()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := exp.exported()
	want := []string{"/r/0", "/r/1", "/r/2", "/r/3"}
	if fmt.Sprint(got) != fmt.Sprint(want) || s.Exported() != queue || s.Dropped() != n-queue {
		t.Errorf("exported %v (Exported %d, Dropped %d); want %v, %d dropped", got, s.Exported(), s.Dropped(), want, n-queue)
	}
}

// A collector that never answers: Close gives up when its context ends,
// counts what was pending as dropped, and what the goroutines finish later
// is not counted again.
func TestCloseGivesUpOnAStuckExporterWithExactCounts(t *testing.T) {
	const n = 3000
	exp := newGateExporter()
	exp.refuse = true
	s := startSpans(exp, SpanOptions{QueueSize: 16})
	observeN(s, n)
	<-exp.entered // a batch (flushed after a second at the latest) is stuck in the exporter
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	exported, dropped := s.Exported(), s.Dropped()
	if exported != 0 || dropped != n {
		t.Errorf("after Close: %d exported, %d dropped; want 0 and %d", exported, dropped, n)
	}
	if s.LastError() == "" {
		t.Error("no error recorded for the spans lost at exit")
	}
	close(exp.open) // the stuck export now fails, and the goroutines end
	<-s.built
	<-s.done
	if s.Exported() != exported || s.Dropped() != dropped {
		t.Errorf("counts changed after Close: %d exported, %d dropped; were %d, %d", s.Exported(), s.Dropped(), exported, dropped)
	}
	// Observe after Close drops and counts, never queues.
	s.Observe(exchange("web", "GET", "/late", 200, 0))
	if s.Dropped() != n+1 {
		t.Errorf("%d dropped after a late exchange, want %d", s.Dropped(), n+1)
	}
}

// The queued copy keeps the exchange's text after the parser's buffer is
// rewritten (as it is once Observe returns).
func TestObservedExchangeOutlivesTheParsersBuffer(t *testing.T) {
	exp := newGateExporter()
	close(exp.open)
	s := startSpans(exp, SpanOptions{})
	buf := []byte("/alpha?x=1 PURGE")
	e := exchange("web", unsafe.String(&buf[11], 5), unsafe.String(unsafe.SliceData(buf), 10), 200, 0)
	e.Response.Protocol = "HTTP/1.1"
	s.Observe(e)
	copy(buf, "/omega?y=2 XXXXX")
	e.Request.URIPath = ""
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := exp.exported(); len(got) != 1 || got[0] != "/alpha" {
		t.Errorf("exported url.path %q, want [/alpha]", got)
	}
}

// Every exchange reaches the collector as a span when the queues have room,
// whatever goroutine observes it.
func TestObserveFromManyGoroutinesExportsEachOnce(t *testing.T) {
	const writers, each = 4, 500
	exp := newGateExporter()
	close(exp.open)
	s := startSpans(exp, SpanOptions{QueueSize: writers * each})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				s.Observe(exchange("web", "GET", fmt.Sprintf("/w%d/%d", w, i), 200, 0))
			}
		})
	}
	wg.Wait()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := exp.exported()
	seen := map[string]bool{}
	for _, p := range got {
		seen[p] = true
	}
	if len(got) != writers*each || len(seen) != writers*each || s.Exported() != writers*each || s.Dropped() != 0 {
		t.Errorf("%d spans (%d distinct), Exported %d, Dropped %d; want %d, none dropped", len(got), len(seen), s.Exported(), s.Dropped(), writers*each)
	}
}
