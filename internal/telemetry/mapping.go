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
	var x spanInput
	x.fill(e)
	var a addrStrings
	return x.span(string(x.wire), make([]attribute.KeyValue, 0, maxSpanAttrs), &a)
}

// maxSpanAttrs is the most attributes a span gets from span().
const maxSpanAttrs = 9

// spanInput is what one span needs of an event. Observe fills it on the
// tracer's goroutine, copying the text that came from the wire (the event's
// strings alias the parser's buffers only until Observe returns) into wire;
// the span builder reads it later. Exchanges are reused: fill overwrites
// every field and keeps wire's capacity.
type spanInput struct {
	end          int64 // epoch ns of the response's first byte
	latency      time.Duration
	latencyKnown bool
	dir          output.Direction
	hasRequest   bool
	method       string // a known method (a constant) or OtherMethod
	code         int
	src, dst     netip.Addr
	srcPort      uint16
	dstPort      uint16
	grpcFailed   bool // a grpc-status header other than 0
	// The container's strings are the tracer target's, not the parser's
	// (tracer.Options.Observer), so they are kept as they are.
	container output.Container
	kube      output.Kubernetes
	runtime   string
	// wire holds the text from the wire, back to back: the original method
	// (only when method is OtherMethod), the URL path, the protocol version
	// and the grpc-status value; the offsets are where each ends.
	wire                                    []byte
	methodEnd, pathEnd, versionEnd, grpcEnd int
}

// maxKeptWire is the largest wire buffer an exchange keeps for reuse; one
// grown past it by a long path is let go.
const maxKeptWire = 4096

// fill copies what the span needs from e.
func (x *spanInput) fill(e *output.Event) {
	*x = spanInput{wire: x.wire[:0],
		end: e.Timestamp, latency: e.Latency, latencyKnown: e.LatencyKnown, dir: e.Direction,
		code: e.Response.StatusCode, src: e.Meta.SrcIP, dst: e.Meta.DstIP, srcPort: e.Meta.SrcPort, dstPort: e.Meta.DstPort,
		container: e.Container, kube: e.Kubernetes, runtime: e.ContainerRuntime}
	if r := e.Request; r != nil {
		x.hasRequest = true
		x.method = Method(r.Method)
		if x.method == OtherMethod {
			x.wire = append(x.wire, r.Method...)
		}
		x.methodEnd = len(x.wire)
		x.wire = append(x.wire, URLPath(r.URIPath)...)
	}
	x.pathEnd = len(x.wire)
	if v, ok := strings.CutPrefix(e.Response.Protocol, "HTTP/"); ok {
		x.wire = append(x.wire, v...)
	}
	x.versionEnd = len(x.wire)
	for _, h := range e.Response.Headers {
		if len(h.Name) == len("grpc-status") && strings.EqualFold(h.Name, "grpc-status") {
			if v := strings.TrimSpace(h.Value); v != "0" {
				x.grpcFailed = true
				x.wire = append(x.wire, v...)
				break
			}
		}
	}
	x.grpcEnd = len(x.wire)
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

// span maps the exchange, appending the attributes to attrs (which the span
// does not keep: the SDK copies them). wire is x.wire as one string, made
// once per span: the attributes' strings are cut from it and outlive x.
func (x *spanInput) span(wire string, attrs []attribute.KeyValue, addrs *addrStrings) SpanModel {
	end := time.Unix(0, x.end)
	m := SpanModel{Start: end, End: end, Kind: trace.SpanKindInternal}
	if x.latencyKnown && x.latency > 0 {
		m.Start = end.Add(-x.latency)
	}
	switch x.dir {
	case output.DirectionEgress:
		m.Kind = trace.SpanKindServer
	case output.DirectionIngress:
		m.Kind = trace.SpanKindClient
	}
	m.Name = "HTTP"
	m.Attrs = attrs[:0]
	if x.hasRequest {
		if x.method != OtherMethod {
			m.Name = x.method
		}
		m.Attrs = append(m.Attrs, semconv.HTTPRequestMethodKey.String(x.method))
		if x.method == OtherMethod {
			m.Attrs = append(m.Attrs, semconv.HTTPRequestMethodOriginal(wire[:x.methodEnd]))
		}
		m.Attrs = append(m.Attrs, semconv.URLPath(wire[x.methodEnd:x.pathEnd]))
	}
	m.Attrs = append(m.Attrs, semconv.HTTPResponseStatusCode(x.code))
	if x.src.IsValid() {
		m.Attrs = append(m.Attrs, semconv.ServerAddress(addrs.text(&addrs.server, &addrs.serverText, x.src)), semconv.ServerPort(int(x.srcPort)))
	}
	if x.dst.IsValid() {
		m.Attrs = append(m.Attrs, semconv.ClientAddress(addrs.text(&addrs.client, &addrs.clientText, x.dst)), semconv.ClientPort(int(x.dstPort)))
	}
	// network.protocol.name is left out: the conventions ask for it only
	// when it is not "http". A ninth attribute would also cost the SDK a map
	// on the heap per span (it dedupes attributes in a map sized to them,
	// which lives on the stack up to 8; only an unknown method's span has 9):
	// 15 -> 12 allocations per span.
	if x.versionEnd > x.pathEnd {
		m.Attrs = append(m.Attrs, semconv.NetworkProtocolVersion(wire[x.pathEnd:x.versionEnd]))
	}
	m.Error, m.ErrorDesc = spanError(m.Kind, x.code, x.grpcFailed, wire[x.versionEnd:x.grpcEnd])
	return m
}

// spanError follows the conventions: a 5xx is an error of a server span, a
// 4xx or 5xx of a client span (the server's 4xx is the client's fault, not
// the server's); a gRPC status other than 0 fails either.
func spanError(kind trace.SpanKind, code int, grpcFailed bool, grpcStatus string) (bool, string) {
	if grpcFailed {
		return true, "grpc-status " + grpcStatus
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
