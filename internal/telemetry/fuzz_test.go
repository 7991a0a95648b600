package telemetry

import (
	"strings"
	"testing"

	"github.com/boxtap/boxtap/output"
)

// FuzzParseHeaders: any --otlp-header value is accepted as KEY=VALUE or
// refused with an error, never a panic; an accepted key is never empty.
func FuzzParseHeaders(f *testing.F) {
	for _, s := range []string{"a=b", "authorization=Bearer x=y", "=x", "novalue", " k = v ", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		m, err := parseHeaders([]string{h})
		if err != nil {
			return
		}
		for k := range m {
			if k == "" {
				t.Fatalf("%q gave an empty key", h)
			}
		}
	})
}

// FuzzURLPath: the span's url.path never carries a query or fragment.
func FuzzURLPath(f *testing.F) {
	for _, s := range []string{"/a?b=c", "http://h/p?q#f", "https://h", "*", "", "/x#y?z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		if p := URLPath(uri); strings.ContainsAny(p, "?#") {
			t.Fatalf("URLPath(%q) = %q keeps a query or fragment", uri, p)
		}
	})
}

// FuzzSpanOfKeepsTheWireText: whatever text comes from the wire, the span
// made from the exchange's packed copy carries exactly what the event said.
func FuzzSpanOfKeepsTheWireText(f *testing.F) {
	f.Add("GET", "/a?b", "HTTP/1.1", "0")
	f.Add("PURGE", "http://h/p", "HTTP/2", " 14 ")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, method, uri, proto, grpc string) {
		e := exchange("web", method, uri, 200, 0)
		e.Response.Protocol = proto
		e.Response.Headers = []output.Header{{Name: "Grpc-Status", Value: grpc}}
		m := SpanOf(e)
		got := map[string]string{}
		for _, a := range m.Attrs {
			got[string(a.Key)] = a.Value.Emit()
		}
		if got["url.path"] != URLPath(uri) {
			t.Errorf("url.path %q, want %q", got["url.path"], URLPath(uri))
		}
		if Method(method) == OtherMethod && got["http.request.method_original"] != method {
			t.Errorf("http.request.method_original %q, want %q", got["http.request.method_original"], method)
		}
		if v, ok := strings.CutPrefix(proto, "HTTP/"); ok && v != "" && got["network.protocol.version"] != v {
			t.Errorf("network.protocol.version %q, want %q", got["network.protocol.version"], v)
		}
		if g := strings.TrimSpace(grpc); g != "0" && (!m.Error || m.ErrorDesc != "grpc-status "+g) {
			t.Errorf("grpc-status %q: error %v %q", grpc, m.Error, m.ErrorDesc)
		}
	})
}
