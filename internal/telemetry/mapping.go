package telemetry

import (
	"net/netip"
	"strings"
	"time"

	"github.com/boxtap/boxtap/output"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// SpanModel is what one exchange's span carries, before the SDK builds it.
type SpanModel struct {
	Name       string
	Kind       trace.SpanKind
	Start, End time.Time
	Attrs      []attribute.KeyValue
	Error      bool
	ErrorDesc  string
}

// SpanOf maps an exchange to a span (HTTP semantic conventions, v1.37).
//
// Times: boxtap sees the first byte of the request and of the response (the
// event's timestamp), and nothing of the response body's end. The span starts
// at the request's first byte and ends at the response's first byte; without
// a paired request it starts and ends at the response's first byte.
//
// Kind: the traced container sent the response (egress) -> SERVER; it
// received it (ingress) -> CLIENT. Either way the response goes from the
// server to the client, so server.* is its source and client.* its
// destination.
func SpanOf(e *output.Event) SpanModel {
	var a addrStrings
	return spanOf(e, make([]attribute.KeyValue, 0, 10), &a)
}

// addrStrings remembers the text of the last server and client addresses,
// which repeat from span to span (one server, few clients).
type addrStrings struct {
	server, client         netip.Addr
	serverText, clientText string
}

func (a *addrStrings) text(last *netip.Addr, text *string, ip netip.Addr) string {
	if ip != *last || *text == "" {
		*last, *text = ip, ip.Unmap().String()
	}
	return *text
}

// spanOf is SpanOf appending the attributes to attrs (which the span does
// not keep: the SDK copies them).
func spanOf(e *output.Event, attrs []attribute.KeyValue, addrs *addrStrings) SpanModel {
	end := time.Unix(0, e.Timestamp)
	m := SpanModel{Start: end, End: end, Kind: trace.SpanKindInternal}
	if e.LatencyKnown && e.Latency > 0 {
		m.Start = end.Add(-e.Latency)
	}
	switch e.Direction {
	case output.DirectionEgress:
		m.Kind = trace.SpanKindServer
	case output.DirectionIngress:
		m.Kind = trace.SpanKindClient
	}
	m.Name = "HTTP"
	code := e.Response.StatusCode
	m.Attrs = attrs[:0]
	if e.Request != nil {
		meth := Method(e.Request.Method)
		if meth != OtherMethod {
			m.Name = meth
		}
		m.Attrs = append(m.Attrs, semconv.HTTPRequestMethodKey.String(meth))
		// The span outlives the event, whose strings may alias the
		// parser's buffers: what comes from the wire is copied.
		if meth == OtherMethod {
			m.Attrs = append(m.Attrs, semconv.HTTPRequestMethodOriginal(strings.Clone(e.Request.Method)))
		}
		m.Attrs = append(m.Attrs, semconv.URLPath(strings.Clone(URLPath(e.Request.URIPath))))
	}
	m.Attrs = append(m.Attrs, semconv.HTTPResponseStatusCode(code))
	if e.Meta.SrcIP.IsValid() {
		m.Attrs = append(m.Attrs, semconv.ServerAddress(addrs.text(&addrs.server, &addrs.serverText, e.Meta.SrcIP)), semconv.ServerPort(int(e.Meta.SrcPort)))
	}
	if e.Meta.DstIP.IsValid() {
		m.Attrs = append(m.Attrs, semconv.ClientAddress(addrs.text(&addrs.client, &addrs.clientText, e.Meta.DstIP)), semconv.ClientPort(int(e.Meta.DstPort)))
	}
	if v, ok := strings.CutPrefix(e.Response.Protocol, "HTTP/"); ok && v != "" {
		m.Attrs = append(m.Attrs, semconv.NetworkProtocolName("http"), semconv.NetworkProtocolVersion(v))
	}
	m.Error, m.ErrorDesc = spanError(m.Kind, code, e.Response.Headers)
	return m
}

// spanError follows the conventions: a 5xx is an error of a server span, a
// 4xx or 5xx of a client span (the server's 4xx is the client's fault, not
// the server's); a gRPC status other than 0 fails either.
func spanError(kind trace.SpanKind, code int, headers []output.Header) (bool, string) {
	for _, h := range headers {
		if strings.EqualFold(h.Name, "grpc-status") && strings.TrimSpace(h.Value) != "0" {
			return true, "grpc-status " + strings.TrimSpace(h.Value)
		}
	}
	if code >= 500 || (kind == trace.SpanKindClient && code >= 400) {
		return true, ""
	}
	return false, ""
}

// URLPath is the path of a request target, without its query (whose values
// may be secrets) or fragment; an absolute-form target keeps only its path.
func URLPath(uri string) string {
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		uri = uri[:i]
	}
	if rest, ok := strings.CutPrefix(uri, "http://"); ok {
		uri = pathOf(rest)
	} else if rest, ok := strings.CutPrefix(uri, "https://"); ok {
		uri = pathOf(rest)
	}
	return uri
}

func pathOf(authorityAndPath string) string {
	if i := strings.IndexByte(authorityAndPath, '/'); i >= 0 {
		return authorityAndPath[i:]
	}
	return "/"
}

// ContainerResource describes the container an exchange belongs to.
func ContainerResource(e *output.Event, host string) *resource.Resource {
	attrs := []attribute.KeyValue{semconv.ServiceName(serviceName(e)), semconv.ContainerID(e.Container.ID)}
	if e.Container.Name != "" {
		attrs = append(attrs, semconv.ContainerName(e.Container.Name))
	}
	if e.Container.Image != "" {
		attrs = append(attrs, semconv.ContainerImageName(e.Container.Image))
	}
	if e.ContainerRuntime != "" {
		attrs = append(attrs, semconv.ContainerRuntimeName(e.ContainerRuntime))
	}
	if e.Kubernetes.PodName != "" {
		attrs = append(attrs, semconv.K8SPodName(e.Kubernetes.PodName))
	}
	if e.Kubernetes.PodNamespace != "" {
		attrs = append(attrs, semconv.K8SNamespaceName(e.Kubernetes.PodNamespace))
	}
	if e.Kubernetes.PodUID != "" {
		attrs = append(attrs, semconv.K8SPodUID(e.Kubernetes.PodUID))
	}
	if host != "" {
		attrs = append(attrs, semconv.HostName(host))
	}
	return resource.NewWithAttributes(semconv.SchemaURL, attrs...)
}

// serviceName: backends group spans by service.name; the container's name
// (or short id) is the best name boxtap has for the service inside it.
func serviceName(e *output.Event) string {
	return ContainerLabel(e.Container.ID, e.Container.Name)
}
