package output

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// FilterSpec is what a person asks for on the command line (or in a hook
// annotation). Within one field any value may match (OR); across fields
// every non-empty field must match (AND).
type FilterSpec struct {
	// Status holds status codes ("404") and classes ("5xx").
	Status []string
	// Method holds request methods ("GET"), compared case-insensitively.
	Method []string
	// Path holds globs (path.Match) matched on the request path as sent,
	// before redaction and without its query string. A glob that matches
	// a leading part of the path ending before a '/' matches too, so
	// "/api/*" selects everything under /api/.
	Path []string
	// Host holds globs matched on the request's Host header, with and
	// without its port, case-insensitively.
	Host []string
	// MinLatency keeps only exchanges at least this slow (0: any).
	MinLatency time.Duration
	// Direction is "egress", "ingress" or "" (both).
	Direction string
}

// Set adds one key=value option, named as the command-line flag without
// its dashes (status, method, path, host, min-latency, direction), as hook
// annotations carry them. It reports false for a key that is no filter.
func (s *FilterSpec) Set(key, value string) (bool, error) {
	switch key {
	case "status":
		s.Status = append(s.Status, value)
	case "method":
		s.Method = append(s.Method, value)
	case "path":
		s.Path = append(s.Path, value)
	case "host":
		s.Host = append(s.Host, value)
	case "min-latency":
		d, err := time.ParseDuration(value)
		if err != nil {
			return true, fmt.Errorf("min-latency %q: give a duration such as 100ms", value)
		}
		s.MinLatency = d
	case "direction":
		s.Direction = value
	default:
		return false, nil
	}
	return true, nil
}

// Args renders the spec as command-line flags (--status=5xx ...), for a
// child boxtap process.
func (s *FilterSpec) Args() []string {
	var a []string
	for _, l := range []struct {
		flag string
		vals []string
	}{{"status", s.Status}, {"method", s.Method}, {"path", s.Path}, {"host", s.Host}} {
		for _, v := range l.vals {
			a = append(a, "--"+l.flag+"="+v)
		}
	}
	if s.MinLatency > 0 {
		a = append(a, "--min-latency="+s.MinLatency.String())
	}
	if s.Direction != "" {
		a = append(a, "--direction="+s.Direction)
	}
	return a
}

// Filter decides which exchanges are written. The zero Filter and a nil
// *Filter match everything. Match does not allocate.
type Filter struct {
	statuses   []statusRange
	methods    []string
	paths      []string
	hosts      []string
	minLatency time.Duration
	direction  Direction
	active     bool
}

// statusRange is an inclusive range of status codes: one code or a class.
type statusRange struct{ lo, hi int }

// NewFilter checks a spec and returns its filter; the error names the bad
// value and what to write instead.
func NewFilter(s FilterSpec) (*Filter, error) {
	f := &Filter{minLatency: s.MinLatency}
	for _, v := range s.Status {
		r, err := parseStatus(v)
		if err != nil {
			return nil, err
		}
		f.statuses = append(f.statuses, r)
	}
	for _, m := range s.Method {
		m = strings.TrimSpace(m)
		if m == "" || strings.ContainsAny(m, " \t/") {
			return nil, fmt.Errorf("--method %q: give a request method such as GET or POST", m)
		}
		f.methods = append(f.methods, strings.ToUpper(m))
	}
	var err error
	if f.paths, err = checkGlobs("--path", s.Path, false); err != nil {
		return nil, err
	}
	if f.hosts, err = checkGlobs("--host", s.Host, true); err != nil {
		return nil, err
	}
	if s.MinLatency < 0 {
		return nil, fmt.Errorf("--min-latency %v: give a duration of 0 or more, e.g. 100ms", s.MinLatency)
	}
	switch strings.ToLower(strings.TrimSpace(s.Direction)) {
	case "":
	case "egress":
		f.direction = DirectionEgress
	case "ingress":
		f.direction = DirectionIngress
	default:
		return nil, fmt.Errorf("--direction %q: give egress (the container answered) or ingress (the container asked)", s.Direction)
	}
	f.active = len(f.statuses)+len(f.methods)+len(f.paths)+len(f.hosts) > 0 || f.minLatency > 0 || f.direction != DirectionUnknown
	return f, nil
}

// parseStatus reads "404" or "5xx".
func parseStatus(v string) (statusRange, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	bad := fmt.Errorf("--status %q: give a status code such as 404 or a class such as 5xx", v)
	if len(s) != 3 || s[0] < '1' || s[0] > '9' {
		return statusRange{}, bad
	}
	if s[1:] == "xx" {
		lo := int(s[0]-'0') * 100
		return statusRange{lo, lo + 99}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return statusRange{}, bad
	}
	return statusRange{n, n}, nil
}

// checkGlobs rejects malformed globs before tracing starts, so that Match
// never meets one.
func checkGlobs(flag string, globs []string, lower bool) ([]string, error) {
	var out []string
	for _, g := range globs {
		g = strings.TrimSpace(g)
		if g == "" {
			return nil, fmt.Errorf("%s: the glob is empty", flag)
		}
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("%s %q: %v; use *, ? and [...] classes", flag, g, err)
		}
		if lower {
			g = strings.ToLower(g)
		}
		out = append(out, g)
	}
	return out, nil
}

// Active reports whether the filter can reject anything.
func (f *Filter) Active() bool { return f != nil && f.active }

// Match reports whether the exchange in e passes. It reads only the
// response status, the request's method, path and host, the latency and the
// direction, so a caller may fill just those before asking.
func (f *Filter) Match(e *Event) bool {
	if !f.Active() {
		return true
	}
	if f.direction != DirectionUnknown && e.Direction != f.direction {
		return false
	}
	if f.minLatency > 0 && (!e.LatencyKnown || e.Latency < f.minLatency) {
		return false
	}
	if len(f.statuses) > 0 && !f.matchStatus(e.Response.StatusCode) {
		return false
	}
	if len(f.methods)+len(f.paths)+len(f.hosts) == 0 {
		return true
	}
	rq := e.Request
	if rq == nil {
		return false // the request was not seen: nothing to match on
	}
	if len(f.methods) > 0 && !matchMethod(f.methods, rq.Method) {
		return false
	}
	if len(f.paths) > 0 && !matchPath(f.paths, rq.URIPath) {
		return false
	}
	return len(f.hosts) == 0 || matchHost(f.hosts, rq.Host)
}

// StatusFilter returns what --status keeps, for the kernel to leave out
// the other responses before they cost anything; nil without --status.
// Since filters combine with AND, a status it rejects never matches.
func (f *Filter) StatusFilter() func(code int) bool {
	if f == nil || len(f.statuses) == 0 {
		return nil
	}
	return f.matchStatus
}

func (f *Filter) matchStatus(code int) bool {
	for _, r := range f.statuses {
		if code >= r.lo && code <= r.hi {
			return true
		}
	}
	return false
}

func matchMethod(methods []string, m string) bool {
	for _, want := range methods {
		if strings.EqualFold(want, m) {
			return true
		}
	}
	return false
}

// matchPath matches each glob on the path without its query, then on each
// leading part of it that ends before a '/'.
func matchPath(globs []string, uri string) bool {
	if q := strings.IndexAny(uri, "?#"); q >= 0 {
		uri = uri[:q]
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, uri); ok {
			return true
		}
		for i := len(uri) - 1; i > 0; i-- {
			if uri[i] != '/' {
				continue
			}
			if ok, _ := path.Match(g, uri[:i]); ok {
				return true
			}
		}
	}
	return false
}

// matchHost matches each glob on the host as sent and without its port.
// Globs are lower case; a host with upper case letters is lowered first
// (the only case that allocates).
func matchHost(globs []string, host string) bool {
	if strings.ContainsFunc(host, func(r rune) bool { return r >= 'A' && r <= 'Z' }) {
		host = strings.ToLower(host)
	}
	bare := hostWithoutPort(host)
	for _, g := range globs {
		if ok, _ := path.Match(g, host); ok {
			return true
		}
		if bare != host {
			if ok, _ := path.Match(g, bare); ok {
				return true
			}
		}
	}
	return false
}

// hostWithoutPort strips ":port" from a Host header value ("[::1]:80" gives
// "::1", "example.com:8080" gives "example.com"; a bare IPv6 address stays).
// Unlike net.SplitHostPort it does not allocate an error for a host without
// a port.
func hostWithoutPort(host string) string {
	if strings.HasPrefix(host, "[") {
		if end := strings.IndexByte(host, ']'); end > 0 {
			return host[1:end]
		}
		return host
	}
	if i := strings.IndexByte(host, ':'); i >= 0 && strings.LastIndexByte(host, ':') == i {
		return host[:i]
	}
	return host
}
