package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/runtime/container"
	"github.com/boxtap/boxtap/summary"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ContainerStats are one traced container's counters, read at each scrape.
type ContainerStats struct {
	Container   string // the container label: its name, else its short id
	Events      uint64 // events written
	LostRecords uint64 // capture records the kernel dropped (ring buffer full)
	Evicted     uint64 // states dropped to stay within the memory budget
	Filtered    uint64 // exchanges the filter left out
}

// Metrics holds boxtap's Prometheus metrics. Observe is called by the
// tracer for each exchange; the per-container counters and exporter drops
// are read from their owners at scrape time, so they cost nothing per event.
type Metrics struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
	routes   *routeLimiter
	// series caches the histogram child of each label set already seen, so
	// that an exchange of a known series costs one map lookup and the
	// observation: no label hashing, validation or string building.
	mu     sync.Mutex
	series map[seriesKey]prometheus.Observer
	// last is the series of the previous exchange (its key's strings are
	// the cached copies), compared before the map is hashed.
	last    seriesKey
	lastObs prometheus.Observer
}

// seriesKey is what decides an exchange's labels: the container label, the
// direction, the method label, the route and the status code. Its strings
// are copies (an event's strings may alias the parser's buffers).
type seriesKey struct {
	container, method, route string
	dir                      output.Direction
	status                   int
}

// maxSeries bounds the cached label sets; past it the cache starts afresh
// (the series themselves stay in the histogram).
const maxSeries = 16384

// durationBuckets cover 0.5 ms to 10 s, the span of web request latencies.
var durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// NewMetrics registers the metrics. stats lists the traced containers;
// spans, if not nil, supplies the OTLP exporter's counts.
func NewMetrics(stats func() []ContainerStats, spans *Spans) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "boxtap_http_request_duration_seconds",
			Help:    "Time from the request's first byte to the response's first byte, per traced exchange with a paired request. Label container is the traced container; its exchanges as client are counted too (direction).",
			Buckets: durationBuckets,
		}, []string{"container", "direction", "method", "route", "status_code"}),
		routes: newRouteLimiter(summary.MaxRoutes),
		series: map[seriesKey]prometheus.Observer{},
	}
	m.reg.MustRegister(m.duration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		containerCollector{stats: stats})
	if spans != nil {
		m.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "boxtap_otlp_spans_exported_total", Help: "Spans the OTLP exporter delivered."},
				func() float64 { return float64(spans.Exported()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "boxtap_otlp_spans_dropped_total", Help: "Spans dropped because a queue was full (span building or export behind) or the collector refused or did not answer."},
				func() float64 { return float64(spans.Dropped()) }))
	}
	return m
}

// Observe records one exchange that passed the filter.
func (m *Metrics) Observe(e *output.Event) {
	if !e.LatencyKnown || e.Request == nil {
		return // no duration to record; the event still counts in boxtap_events_total
	}
	m.observer(e).Observe(e.Latency.Seconds())
}

// observer returns the histogram child of the exchange's labels. A known
// series is found with the route collapsed but not yet checked against the
// per-container limit: only routes the limit admitted are cached, so a hit
// is a route the limiter would return as it is.
func (m *Metrics) observer(e *output.Event) prometheus.Observer {
	c := ContainerLabel(e.Container.ID, e.Container.Name)
	k := seriesKey{container: c, method: Method(e.Request.Method), route: summary.CollapseRoute(e.Request.URIPath),
		dir: e.Direction, status: e.Response.StatusCode}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastObs != nil && k == m.last {
		return m.lastObs // a busy series: no hashing at all
	}
	if o, ok := m.series[k]; ok {
		m.last, m.lastObs = k, o
		return o
	}
	route := m.routes.route(c, e.Request.URIPath)
	o := m.duration.WithLabelValues(strings.Clone(c), e.Direction.String(), k.method, strings.Clone(route), StatusCode(k.status))
	if route == k.route {
		if len(m.series) >= maxSeries {
			clear(m.series)
		}
		k.container, k.route = strings.Clone(k.container), strings.Clone(k.route)
		m.series[k] = o
		m.last, m.lastObs = k, o
	}
	return o
}

// ContainerLabel names a container in labels: its name, else its short id.
func ContainerLabel(id, name string) string {
	if name != "" {
		return name
	}
	return container.Info{ID: id}.ShortID()
}

// Serve listens on addr now (so a bad address fails at start) and serves
// /metrics until ctx ends.
func (m *Metrics) Serve(ctx context.Context, addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w; give a free HOST:PORT, e.g. 127.0.0.1:9464", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener failed after start; nothing to report it to but the scraper
		}
	}()
	return func() {
		shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
		<-done
	}, nil
}

// containerCollector reads the per-container counters at scrape time.
type containerCollector struct{ stats func() []ContainerStats }

var (
	descEvents   = prometheus.NewDesc("boxtap_events_total", "Events boxtap wrote for the container.", []string{"container"}, nil)
	descLost     = prometheus.NewDesc("boxtap_lost_records_total", "Capture records of the container the kernel dropped (ring buffer full).", []string{"container"}, nil)
	descEvicted  = prometheus.NewDesc("boxtap_evicted_total", "Connection states and buffered segments of the container dropped to stay within the memory budget.", []string{"container"}, nil)
	descFiltered = prometheus.NewDesc("boxtap_filtered_total", "Exchanges of the container the filters left out.", []string{"container"}, nil)
)

func (c containerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descEvents
	ch <- descLost
	ch <- descEvicted
	ch <- descFiltered
}

func (c containerCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[string]bool{}
	for _, s := range c.stats() {
		if seen[s.Container] {
			continue // two containers of one name: keep the scrape valid
		}
		seen[s.Container] = true
		ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(s.Events), s.Container)
		ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(s.LostRecords), s.Container)
		ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(s.Evicted), s.Container)
		ch <- prometheus.MustNewConstMetric(descFiltered, prometheus.CounterValue, float64(s.Filtered), s.Container)
	}
}
