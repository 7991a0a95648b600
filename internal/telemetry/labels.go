// Package telemetry feeds traced exchanges to Prometheus (a request-duration
// histogram and per-container counters) and to an OpenTelemetry collector
// (one span per exchange, over OTLP). The tracer hands it each exchange that
// passed the filter; nothing here may block the tracer.
package telemetry

import (
	"strconv"
	"strings"
	"sync"

	"github.com/boxtap/boxtap/summary"
)

// OtherMethod stands for methods outside the known set, as the HTTP
// semantic conventions prescribe: label values come from the wire and must
// stay few.
const OtherMethod = "_OTHER"

// knownMethods are the methods of RFC 9110 and RFC 5789 (PATCH), the set the
// semantic conventions name.
var knownMethods = map[string]string{
	"CONNECT": "CONNECT", "DELETE": "DELETE", "GET": "GET", "HEAD": "HEAD",
	"OPTIONS": "OPTIONS", "PATCH": "PATCH", "POST": "POST", "PUT": "PUT", "TRACE": "TRACE",
}

// Method returns m if it is a known method (case-sensitive, as methods
// are), else OtherMethod.
func Method(m string) string {
	if k, ok := knownMethods[m]; ok {
		return k
	}
	return OtherMethod
}

// StatusCode returns the status code as a label: three digits from 100 to
// 599, else "other" (a malformed response).
func StatusCode(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}

// routeLimiter collapses request paths into routes as the summary table does
// and bounds how many distinct routes each container gets: beyond the limit
// a container's new routes read summary.OtherRoute. Containers are bounded
// too (maxContainers), so the state cannot grow without end in a long watch.
type routeLimiter struct {
	mu     sync.Mutex
	limit  int
	routes map[string]map[string]struct{} // container -> routes seen
}

// maxContainers bounds the containers whose routes are remembered; when it
// is reached the memory starts afresh (labels already exported stay valid:
// a route seen again is admitted again while under the limit).
const maxContainers = 4096

func newRouteLimiter(limit int) *routeLimiter {
	return &routeLimiter{limit: limit, routes: map[string]map[string]struct{}{}}
}

// route returns the label for uri in container.
func (l *routeLimiter) route(container, uri string) string {
	r := summary.CollapseRoute(uri)
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := l.routes[container]
	if seen == nil {
		if len(l.routes) >= maxContainers {
			clear(l.routes)
		}
		seen = map[string]struct{}{}
		l.routes[strings.Clone(container)] = seen
	}
	if _, ok := seen[r]; ok {
		return r
	}
	if len(seen) >= l.limit {
		return summary.OtherRoute
	}
	// r may alias the caller's buffers (an event's request path): keep a copy.
	r = strings.Clone(r)
	seen[r] = struct{}{}
	return r
}
