package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
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

// DefaultQueueSize is how many spans wait for export at most.
const DefaultQueueSize = 8192

// Batch limits: a batch goes out when it has maxBatch spans or is
// batchDelay old; an export that takes longer than exportTimeout fails.
const (
	maxBatch      = 512
	batchDelay    = time.Second
	exportTimeout = 10 * time.Second
)

// Spans turns exchanges into spans and exports them in batches from a
// bounded queue. One TracerProvider per container carries that container's
// resource; all share one queue and one exporter (one connection).
type Spans struct {
	exp       sdktrace.SpanExporter
	queue     chan sdktrace.ReadOnlySpan
	host      string
	providers map[string]trace.Tracer // container id -> its tracer; used by the tracer goroutine only
	attrs     []attribute.KeyValue    // a span's attributes while it is built (the SDK copies them); tracer goroutine only
	addrs     addrStrings             // tracer goroutine only
	queued    atomic.Uint64           // spans accepted into the queue
	dropped   atomic.Uint64
	exported  atomic.Uint64
	// droppedAfterQueue counts the queued spans that failed to export.
	droppedAfterQueue atomic.Uint64
	lastErr           atomic.Pointer[string]
	stop              chan struct{}
	done              chan struct{}
}

// Enabled reports whether spans were asked for, by flag or environment.
func Enabled(endpoint string) bool {
	return endpoint != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewSpans creates the exporter and starts the export loop; Close ends it.
// The exporter connects lazily: a collector that is down costs drops, not
// a failed start.
func NewSpans(ctx context.Context, o SpanOptions) (*Spans, error) {
	exp, err := newExporter(ctx, o)
	if err != nil {
		return nil, err
	}
	n := o.QueueSize
	if n <= 0 {
		n = DefaultQueueSize
	}
	s := &Spans{exp: exp, queue: make(chan sdktrace.ReadOnlySpan, n), host: o.HostName,
		providers: map[string]trace.Tracer{}, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s, nil
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

// Dropped is how many spans were lost: queue full, or an export failed.
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

// Observe turns one exchange into a span and queues it. Called from the
// tracer goroutine only.
func (s *Spans) Observe(e *output.Event) {
	tr, ok := s.providers[e.Container.ID]
	if !ok {
		if len(s.providers) >= maxProviders {
			clear(s.providers)
		}
		tp := sdktrace.NewTracerProvider(
			sdktrace.WithResource(ContainerResource(e, s.host)),
			sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithSpanProcessor(queueProcessor{s}))
		tr = tp.Tracer("github.com/boxtap/boxtap")
		s.providers[e.Container.ID] = tr
	}
	m := spanOf(e, s.attrs, &s.addrs)
	s.attrs = m.Attrs
	_, sp := tr.Start(context.Background(), m.Name, trace.WithSpanKind(m.Kind),
		trace.WithTimestamp(m.Start), trace.WithAttributes(m.Attrs...))
	if m.Error {
		sp.SetStatus(codes.Error, m.ErrorDesc)
	}
	sp.End(trace.WithTimestamp(m.End))
}

// queueProcessor hands ended spans to the bounded queue without waiting.
// The SDK's batch processor drops silently when full; this one counts.
type queueProcessor struct{ s *Spans }

func (p queueProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p queueProcessor) OnEnd(sp sdktrace.ReadOnlySpan) {
	select {
	case p.s.queue <- sp:
		p.s.queued.Add(1)
	default:
		p.s.dropped.Add(1)
	}
}
func (p queueProcessor) Shutdown(context.Context) error   { return nil }
func (p queueProcessor) ForceFlush(context.Context) error { return nil }

// loop batches queued spans and exports them until Close.
func (s *Spans) loop() {
	defer close(s.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, maxBatch)
	tick := time.NewTicker(batchDelay)
	defer tick.Stop()
	for {
		select {
		case sp := <-s.queue:
			batch = append(batch, sp)
			if len(batch) >= maxBatch {
				batch = s.export(batch)
			}
		case <-tick.C:
			batch = s.export(batch)
		case <-s.stop:
			// Drain what is queued, then send it.
			for {
				select {
				case sp := <-s.queue:
					batch = append(batch, sp)
					if len(batch) >= maxBatch {
						batch = s.export(batch)
					}
				default:
					s.export(batch)
					return
				}
			}
		}
	}
}

// export sends one batch and returns the emptied slice.
func (s *Spans) export(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	if len(batch) == 0 {
		return batch
	}
	ctx, cancel := context.WithTimeout(context.Background(), exportTimeout)
	err := s.exp.ExportSpans(ctx, batch)
	cancel()
	if err != nil {
		s.dropped.Add(uint64(len(batch)))
		s.droppedAfterQueue.Add(uint64(len(batch)))
		msg := err.Error()
		s.lastErr.Store(&msg)
	} else {
		s.exported.Add(uint64(len(batch)))
	}
	clear(batch)
	return batch[:0]
}

// Close exports what is queued and shuts the exporter down, within ctx. A
// collector too slow for that costs the spans not yet delivered: they are
// counted as dropped, and boxtap exits anyway.
func (s *Spans) Close(ctx context.Context) error {
	close(s.stop)
	select {
	case <-s.done:
	case <-ctx.Done():
		// The export loop is still waiting for the collector; whatever it
		// has not delivered is lost with this process.
		if pending := s.queued.Load() - s.exported.Load() - s.droppedAfterQueue.Load(); pending > 0 {
			s.dropped.Add(pending)
			s.droppedAfterQueue.Add(pending)
		}
		msg := "collector too slow at exit"
		s.lastErr.Store(&msg)
		return nil
	}
	if err := s.exp.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("closing the OTLP exporter: %w", err)
	}
	return nil
}

// Summary is the exit line's part about spans.
func (s *Spans) Summary() string {
	msg := fmt.Sprintf("%d spans exported, %d dropped", s.Exported(), s.Dropped())
	if e := s.LastError(); e != "" && s.Dropped() > 0 {
		msg += " (last export error: " + e + ")"
	}
	return msg
}
