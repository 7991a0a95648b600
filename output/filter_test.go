package output

import (
	"strings"
	"testing"
	"time"
)

// filterEvent is an exchange with the fields a filter reads.
func filterEvent(status int, method, uri, host string, latency time.Duration, dir Direction) *Event {
	e := &Event{Response: Response{StatusCode: status}, Direction: dir, Latency: latency, LatencyKnown: latency >= 0}
	if method != "" {
		e.Request = &Request{Method: method, URIPath: uri, Host: host}
	}
	return e
}

func TestFilterEachFlagAloneAndCombined(t *testing.T) {
	ok200 := filterEvent(200, "GET", "/api/v1/users?token=s3cret", "API.example.test:8080", 20*time.Millisecond, DirectionEgress)
	err503 := filterEvent(503, "POST", "/login", "auth.internal", 150*time.Millisecond, DirectionIngress)
	nf404 := filterEvent(404, "get", "/missing", "[::1]:80", 0, DirectionEgress)
	noReq := filterEvent(502, "", "", "", -1, DirectionEgress)
	events := map[string]*Event{"ok200": ok200, "err503": err503, "nf404": nf404, "noReq": noReq}

	tests := []struct {
		name string
		spec FilterSpec
		want string // names of the events that pass, sorted, comma-separated
	}{
		{"none", FilterSpec{}, "err503,nf404,noReq,ok200"},
		{"status class", FilterSpec{Status: []string{"5xx"}}, "err503,noReq"},
		{"status code", FilterSpec{Status: []string{"404"}}, "nf404"},
		{"status OR", FilterSpec{Status: []string{"5xx", "404"}}, "err503,nf404,noReq"},
		{"status upper-case class", FilterSpec{Status: []string{"2XX"}}, "ok200"},
		{"method", FilterSpec{Method: []string{"GET"}}, "nf404,ok200"},
		{"method OR, any case", FilterSpec{Method: []string{"post", "PUT"}}, "err503"},
		{"path exact", FilterSpec{Path: []string{"/login"}}, "err503"},
		{"path glob on a leading part", FilterSpec{Path: []string{"/api/*"}}, "ok200"},
		{"path ignores the query (matched before redaction, without it)", FilterSpec{Path: []string{"/api/v1/users"}}, "ok200"},
		{"path glob does not match a longer segment", FilterSpec{Path: []string{"/api/v"}}, ""},
		{"path OR", FilterSpec{Path: []string{"/missing", "/log*"}}, "err503,nf404"},
		{"host glob, port ignored, case ignored", FilterSpec{Host: []string{"api.*"}}, "ok200"},
		{"host with port", FilterSpec{Host: []string{"*:8080"}}, "ok200"},
		{"host IPv6 without port", FilterSpec{Host: []string{"::1"}}, "nf404"},
		{"min latency", FilterSpec{MinLatency: 100 * time.Millisecond}, "err503"},
		{"min latency equal passes", FilterSpec{MinLatency: 20 * time.Millisecond}, "err503,ok200"},
		{"direction egress", FilterSpec{Direction: "egress"}, "nf404,noReq,ok200"},
		{"direction ingress", FilterSpec{Direction: "ingress"}, "err503"},
		{"AND across flags", FilterSpec{Status: []string{"2xx", "4xx"}, Method: []string{"GET"}, Direction: "egress", Path: []string{"/missing"}}, "nf404"},
		{"AND excludes all", FilterSpec{Status: []string{"5xx"}, Method: []string{"GET"}}, ""},
		{"status with no request passes; method needs one", FilterSpec{Status: []string{"502"}}, "noReq"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFilter(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, name := range []string{"err503", "nf404", "noReq", "ok200"} {
				if f.Match(events[name]) {
					got = append(got, name)
				}
			}
			if g := strings.Join(got, ","); g != tc.want {
				t.Errorf("passed %q, want %q", g, tc.want)
			}
		})
	}
}

func TestFilterRejectsBadValuesWithOneLine(t *testing.T) {
	for _, spec := range []FilterSpec{
		{Status: []string{"5x"}}, {Status: []string{"600x"}}, {Status: []string{"abc"}}, {Status: []string{"099"}},
		{Method: []string{""}}, {Method: []string{"GE T"}},
		{Path: []string{"/a/[b"}}, {Host: []string{""}},
		{MinLatency: -time.Second}, {Direction: "both"},
	} {
		_, err := NewFilter(spec)
		if err == nil {
			t.Errorf("%+v: accepted", spec)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "--") {
			t.Errorf("%+v: error %q is not one line naming the flag", spec, msg)
		}
	}
}

func TestFilterInactiveWhenEmpty(t *testing.T) {
	f, err := NewFilter(FilterSpec{})
	if err != nil {
		t.Fatal(err)
	}
	var nilFilter *Filter
	if f.Active() || nilFilter.Active() || !nilFilter.Match(&Event{}) {
		t.Error("an empty or nil filter must be inactive and match everything")
	}
}

func TestFilterMatchDoesNotAllocate(t *testing.T) {
	f, err := NewFilter(FilterSpec{Status: []string{"5xx", "404"}, Method: []string{"GET"}, Path: []string{"/api/*"}, Host: []string{"*.example.test"}, MinLatency: time.Millisecond, Direction: "egress"})
	if err != nil {
		t.Fatal(err)
	}
	e := filterEvent(404, "GET", "/api/v1/users/42?x=1", "www.example.test:8080", 2*time.Millisecond, DirectionEgress)
	if !f.Match(e) {
		t.Fatal("the event must match")
	}
	if allocs := testing.AllocsPerRun(200, func() { f.Match(e) }); allocs != 0 {
		t.Errorf("Match allocates %.1f times per exchange, want 0", allocs)
	}
}

func FuzzFilterMatch(f *testing.F) {
	f.Add("5xx", "GET", "/api/*", "*.test", "/api/v1?x", "a.test:80", 503)
	f.Add("404", "post", "/[a-c]", "[::1]", "/b", "[::1]:8080", 404)
	f.Fuzz(func(t *testing.T, status, method, pathGlob, hostGlob, uri, host string, code int) {
		flt, err := NewFilter(FilterSpec{Status: []string{status}, Method: []string{method}, Path: []string{pathGlob}, Host: []string{hostGlob}})
		if err != nil {
			return // rejected up front: fine
		}
		e := filterEvent(code, method, uri, host, 0, DirectionEgress)
		flt.Match(e) // must not panic on any input
		if flt.Match(filterEvent(code, "", "", "", 0, DirectionEgress)) {
			t.Fatal("an exchange without its request passed a method filter")
		}
	})
}
