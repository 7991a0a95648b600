package telemetry

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/boxtap/boxtap/output"
	"github.com/boxtap/boxtap/summary"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

func TestMethodBoundsUnknownMethodsToOther(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"GET", "GET"}, {"PATCH", "PATCH"}, {"PURGE", OtherMethod}, {"get", OtherMethod}, {"", OtherMethod}, {"X\x00", OtherMethod},
	} {
		if got := Method(tc.in); got != tc.want {
			t.Errorf("Method(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStatusCodeLabel(t *testing.T) {
	for _, tc := range []struct {
		in   int
		want string
	}{{200, "200"}, {599, "599"}, {99, "other"}, {600, "other"}, {0, "other"}, {-1, "other"}} {
		if got := StatusCode(tc.in); got != tc.want {
			t.Errorf("StatusCode(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRouteLimiterCollapsesAndBoundsRoutesPerContainer(t *testing.T) {
	l := newRouteLimiter(3)
	for _, tc := range []struct{ container, uri, want string }{
		{"a", "/users/42?token=x", "/users/{id}"},
		{"a", "/users/43", "/users/{id}"},
		{"a", "/health", "/health"},
		{"a", "/x", "/x"},
		{"a", "/y", summary.OtherRoute}, // fourth distinct route of a
		{"a", "/health", "/health"},     // seen before: still its own
		{"b", "/y", "/y"},               // another container has its own limit
	} {
		if got := l.route(tc.container, tc.uri); got != tc.want {
			t.Errorf("route(%q, %q) = %q, want %q", tc.container, tc.uri, got, tc.want)
		}
	}
}

func TestRouteLimiterBoundsContainers(t *testing.T) {
	l := newRouteLimiter(10)
	for i := range maxContainers + 5 {
		l.route(fmt.Sprint(i), "/")
	}
	if len(l.routes) > maxContainers {
		t.Errorf("%d containers remembered, limit %d", len(l.routes), maxContainers)
	}
}

func TestSpanOfMapsAnExchangeToHTTPSemconv(t *testing.T) {
	at := time.Unix(1700000000, 500)
	base := func(dir output.Direction, method string, code int) *output.Event {
		return &output.Event{
			Timestamp: at.UnixNano(),
			Meta: output.PacketMeta{SrcIP: netip.MustParseAddr("::ffff:10.0.0.2"), SrcPort: 8080,
				DstIP: netip.MustParseAddr("10.0.0.9"), DstPort: 51000},
			Response:     output.Response{StatusCode: code, Protocol: "HTTP/1.1"},
			Request:      &output.Request{Method: method, URIPath: "/users/42?token=s3cret"},
			Latency:      3 * time.Millisecond,
			LatencyKnown: true,
			Direction:    dir,
		}
	}
	noLatency := base(output.DirectionEgress, "GET", 200)
	noLatency.LatencyKnown, noLatency.Latency = false, 0
	noRequest := base(output.DirectionEgress, "GET", 200)
	noRequest.Request, noRequest.LatencyKnown = nil, false
	grpcFail := base(output.DirectionEgress, "POST", 200)
	grpcFail.Response.Headers = []output.Header{{Name: "Grpc-Status", Value: "14"}}
	for _, tc := range []struct {
		name      string
		e         *output.Event
		wantName  string
		wantKind  trace.SpanKind
		wantStart time.Time
		wantErr   bool
		want      map[attribute.Key]any
	}{
		{"egress is SERVER", base(output.DirectionEgress, "GET", 200), "GET", trace.SpanKindServer, at.Add(-3 * time.Millisecond), false,
			map[attribute.Key]any{"http.request.method": "GET", "url.path": "/users/42", "http.response.status_code": int64(200),
				"server.address": "10.0.0.2", "server.port": int64(8080), "client.address": "10.0.0.9", "client.port": int64(51000),
				"network.protocol.version": "1.1"}},
		{"server 5xx is an error", base(output.DirectionEgress, "GET", 503), "GET", trace.SpanKindServer, at.Add(-3 * time.Millisecond), true, nil},
		{"server 4xx is not", base(output.DirectionEgress, "GET", 404), "GET", trace.SpanKindServer, at.Add(-3 * time.Millisecond), false, nil},
		{"ingress is CLIENT, 4xx an error", base(output.DirectionIngress, "PUT", 404), "PUT", trace.SpanKindClient, at.Add(-3 * time.Millisecond), true,
			map[attribute.Key]any{"http.request.method": "PUT"}},
		{"unknown method", base(output.DirectionEgress, "PURGE", 200), "HTTP", trace.SpanKindServer, at.Add(-3 * time.Millisecond), false,
			map[attribute.Key]any{"http.request.method": "_OTHER", "http.request.method_original": "PURGE"}},
		{"no latency: starts at the response", noLatency, "GET", trace.SpanKindServer, at, false, nil},
		{"no request", noRequest, "HTTP", trace.SpanKindServer, at, false, map[attribute.Key]any{"http.response.status_code": int64(200)}},
		{"failed gRPC call", grpcFail, "POST", trace.SpanKindServer, at.Add(-3 * time.Millisecond), true, nil},
		{"unknown direction", base(output.DirectionUnknown, "GET", 200), "GET", trace.SpanKindInternal, at.Add(-3 * time.Millisecond), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := SpanOf(tc.e)
			if m.Name != tc.wantName || m.Kind != tc.wantKind || !m.Start.Equal(tc.wantStart) || !m.End.Equal(at) || m.Error != tc.wantErr {
				t.Errorf("got name %q kind %v start %v end %v error %v; want %q %v %v %v %v",
					m.Name, m.Kind, m.Start, m.End, m.Error, tc.wantName, tc.wantKind, tc.wantStart, at, tc.wantErr)
			}
			got := map[attribute.Key]any{}
			for _, kv := range m.Attrs {
				got[kv.Key] = kv.Value.AsInterface()
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v (%T), want %v (%T)", k, got[k], got[k], v, v)
				}
			}
			if _, ok := got["url.query"]; ok {
				t.Error("url.query must not be sent (its values may be secrets)")
			}
		})
	}
}

func TestURLPathDropsQueryAndAuthority(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/a/b?c=d", "/a/b"}, {"/a#frag", "/a"}, {"http://h:80/p?q", "/p"}, {"https://h", "/"}, {"*", "*"},
	} {
		if got := URLPath(tc.in); got != tc.want {
			t.Errorf("URLPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestContainerResourceCarriesContainerAndPod(t *testing.T) {
	e := &output.Event{Container: output.Container{ID: "abc123", Name: "web", Image: "nginx:1"},
		Kubernetes: output.Kubernetes{PodName: "web-0", PodNamespace: "shop"}}
	got := map[attribute.Key]string{}
	for _, kv := range ContainerResource(e, "node1").Attributes() {
		got[kv.Key] = kv.Value.Emit()
	}
	want := map[attribute.Key]string{"container.id": "abc123", "container.name": "web", "container.image.name": "nginx:1",
		"k8s.pod.name": "web-0", "k8s.namespace.name": "shop", "host.name": "node1", "service.name": "web"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestOTLPOptionsRejectBadInputWithOneLine(t *testing.T) {
	for _, o := range []SpanOptions{
		{Endpoint: "127.0.0.1:4317"},
		{Endpoint: "ftp://x"},
		{Endpoint: "http://127.0.0.1:4317", Protocol: "thrift"},
		{Endpoint: "http://127.0.0.1:4317", Headers: []string{"novalue"}},
	} {
		if _, err := newExporter(t.Context(), o); err == nil {
			t.Errorf("%+v: accepted", o)
		}
	}
}
