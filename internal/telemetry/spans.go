package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/boxtap/boxtap/output"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// SpanOptions configure the OTLP exporter. Everything not given here comes
// from the OTEL_EXPORTER_OTLP_* environment variables, which the OTel SDK's
// exporters read (headers, TLS certificates, compression, timeout).
type SpanOptions struct {
	Endpoint string   // URL, e.g. http://collector:4317; "" uses OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
	Protocol string   // "grpc" or "http/protobuf"; "" uses OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL, else grpc
	Headers  []string // KEY=VALUE, added to the environment's
	HostName string   // host.name of every resource
	// QueueSize bounds the spans waiting for export; beyond it spans are
	// dropped and counted. Zero means DefaultQueueSize.
	QueueSize int
}

// DefaultQueueSize is how many exchanges wait to be made into spans, and
// how many spans wait for export (in batches), at most.
const DefaultQueueSize = 8192

// Batch limits: a batch goes out when it has maxBatch spans or is
// batchDelay old; an export that takes longer than exportTimeout fails.
const (
	maxBatch      = 512
	batchDelay    = time.Second
	exportTimeout = 10 * time.Second
)

// gatherPause is how long the builder sleeps after emptying its queue.
// Exchanges then gather in the queue, and the tracer's goroutine, which
// would have to wake a builder waiting on the queue for each exchange (a
// futex call, microseconds), only finds it waiting once a pause or so.
const gatherPause = 5 * time.Millisecond

// Spans turns exchanges into spans and exports them in batches. Nothing of
// it runs on the caller's goroutine but a copy: Observe hands a copy of the
// exchange to a bounded queue, which one goroutine (build) drains, making
// and ending the spans with the SDK and gathering them in batches; full
// batches go to a second bounded queue, which the export loop sends. A full
// queue drops and counts, never waits, so neither span building nor a slow
// collector holds up the tracer. One TracerProvider per container carries
// that container's resource; all share the queues and one exporter (one
// connection).
type Spans struct {
	exp     sdktrace.SpanExporter
	in      chan *spanInput // exchanges waiting to be made into spans
	free    sync.Pool       // of *spanInput, for reuse
	batches chan []sdktrace.ReadOnlySpan
	host    string
	// Used by the build goroutine only:
	providers map[string]trace.Tracer // container id -> its tracer
	attrs     []attribute.KeyValue    // a span's attributes while it is built (the SDK copies them)
	addrs     addrStrings
	batch     []sdktrace.ReadOnlySpan // ended spans not yet handed to the export loop
	flush     *time.Timer             // fires when batch is batchDelay old

	// Counts. Every exchange Observe was given ends up exactly once in
	// exported or dropped. accepted counts those that entered the queue;
	// droppedAccepted those of them dropped later (span queue full, export
	// failed, or still pending when Close gave up).
	accepted        atomic.Uint64
	dropped         atomic.Uint64
	exported        atomic.Uint64
	droppedAccepted atomic.Uint64
	// mu orders the late counts against Close giving up: once abandoned,
	// whatever the goroutines still finish is not counted again.
	mu        sync.Mutex
	abandoned bool
	closed    atomic.Bool
	lastErr   atomic.Pointer[string]

	stopBuild, stopExport context.CancelFunc
	built, done           chan struct{}
}

// Enabled reports whether spans were asked for, by flag or environment.
func Enabled(endpoint string) bool {
	return endpoint != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewSpans creates the exporter and starts the build and export
// goroutines; Close ends them. The exporter connects lazily: a collector
// that is down costs drops, not a failed start.
func NewSpans(ctx context.Context, o SpanOptions) (*Spans, error) {
	exp, err := newExporter(ctx, o)
	if err != nil {
		return nil, err
	}
	return startSpans(exp, o), nil
}

// startSpans starts the goroutines that build and export spans to exp.
func startSpans(exp sdktrace.SpanExporter, o SpanOptions) *Spans {
	s := newSpans(exp, o)
	s.start()
	return s
}

// newSpans prepares the queues; start starts the goroutines.
func newSpans(exp sdktrace.SpanExporter, o SpanOptions) *Spans {
	n := o.QueueSize
	if n <= 0 {
		n = DefaultQueueSize
	}
	s := &Spans{exp: exp, in: make(chan *spanInput, n), batches: make(chan []sdktrace.ReadOnlySpan, max(1, n/maxBatch)),
		host: o.HostName, providers: map[string]trace.Tracer{}, attrs: make([]attribute.KeyValue, 0, maxSpanAttrs),
		batch: make([]sdktrace.ReadOnlySpan, 0, maxBatch), flush: time.NewTimer(batchDelay),
		built: make(chan struct{}), done: make(chan struct{})}
	s.flush.Stop()
	s.free.New = func() any { return new(spanInput) }
	return s
}

func (s *Spans) start() {
	// Close stops them, after the tracer stopped: not the caller's context,
	// whose end (a signal) comes before the last exchanges are read.
	buildCtx, stopBuild := context.WithCancel(context.Background())
	exportCtx, stopExport := context.WithCancel(context.Background())
	s.stopBuild, s.stopExport = stopBuild, stopExport
	go s.build(buildCtx)
	go s.loop(exportCtx)
}

func newExporter(ctx context.Context, o SpanOptions) (sdktrace.SpanExporter, error) {
	proto := o.Protocol
	if proto == "" {
		proto = firstEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	headers, err := parseHeaders(o.Headers)
	if err != nil {
		return nil, err
	}
	if o.Endpoint != "" {
		if err := checkEndpoint(o.Endpoint); err != nil {
			return nil, err
		}
	}
	switch proto {
	case "", "grpc":
		var opts []otlptracegrpc.Option
		if o.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(o.Endpoint))
		}
		if len(headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(headers))
		}
		opts = append(opts, otlptracegrpc.WithTimeout(exportTimeout), otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
		return otlptracegrpc.New(ctx, opts...)
	case "http/protobuf":
		var opts []otlptracehttp.Option
		if o.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(tracesURL(o.Endpoint)))
		}
		if len(headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(headers))
		}
		opts = append(opts, otlptracehttp.WithTimeout(exportTimeout), otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
		return otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("--otlp-protocol %q: give grpc or http/protobuf", proto)
	}
}

// checkEndpoint wants an http or https URL with a host.
func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--otlp-endpoint %q: give a URL such as http://127.0.0.1:4317 (https for TLS)", s)
	}
	return nil
}

// tracesURL adds the signal path /v1/traces to an http/protobuf endpoint
// given without a path, as OTEL_EXPORTER_OTLP_ENDPOINT is read.
func tracesURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return s
	}
	u.Path = "/v1/traces"
	return u.String()
}

func parseHeaders(hs []string) (map[string]string, error) {
	if len(hs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		k, v, ok := strings.Cut(h, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--otlp-header %q: give KEY=VALUE, e.g. authorization=Bearer...", h)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// Dropped is how many spans were lost: a queue was full, an export
// failed, or the collector was too slow at exit.
func (s *Spans) Dropped() uint64 { return s.dropped.Load() }

// Exported is how many spans the collector accepted.
func (s *Spans) Exported() uint64 { return s.exported.Load() }

// LastError is the last export error, "" if none.
func (s *Spans) LastError() string {
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// maxProviders bounds the per-container tracers kept; past it they are made
// afresh (cheap: they share the processor and the exporter).
const maxProviders = 4096

// Observe queues a copy of one exchange for its span, without waiting:
// when the queue is full the span is dropped and counted. It may be called
// from any goroutine, until Close.
func (s *Spans) Observe(e *output.Event) {
	if s.closed.Load() || len(s.in) == cap(s.in) {
		s.dropped.Add(1) // full: not even the copy
		return
	}
	x := s.free.Get().(*spanInput)
	x.fill(e)
	s.accepted.Add(1) // before the builder may see it
	select {
	case s.in <- x:
	default: // filled up by another caller meanwhile
		s.accepted.Add(^uint64(0))
		s.dropped.Add(1)
		s.recycle(x)
	}
}

// recycle returns an exchange for reuse, unless a long path grew its
// buffer.
func (s *Spans) recycle(x *spanInput) {
	if cap(x.wire) > maxKeptWire {
		x.wire = nil
	}
	s.free.Put(x)
}

// build makes queued exchanges into spans until ctx ends, then the ones
// still queued, and hands the last batch to the export loop.
func (s *Spans) build(ctx context.Context) {
	defer close(s.built)
	defer s.flush.Stop()
	pause := time.NewTimer(gatherPause)
	defer pause.Stop()
	for {
		select {
		case x := <-s.in:
			s.span(x)
			s.drain()
			pause.Reset(gatherPause)
			select {
			case <-pause.C:
			case <-ctx.Done():
			}
		case <-s.flush.C:
			s.handOff()
		case <-ctx.Done():
			s.drain()
			s.handOff()
			return
		}
	}
}

// drain makes spans of the exchanges queued now.
func (s *Spans) drain() {
	for {
		select {
		case x := <-s.in:
			s.span(x)
		default:
			return
		}
	}
}

// handOff passes the batch to the export loop, or drops it, counted, when
// the loop has too many waiting already (the collector is slow or down).
func (s *Spans) handOff() {
	s.flush.Stop()
	if len(s.batch) == 0 {
		return
	}
	select {
	case s.batches <- s.batch:
		s.batch = make([]sdktrace.ReadOnlySpan, 0, maxBatch)
	default:
		s.settle(0, uint64(len(s.batch)))
		clear(s.batch)
		s.batch = s.batch[:0]
	}
}

// span makes one exchange into an ended span, which the processor queues.
func (s *Spans) span(x *spanInput) {
	tr, ok := s.providers[x.container.ID]
	if !ok {
		if len(s.providers) >= maxProviders {
			clear(s.providers)
		}
		e := output.Event{Container: x.container, Kubernetes: x.kube, ContainerRuntime: x.runtime}
		tp := sdktrace.NewTracerProvider(
			sdktrace.WithResource(ContainerResource(&e, s.host)),
			sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithSpanProcessor(queueProcessor{s}))
		tr = tp.Tracer("github.com/boxtap/boxtap")
		s.providers[x.container.ID] = tr
	}
	m := x.span(string(x.wire), s.attrs, &s.addrs)
	s.attrs = m.Attrs
	s.recycle(x)
	_, sp := tr.Start(context.Background(), m.Name, trace.WithSpanKind(m.Kind),
		trace.WithTimestamp(m.Start), trace.WithAttributes(m.Attrs...))
	if m.Error {
		sp.SetStatus(codes.Error, m.ErrorDesc)
	}
	sp.End(trace.WithTimestamp(m.End))
}

// settle counts exported and dropped spans of accepted exchanges, unless
// Close has given up on them and counted them already.
func (s *Spans) settle(exported, dropped uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.abandoned {
		return
	}
	s.exported.Add(exported)
	s.dropped.Add(dropped)
	s.droppedAccepted.Add(dropped)
}

// queueProcessor gathers ended spans in the builder's batch (the SDK
// calls it on the goroutine that ends the span: the builder). The SDK's
// batch processor drops silently when full; this one counts (handOff).
type queueProcessor struct{ s *Spans }

func (p queueProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p queueProcessor) OnEnd(sp sdktrace.ReadOnlySpan) {
	s := p.s
	s.batch = append(s.batch, sp)
	switch len(s.batch) {
	case 1:
		s.flush.Reset(batchDelay)
	case maxBatch:
		s.handOff()
	}
}
func (p queueProcessor) Shutdown(context.Context) error   { return nil }
func (p queueProcessor) ForceFlush(context.Context) error { return nil }

// loop exports the batches handed to it until ctx ends, then the ones
// still waiting.
func (s *Spans) loop(ctx context.Context) {
	defer close(s.done)
	for {
		select {
		case b := <-s.batches:
			s.export(b)
		case <-ctx.Done():
			for {
				select {
				case b := <-s.batches:
					s.export(b)
				default:
					return
				}
			}
		}
	}
}

// export sends one batch.
func (s *Spans) export(batch []sdktrace.ReadOnlySpan) {
	ctx, cancel := context.WithTimeout(context.Background(), exportTimeout)
	err := s.exp.ExportSpans(ctx, batch)
	cancel()
	if err != nil {
		s.settle(0, uint64(len(batch)))
		msg := err.Error()
		s.lastErr.Store(&msg)
	} else {
		s.settle(uint64(len(batch)), 0)
	}
}

// Close makes spans of the queued exchanges, exports them and shuts the
// exporter down, within ctx. Call it once the callers of Observe are done.
// A collector too slow for that costs the spans not yet delivered: they
// are counted as dropped, and boxtap exits anyway.
func (s *Spans) Close(ctx context.Context) error {
	s.closed.Store(true)
	s.stopBuild()
	ok := s.wait(ctx, s.built)
	s.stopExport() // after the builder's last hand-off, or now if Close gave up
	if !ok || !s.wait(ctx, s.done) {
		return nil
	}
	if err := s.exp.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("closing the OTLP exporter: %w", err)
	}
	return nil
}

// wait waits for a goroutine to end. If ctx ends first, whatever was
// accepted and not yet exported or dropped is lost with this process:
// it is counted as dropped, once.
func (s *Spans) wait(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if pending := s.accepted.Load() - s.exported.Load() - s.droppedAccepted.Load(); pending > 0 {
		s.dropped.Add(pending)
		s.droppedAccepted.Add(pending)
	}
	s.abandoned = true
	msg := "collector too slow at exit"
	s.lastErr.Store(&msg)
	return false
}

// Summary is the exit line's part about spans.
func (s *Spans) Summary() string {
	msg := fmt.Sprintf("%d spans exported, %d dropped", s.Exported(), s.Dropped())
	if e := s.LastError(); e != "" && s.Dropped() > 0 {
		msg += " (last export error: " + e + ")"
	}
	return msg
}
