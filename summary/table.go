package summary

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/boxtap/boxtap/output"
)

// MaxRoutes is how many distinct routes a container gets rows for; the
// exchanges of any further route are counted under OtherRoute.
const MaxRoutes = 1000

// Latency histograms record microseconds from 1 µs to one hour with two
// significant digits: percentiles are within 1% of the exact value, and a
// row's histogram takes about 26 KiB (three digits would take 190 KiB).
const (
	histLowest  = 1
	histHighest = int64(time.Hour / time.Microsecond)
	histDigits  = 2
)

// Key names a row.
type Key struct {
	Container string `json:"container"`
	Method    string `json:"method"`
	Route     string `json:"route"`
	// Class is the status class: "2xx", "5xx", ...
	Class string `json:"status"`
}

// Row is one line of the table.
type Row struct {
	Key
	Count uint64  `json:"count"`
	Rate  float64 `json:"rate_per_s"`
	// Latencies in nanoseconds; zero when no exchange of the row had a
	// known latency (its request was not seen). Percentiles are the HDR
	// histogram's (the highest value of their bucket: at most 1% above the
	// exact value, in µs); Max is exact.
	P50 int64 `json:"p50_ns"`
	P90 int64 `json:"p90_ns"`
	P99 int64 `json:"p99_ns"`
	Max int64 `json:"max_ns"`
	// Bytes sums the declared response body lengths (Content-Length);
	// responses of unknown length (chunked, close-delimited) add nothing.
	Bytes uint64 `json:"bytes"`
}

// Table aggregates exchanges. It is safe for concurrent use: the tracer
// records while a timer prints.
type Table struct {
	mu     sync.Mutex
	start  time.Time
	rows   map[Key]*acc
	routes map[string]map[string]struct{} // container -> routes that have rows
	max    int
}

type acc struct {
	count uint64
	bytes uint64
	max   time.Duration // exact, unlike the histogram's buckets
	hist  *hdrhistogram.Histogram
}

// New returns an empty table; rates count from start. maxRoutes <= 0 means
// MaxRoutes.
func New(start time.Time, maxRoutes int) *Table {
	if maxRoutes <= 0 {
		maxRoutes = MaxRoutes
	}
	return &Table{start: start, rows: make(map[Key]*acc), routes: make(map[string]map[string]struct{}), max: maxRoutes}
}

// Start is when the table began counting.
func (t *Table) Start() time.Time { return t.start }

// Record adds one exchange.
func (t *Table) Record(e *output.Event) {
	k := Key{Container: e.Container.Name, Method: "-", Route: "-", Class: statusClass(e.Response.StatusCode)}
	if k.Container == "" {
		k.Container = e.Container.ID
	}
	if rq := e.Request; rq != nil {
		k.Method = rq.Method
		k.Route = CollapseRoute(rq.URIPath)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	k.Route = t.admitRoute(k.Container, k.Route)
	a := t.rows[k]
	if a == nil {
		k.Method = strings.Clone(k.Method) // it may share a parser buffer
		a = &acc{hist: hdrhistogram.New(histLowest, histHighest, histDigits)}
		t.rows[k] = a
	}
	a.count++
	if n := e.Response.ContentLength; n > 0 {
		a.bytes += uint64(n)
	}
	if e.LatencyKnown {
		a.max = max(a.max, e.Latency)
		us := max(int64(e.Latency/time.Microsecond), histLowest)
		_ = a.hist.RecordValue(min(us, histHighest)) // in range: cannot fail
	}
}

// admitRoute returns route, or OtherRoute once the container has MaxRoutes
// routes and this is a new one.
func (t *Table) admitRoute(container, route string) string {
	rs := t.routes[container]
	if rs == nil {
		rs = make(map[string]struct{})
		t.routes[container] = rs
	}
	if _, ok := rs[route]; ok {
		return route
	}
	if len(rs) >= t.max {
		return OtherRoute
	}
	route = strings.Clone(route) // it may share a parser buffer
	rs[route] = struct{}{}
	return route
}

func statusClass(code int) string {
	if code < 100 || code > 999 {
		return strconv.Itoa(code)
	}
	return string(rune('0'+code/100)) + "xx"
}

// Rows returns the rows, sorted by container, route, method and class, as
// of now (for rates).
func (t *Table) Rows(now time.Time) []Row {
	t.mu.Lock()
	defer t.mu.Unlock()
	secs := now.Sub(t.start).Seconds()
	rows := make([]Row, 0, len(t.rows))
	for k, a := range t.rows {
		r := Row{Key: k, Count: a.count, Bytes: a.bytes}
		if secs > 0 {
			r.Rate = float64(a.count) / secs
		}
		if a.hist.TotalCount() > 0 {
			us := a.hist.ValueAtPercentilesSlice([]float64{50, 90, 99})
			// A bucket's highest value may exceed the exact maximum; no
			// percentile can.
			r.Max = int64(a.max)
			r.P50, r.P90, r.P99 = min(us[0]*1000, r.Max), min(us[1]*1000, r.Max), min(us[2]*1000, r.Max)
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(a.Container, b.Container), cmp.Compare(a.Route, b.Route),
			cmp.Compare(a.Method, b.Method), cmp.Compare(a.Class, b.Class))
	})
	return rows
}

// WriteText writes the table as aligned columns under a header line.
func (t *Table) WriteText(w io.Writer, now time.Time) error {
	rows := t.Rows(now)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CONTAINER\tMETHOD\tROUTE\tSTATUS\tCOUNT\tRATE/s\tP50\tP90\tP99\tMAX\tBYTES\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.1f\t%s\t%s\t%s\t%s\t%d\n",
			r.Container, r.Method, r.Route, r.Class, r.Count, r.Rate,
			latency(r.P50, r.Count), latency(r.P90, r.Count), latency(r.P99, r.Count), latency(r.Max, r.Count), r.Bytes)
	}
	return tw.Flush()
}

// latency prints a percentile, "-" when no latency was known.
func latency(ns int64, count uint64) string {
	if ns == 0 || count == 0 {
		return "-"
	}
	return time.Duration(ns).Round(time.Microsecond).String()
}

// jsonTable is the --summary-json document.
type jsonTable struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Seconds float64   `json:"seconds"`
	Rows    []Row     `json:"rows"`
}

// WriteJSON writes the table as one JSON document.
func (t *Table) WriteJSON(w io.Writer, now time.Time) error {
	doc := jsonTable{Start: t.start, End: now, Seconds: now.Sub(t.start).Seconds(), Rows: t.Rows(now)}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("writing the summary as JSON: %w", err)
	}
	return nil
}
