package summary

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boxtap/boxtap/output"
)

func TestCollapseRoute(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/", "/"},
		{"", "/"},
		{"/users/42", "/users/{id}"},
		{"/users/42/orders/7", "/users/{id}/orders/{id}"},
		{"/users/42?expand=1", "/users/{id}"},
		{"/items/0", "/items/{id}"},
		{"/o/123e4567-e89b-12d3-a456-426614174000", "/o/{id}"},
		{"/o/123E4567-E89B-12D3-A456-426614174000/x", "/o/{id}/x"},
		{"/o/123e4567-e89b-12d3-a456-42661417400", "/o/123e4567-e89b-12d3-a456-42661417400"}, // one short
		{"/blob/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "/blob/{id}"},
		{"/commit/4f1b2b0b822c", "/commit/{id}"},       // 12 hex digits
		{"/commit/4f1b2b0b822", "/commit/4f1b2b0b822"}, // 11: a word as far as routes go
		{"/acceptedface", "/acceptedface"},             // hex letters only: a word
		{"/v1/api", "/v1/api"},
		{"/sleep/30ms", "/sleep/30ms"},
		{"/a//b/", "/a//b/"},
		{"*", "*"},
		{"example.com:443", "example.com:443"},
		{"http://proxy.test/users/5?x", "/users/{id}"},
		{"http://proxy.test", "/"},
		{"/page#frag", "/page"},
	} {
		if got := CollapseRoute(tc.in); got != tc.want {
			t.Errorf("CollapseRoute(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzCollapseRoute(f *testing.F) {
	for _, s := range []string{"/users/42", "/o/123e4567-e89b-12d3-a456-426614174000", "http://h/x/1", "*", "", "/a?b#c", "//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		r := CollapseRoute(uri)
		if strings.ContainsAny(r, "?#") && !strings.ContainsAny(uri, "?#") {
			t.Fatalf("%q: route %q gained a query", uri, r)
		}
		if CollapseRoute(r) != r {
			t.Fatalf("%q: not idempotent: %q then %q", uri, r, CollapseRoute(r))
		}
		if !strings.HasPrefix(r, "/") {
			return // "*", an authority: kept as they are
		}
		for seg := range strings.SplitSeq(r, "/") {
			if seg != IDSegment && isID(seg) {
				t.Fatalf("%q: segment %q of route %q is still an id", uri, seg, r)
			}
		}
	})
}

func event(container, method, uri string, status int, latency time.Duration, size int64) *output.Event {
	e := &output.Event{Container: output.Container{Name: container}, Response: output.Response{StatusCode: status, ContentLength: size}}
	if method != "" {
		e.Request = &output.Request{Method: method, URIPath: uri}
		e.Latency, e.LatencyKnown = latency, true
	}
	return e
}

// exactPercentile is the nearest-rank percentile of sorted values, the
// definition HDR histograms approximate.
func exactPercentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestPercentilesMatchTheRecordedLatencies(t *testing.T) {
	start := time.Unix(1000, 0)
	tb := New(start, 0)
	var lat []time.Duration
	// 1 ms to 200 ms in uneven steps, plus one slow outlier.
	for i := 1; i <= 200; i++ {
		d := time.Duration(i*i) * 5 * time.Microsecond
		lat = append(lat, d)
	}
	lat = append(lat, 3*time.Second)
	for i, d := range lat {
		tb.Record(event("web", "GET", fmt.Sprintf("/users/%d", i), 200, d, 100))
	}
	slices.Sort(lat)
	rows := tb.Rows(start.Add(10 * time.Second))
	if len(rows) != 1 {
		t.Fatalf("want one row (routes collapse), got %+v", rows)
	}
	r := rows[0]
	if r.Key != (Key{"web", "GET", "/users/{id}", "2xx"}) || r.Count != uint64(len(lat)) || r.Bytes != uint64(100*len(lat)) {
		t.Errorf("row %+v", r)
	}
	if math.Abs(r.Rate-float64(len(lat))/10) > 1e-9 {
		t.Errorf("rate %v, want %v", r.Rate, float64(len(lat))/10)
	}
	for _, c := range []struct {
		name string
		got  int64
		p    float64
	}{{"p50", r.P50, 50}, {"p90", r.P90, 90}, {"p99", r.P99, 99}, {"max", r.Max, 100}} {
		want := exactPercentile(lat, c.p)
		// Two significant digits: within 1% (plus the 1 µs unit).
		if diff := math.Abs(float64(c.got) - float64(want)); diff > float64(want)/100+1000 {
			t.Errorf("%s = %v, want %v within 1%%", c.name, time.Duration(c.got), want)
		}
	}
}

func TestRowsSplitByContainerMethodRouteAndClass(t *testing.T) {
	tb := New(time.Unix(0, 0), 0)
	tb.Record(event("a", "GET", "/x", 200, time.Millisecond, 1))
	tb.Record(event("a", "GET", "/x", 201, time.Millisecond, 1))
	tb.Record(event("a", "GET", "/x", 503, time.Millisecond, 1))
	tb.Record(event("a", "POST", "/x", 200, time.Millisecond, 1))
	tb.Record(event("b", "GET", "/x", 200, time.Millisecond, -1))
	tb.Record(event("b", "", "", 200, 0, 5))
	var got []string
	for _, r := range tb.Rows(time.Unix(1, 0)) {
		got = append(got, fmt.Sprintf("%s %s %s %s %d %d", r.Container, r.Method, r.Route, r.Class, r.Count, r.Bytes))
	}
	want := []string{"a GET /x 2xx 2 2", "a GET /x 5xx 1 1", "a POST /x 2xx 1 1", "b - - 2xx 1 5", "b GET /x 2xx 1 0"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRoutesBeyondTheLimitGoToOther(t *testing.T) {
	tb := New(time.Unix(0, 0), 3)
	for i := range 5 {
		tb.Record(event("a", "GET", fmt.Sprintf("/r%c", 'a'+i), 200, time.Millisecond, 0))
	}
	tb.Record(event("a", "GET", "/ra", 200, time.Millisecond, 0)) // known route stays
	tb.Record(event("b", "GET", "/rz", 200, time.Millisecond, 0)) // another container has its own limit
	var got []string
	for _, r := range tb.Rows(time.Unix(1, 0)) {
		got = append(got, fmt.Sprintf("%s %s %d", r.Container, r.Route, r.Count))
	}
	want := "a /ra 2|a /rb 1|a /rc 1|a other 2|b /rz 1"
	if strings.Join(got, "|") != want {
		t.Errorf("got %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestDefaultRouteLimitIsOneThousand(t *testing.T) {
	tb := New(time.Unix(0, 0), 0)
	for i := range MaxRoutes + 10 {
		tb.Record(event("a", "GET", fmt.Sprintf("/r%x-x", i), 200, time.Millisecond, 0))
	}
	rows := tb.Rows(time.Unix(1, 0))
	if len(rows) != MaxRoutes+1 || rows[len(rows)-1].Route != OtherRoute || rows[len(rows)-1].Count != 10 {
		t.Errorf("%d rows, last %+v; want %d routes and other with 10", len(rows), rows[len(rows)-1], MaxRoutes)
	}
}

func TestWriteTextAndJSON(t *testing.T) {
	tb := New(time.Unix(0, 0), 0)
	tb.Record(event("web", "GET", "/users/1", 404, 2*time.Millisecond, 11))
	tb.Record(event("web", "", "", 200, 0, 3))
	var text bytes.Buffer
	if err := tb.WriteText(&text, time.Unix(2, 0)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(text.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CONTAINER") {
		t.Fatalf("text table:\n%s", text.String())
	}
	if f := strings.Fields(lines[2]); strings.Join(f, " ") != "web GET /users/{id} 4xx 1 0.5 2ms 2ms 2ms 2ms 11" {
		t.Errorf("row %q", f)
	}
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != "web - - 2xx 1 0.5 - - - - 3" {
		t.Errorf("row without latency %q", f)
	}
	var js bytes.Buffer
	if err := tb.WriteJSON(&js, time.Unix(2, 0)); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Seconds float64 `json:"seconds"`
		Rows    []Row   `json:"rows"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Seconds != 2 || len(doc.Rows) != 2 || doc.Rows[1].Route != "/users/{id}" || doc.Rows[1].Max != int64(2*time.Millisecond) {
		t.Errorf("JSON %s", js.String())
	}
}
