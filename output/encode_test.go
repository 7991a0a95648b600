package output

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aquasecurity/tracee/types/trace"
)

// Reference types: the schema written with encoding/json, in Tracee's field
// order, used to check the hand-written encoder.
type refFile struct {
	Path string `json:"path"`
}

type refContainer struct {
	ID          string `json:"id,omitempty"`
	Name        string `json:"name,omitempty"`
	Image       string `json:"image,omitempty"`
	ImageDigest string `json:"imageDigest,omitempty"`
}

type refKubernetes struct {
	PodName      string `json:"podName,omitempty"`
	PodNamespace string `json:"podNamespace,omitempty"`
	PodUID       string `json:"podUID,omitempty"`
	PodSandbox   bool   `json:"podSandbox,omitempty"`
}

type refFlags struct {
	ContainerStarted bool `json:"containerStarted"`
	IsCompat         bool `json:"isCompat"`
}

type refArg struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

type refPktMeta struct {
	SrcIP     string `json:"src_ip"`
	DstIP     string `json:"dst_ip"`
	SrcPort   uint16 `json:"src_port"`
	DstPort   uint16 `json:"dst_port"`
	Protocol  uint8  `json:"protocol"`
	PacketLen uint32 `json:"packet_len"`
	Iface     string `json:"iface"`
}

type refResponse struct {
	Status        string              `json:"status"`
	StatusCode    int                 `json:"status_code"`
	Protocol      string              `json:"protocol"`
	Headers       map[string][]string `json:"headers"`
	ContentLength int64               `json:"content_length"`
}

type refRequest struct {
	Method        string              `json:"method"`
	Protocol      string              `json:"protocol"`
	Host          string              `json:"host"`
	URIPath       string              `json:"uri_path"`
	Headers       map[string][]string `json:"headers"`
	ContentLength int64               `json:"content_length"`
}

type refEvent struct {
	Timestamp           int64         `json:"timestamp"`
	ThreadStartTime     int64         `json:"threadStartTime"`
	ProcessorID         uint32        `json:"processorId"`
	ProcessID           uint32        `json:"processId"`
	CgroupID            uint64        `json:"cgroupId"`
	ThreadID            uint32        `json:"threadId"`
	ParentProcessID     uint32        `json:"parentProcessId"`
	HostProcessID       uint32        `json:"hostProcessId"`
	HostThreadID        uint32        `json:"hostThreadId"`
	HostParentProcessID uint32        `json:"hostParentProcessId"`
	UserID              uint32        `json:"userId"`
	MountNS             uint32        `json:"mountNamespace"`
	PIDNS               uint32        `json:"pidNamespace"`
	ProcessName         string        `json:"processName"`
	Executable          refFile       `json:"executable"`
	HostName            string        `json:"hostName"`
	ContainerID         string        `json:"containerId"`
	Container           refContainer  `json:"container"`
	Kubernetes          refKubernetes `json:"kubernetes"`
	EventID             int           `json:"eventId,string"`
	EventName           string        `json:"eventName"`
	MatchedPolicies     []string      `json:"matchedPolicies"`
	ArgsNum             int           `json:"argsNum"`
	ReturnValue         int           `json:"returnValue"`
	Syscall             string        `json:"syscall"`
	StackAddresses      []uint64      `json:"stackAddresses"`
	ContextFlags        refFlags      `json:"contextFlags"`
	ThreadEntityID      uint32        `json:"threadEntityId"`
	ProcessEntityID     uint32        `json:"processEntityId"`
	ParentEntityID      uint32        `json:"parentEntityId"`
	Args                []refArg      `json:"args"`
}

func refHeaders(hs []Header) map[string][]string {
	m := map[string][]string{}
	for _, h := range hs {
		k := textproto.CanonicalMIMEHeaderKey(h.Name)
		m[k] = append(m[k], h.Value)
	}
	return m
}

func refAddr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().String()
}

// reference builds the expected event with encoding/json (no redaction).
func reference(e *Event) refEvent {
	r := refEvent{
		Timestamp: e.Timestamp, ThreadStartTime: e.ThreadStartTime, ProcessorID: e.ProcessorID,
		ProcessID: e.ProcessID, CgroupID: e.CgroupID, ThreadID: e.ThreadID, ParentProcessID: e.ParentProcessID,
		HostProcessID: e.HostProcessID, HostThreadID: e.HostThreadID, HostParentProcessID: e.HostParentProcessID,
		UserID: e.UserID, MountNS: e.MountNS, PIDNS: e.PIDNS, ProcessName: e.ProcessName,
		Executable: refFile{e.ExecutablePath}, HostName: e.HostName, ContainerID: e.Container.ID,
		Container:  refContainer{e.Container.ID, e.Container.Name, e.Container.Image, e.Container.ImageDigest},
		Kubernetes: refKubernetes{e.Kubernetes.PodName, e.Kubernetes.PodNamespace, e.Kubernetes.PodUID, e.Kubernetes.PodSandbox},
		EventID:    2011, EventName: "net_packet_http_response", MatchedPolicies: []string{""},
		StackAddresses: []uint64{0}, ContextFlags: refFlags{ContainerStarted: e.ContainerStarted},
		ThreadEntityID: e.ThreadEntityID, ProcessEntityID: e.ProcessEntityID, ParentEntityID: e.ParentEntityID,
	}
	m := e.Meta
	r.Args = append(r.Args,
		refArg{"metadata", "trace.PktMeta", refPktMeta{refAddr(m.SrcIP), refAddr(m.DstIP), m.SrcPort, m.DstPort, m.Protocol, m.PacketLen, m.Iface}},
		refArg{"http_response", "trace.ProtoHTTPResponse", refResponse{e.Response.Status, e.Response.StatusCode, e.Response.Protocol, refHeaders(e.Response.Headers), e.Response.ContentLength}},
	)
	if q := e.Request; q != nil {
		r.Args = append(r.Args, refArg{"http_request", "trace.ProtoHTTPRequest", refRequest{q.Method, q.Protocol, q.Host, q.URIPath, refHeaders(q.Headers), q.ContentLength}})
	}
	if e.LatencyKnown {
		r.Args = append(r.Args, refArg{"latency_ns", "int64", int64(e.Latency)})
	}
	if e.Direction != DirectionUnknown {
		r.Args = append(r.Args, refArg{"direction", "const char*", e.Direction.String()})
	}
	r.Args = append(r.Args, refArg{"truncated", "bool", e.Truncated})
	if e.ContainerRuntime != "" {
		r.Args = append(r.Args, refArg{"container_runtime", "const char*", e.ContainerRuntime})
	}
	if e.LostRecords > 0 {
		r.Args = append(r.Args, refArg{"lost_records", "int64", int64(e.LostRecords)})
	}
	if e.Evicted > 0 {
		r.Args = append(r.Args, refArg{"evicted", "int64", int64(e.Evicted)})
	}
	if e.TLS {
		r.Args = append(r.Args, refArg{"tls", "bool", true})
	}
	r.ArgsNum = len(r.Args)
	return r
}

// jsonTokens returns the token stream of a JSON document: it captures key
// order and values (strings decoded, numbers exact).
func jsonTokens(t testing.TB, b []byte) []any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var toks []any
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return toks
		}
		if err != nil {
			t.Fatalf("invalid JSON: %v\n%s", err, b)
		}
		toks = append(toks, tok)
	}
}

var trickyStrings = []string{
	"",
	"plain",
	`quote" back\slash /slash`,
	"ctl\x00\x01\x08\x0c\x1f\x7f",
	"\n\r\t",
	"<script>&amp;</script>",
	"\u2028 line sep \u2029",
	"é 漢字 🙂",
	"bad\xffutf8\xc3",
	"surrogate \xed\xa0\x80",
	"cut \xe2\x82",
	"\ufffd literal",
}

func TestAppendJSONEquivalentToEncodingJSON(t *testing.T) {
	noRedact := NewRedactor(nil, true)
	for i, s := range trickyStrings {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			e := fullEvent(netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("::ffff:1.2.3.4"))
			e.ProcessName, e.ExecutablePath, e.HostName = s, s+"x", "h"+s
			e.Container = Container{ID: s, Name: s, Image: s, ImageDigest: s}
			e.Kubernetes = Kubernetes{PodName: s, PodNamespace: s, PodUID: s, PodSandbox: i%2 == 0}
			e.Meta.Iface = s
			e.Response.Status = s
			e.Response.Protocol = s
			e.Response.Headers = append(e.Response.Headers, Header{"X-Tricky", s}, Header{"x-tricky", s + s}, Header{"bad name", s})
			e.Request.Method, e.Request.Host, e.Request.URIPath = s, s, "/"+s
			e.Request.Headers = append(e.Request.Headers, Header{"Authorization", s})
			e.ContainerRuntime = s
			e.Direction = Direction(i % 3)
			e.LatencyKnown = i%2 == 1
			e.Truncated = i%2 == 0
			e.TLS = i%3 == 1
			if i%4 == 3 {
				e.Request = nil
			}

			got := e.AppendJSONWith(nil, noRedact)
			if !json.Valid(got) {
				t.Fatalf("invalid JSON:\n%s", got)
			}
			want, err := json.Marshal(reference(e))
			if err != nil {
				t.Fatal(err)
			}
			if gt, wt := jsonTokens(t, got), jsonTokens(t, want); !reflect.DeepEqual(gt, wt) {
				t.Errorf("token streams differ\n got %s\nwant %s", got, want)
			}
			if _, err := json.Marshal(decodeTrace(t, got)); err != nil {
				t.Errorf("re-marshal decoded trace.Event: %v", err)
			}
		})
	}
}

func TestAppendEscaped(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{`a"b\c`, `a\"b\\c`},
		{"\n\r\t", `\n\r\t`},
		{"\x00\x1f", `\u0000\u001f`},
		{"\x7f", "\x7f"},
		{"<>&", "<>&"},
		{"\u2028\u2029", `\u2028\u2029`},
		{"é", "é"},
		{"\xff", `\ufffd`},
		{"a\xc3", `a\ufffd`},
		{"\xed\xa0\x80", `\ufffd\ufffd\ufffd`},
	}
	for _, tc := range cases {
		if got := string(appendEscaped(nil, tc.in)); got != tc.want {
			t.Errorf("appendEscaped(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// headerKeys returns the keys of the headers object of arg argIdx, in the
// order they were written, and the decoded header map.
func headerKeys(t testing.TB, out []byte, argIdx int) ([]string, map[string][]string) {
	t.Helper()
	var doc struct {
		Args []struct {
			Value json.RawMessage `json:"value"`
		} `json:"args"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("decode: %v\n%s", err, out)
	}
	var value struct {
		Headers json.RawMessage `json:"headers"`
	}
	if err := json.Unmarshal(doc.Args[argIdx].Value, &value); err != nil {
		t.Fatalf("decode arg %d: %v\n%s", argIdx, err, out)
	}
	raw := value.Headers
	var m map[string][]string
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("headers are not an object of string arrays: %v\n%s", err, raw)
	}
	var keys []string
	depth := 0
	for _, tok := range jsonTokens(t, raw) {
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				depth++
			} else {
				depth--
			}
		case string:
			if depth == 1 {
				keys = append(keys, v)
			}
		}
	}
	return keys, m
}

func TestHeadersCanonicalSortedGrouped(t *testing.T) {
	e := &Event{Response: Response{Headers: []Header{
		{"x-b", "1"},
		{"CONTENT-TYPE", "text/plain"},
		{"X-B", "2"},
		{"x-a", "a"},
		{"www-authenticate", `Basic realm="r"`},
		{"X-b", "3"},
		{"bad name", "v"},
		{"", "empty name"},
	}}}
	keys, m := headerKeys(t, e.AppendJSON(nil), 1)
	wantKeys := []string{"", "Content-Type", "Www-Authenticate", "X-A", "X-B", "bad name"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("keys %q, want %q", keys, wantKeys)
	}
	if !slices.IsSorted(keys) {
		t.Errorf("keys not sorted: %q", keys)
	}
	if got := m["X-B"]; !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Errorf("X-B = %q, want wire order 1,2,3", got)
	}
	if got := m["Www-Authenticate"]; !slices.Equal(got, []string{"Basic realm=<redacted>"}) {
		t.Errorf("Www-Authenticate = %q (must be redacted whatever its case)", got)
	}
	for _, k := range keys {
		if k != "" && k != "bad name" && k != textproto.CanonicalMIMEHeaderKey(k) {
			t.Errorf("key %q is not canonical", k)
		}
	}
}

func TestHeadersManyFields(t *testing.T) {
	// More fields than the stack buffer: the fallback path must agree.
	var hs []Header
	for i := 200; i > 0; i-- {
		hs = append(hs, Header{fmt.Sprintf("x-h%03d", i%70), fmt.Sprint(i)})
	}
	e := &Event{Response: Response{Headers: hs}}
	out := e.AppendJSONWith(nil, NewRedactor(nil, true))
	keys, m := headerKeys(t, out, 1)
	if len(keys) != 70 || !slices.IsSorted(keys) {
		t.Fatalf("got %d keys, sorted=%v", len(keys), slices.IsSorted(keys))
	}
	if !reflect.DeepEqual(m, refHeaders(hs)) {
		t.Errorf("headers differ from reference grouping")
	}
}

func TestAddrFormatting(t *testing.T) {
	cases := []struct {
		in   netip.Addr
		want string
	}{
		{netip.Addr{}, ""},
		{netip.MustParseAddr("127.0.0.1"), "127.0.0.1"},
		{netip.MustParseAddr("::ffff:127.0.0.1"), "127.0.0.1"},
		{netip.MustParseAddr("2001:DB8:0:0:0:0:0:10"), "2001:db8::10"},
		{netip.MustParseAddr("fe80::1%eth0"), "fe80::1%eth0"},
		{netip.AddrFrom16([16]byte{}).WithZone(`a"b`), `::%a\"b`},
	}
	for _, tc := range cases {
		if got := string(appendAddr(nil, tc.in)); got != tc.want {
			t.Errorf("appendAddr(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMurmur3KnownVectors(t *testing.T) {
	// Published MurmurHash3_x86_32 test vectors.
	cases := []struct {
		in   string
		seed uint32
		want uint32
	}{
		{"", 0, 0},
		{"", 1, 0x514e28b7},
		{"", 0xffffffff, 0x81f16f39},
		{"\xff\xff\xff\xff", 0, 0x76293b50},
		{"\x21\x43\x65\x87", 0, 0xf55b516b},
		{"\x21\x43\x65", 0, 0x7e4a8634},
		{"\x21\x43", 0, 0xa0f7b07a},
		{"\x21", 0, 0x72661cf4},
		{"The quick brown fox jumps over the lazy dog", 0, 0x2e4ff723},
	}
	for _, tc := range cases {
		if got := murmur3x86_32([]byte(tc.in), tc.seed); got != tc.want {
			t.Errorf("murmur3(%q, %#x) = %#x, want %#x", tc.in, tc.seed, got, tc.want)
		}
	}
}

func TestEntityID(t *testing.T) {
	const start = uint64(1696268045240158340)
	if EntityID(42, start) != EntityID(42, start) {
		t.Fatal("not deterministic")
	}
	// Start times within one clock tick (as read from /proc) give the same id.
	tick := start / uint64(entityTimeRound) * uint64(entityTimeRound)
	if EntityID(42, tick) != EntityID(42, tick+uint64(entityTimeRound)-1) {
		t.Error("start times within one tick hash differently")
	}
	if EntityID(42, start) == EntityID(43, start) {
		t.Error("different ids hash equally")
	}
	if EntityID(42, tick) == EntityID(42, tick+uint64(entityTimeRound)) {
		t.Error("different ticks hash equally")
	}
	var b [12]byte
	b[3] = 42
	for i, v := 0, tick; i < 8; i++ {
		b[11-i] = byte(v >> (8 * i))
	}
	if got, want := EntityID(42, start), murmur3x86_32(b[:], 0); got != want {
		t.Errorf("EntityID = %d, want murmur3(BE id ++ BE start) = %d", got, want)
	}
}

func TestAppendJSONAppends(t *testing.T) {
	e := fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"))
	prefix := []byte("prefix:")
	out := e.AppendJSON(slices.Clone(prefix))
	if !bytes.HasPrefix(out, prefix) || !json.Valid(out[len(prefix):]) {
		t.Fatalf("AppendJSON must append one JSON object after existing bytes: %s", out)
	}
	if !bytes.Equal(out[len(prefix):], e.AppendJSON(nil)) {
		t.Error("output depends on dst contents")
	}
}

func TestAppendJSONNoAllocs(t *testing.T) {
	e := fullEvent(netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("2001:db8::1"))
	e.Request.URIPath = "/search?q=secret&page=2"
	e.Request.Headers = append(e.Request.Headers, Header{"Authorization", "Bearer abc"}, Header{"Cookie", "a=1; b=2"})
	e.Response.Headers = append(e.Response.Headers, Header{"WWW-Authenticate", `Bearer realm="x", error="y"`})
	r := NewRedactor([]string{"X-Secret"}, false)
	buf := make([]byte, 0, 8192)
	allocs := testing.AllocsPerRun(100, func() {
		buf = e.AppendJSONWith(buf[:0], r)
	})
	if allocs != 0 {
		t.Errorf("AppendJSONWith allocates %.1f times per event with a reused buffer, want 0", allocs)
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("Content-Type", "text/html", "x-custom", "v\x00\"\\", "200 OK", "/p?a=1")
	f.Add("content-type", "a\xffb", "CONTENT-TYPE", "\u2028", "404 Not Found", "")
	f.Add("bad name", "<&>", "bad\xffname", "é漢🙂", "200 \xc3", "/\n")
	f.Add("", "", "", "", "", "")
	f.Add("\xfe", "1", "\xff", "2", "x", "?")
	f.Fuzz(func(t *testing.T, name1, value1, name2, value2, status, uri string) {
		hs := []Header{{name1, value1}, {name2, value2}, {name1, value2}, {"X-Last", value1}}
		e := &Event{
			ProcessName: value1,
			Container:   Container{ID: value2, Name: status},
			Response:    Response{Status: status, StatusCode: 200, Protocol: "HTTP/1.1", Headers: hs, ContentLength: -1},
			Request:     &Request{Method: status, URIPath: uri, Headers: hs},
		}
		out := e.AppendJSONWith(nil, NewRedactor(nil, true))
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("invalid JSON or UTF-8:\n%q", out)
		}
		ev := decodeTrace(t, out)

		// Every string round-trips, with invalid UTF-8 bytes as U+FFFD.
		if ev.ProcessName != sanitizeUTF8(value1) || ev.Container.ID != sanitizeUTF8(value2) || ev.Container.Name != sanitizeUTF8(status) {
			t.Errorf("top-level strings changed: %q %q %q", ev.ProcessName, ev.Container.ID, ev.Container.Name)
		}
		resp := ev.Args[1].Value.(trace.ProtoHTTPResponse)
		req := ev.Args[2].Value.(trace.ProtoHTTPRequest)
		if resp.Status != sanitizeUTF8(status) || req.Method != sanitizeUTF8(status) || req.URIPath != sanitizeUTF8(uri) {
			t.Errorf("status/method/uri changed: %q %q %q", resp.Status, req.Method, req.URIPath)
		}

		// Headers: grouped by written name, wire order kept, keys sorted.
		want := map[string][]string{}
		for _, h := range hs {
			k := sanitizeUTF8(h.Name)
			if isToken(h.Name) {
				k = textproto.CanonicalMIMEHeaderKey(h.Name)
			}
			want[k] = append(want[k], sanitizeUTF8(h.Value))
		}
		for argIdx := 1; argIdx <= 2; argIdx++ {
			keys, got := headerKeys(t, out, argIdx)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("arg %d headers\n got %q\nwant %q", argIdx, got, want)
			}
			if !slices.IsSorted(keys) || len(keys) != len(want) {
				t.Errorf("arg %d keys not sorted/unique: %q", argIdx, keys)
			}
		}

		// With redaction on, the output stays valid and decodable.
		red := e.AppendJSON(nil)
		if !json.Valid(red) {
			t.Fatalf("redacted output invalid:\n%q", red)
		}
		decodeTrace(t, red)
		// A query or fragment with a non-empty parameter has a value to
		// replace; "?#" and "?&#&" have none.
		head, frag, hasFrag := strings.Cut(uri, "#")
		_, query, hasQuery := strings.Cut(head, "?")
		hasParam := hasQuery && strings.Trim(query, "&") != "" || hasFrag && strings.Trim(frag, "&") != ""
		if hasParam && !bytes.Contains(red, []byte("<redacted>")) {
			t.Errorf("query or fragment of %q not redacted", uri)
		}
	})
}

// benchEvent is the event of BenchmarkAppendJSON and
// BenchmarkAppendJSONWithIdentity: a JSON API response with its request.
func benchEvent() *Event {
	e := fullEvent(netip.MustParseAddr("172.17.0.2"), netip.MustParseAddr("192.168.100.16"))
	e.Response.Headers = []Header{
		{"Server", "nginx/1.25.3"},
		{"Date", "Mon, 02 Oct 2023 18:04:38 GMT"},
		{"Content-Type", "application/json; charset=utf-8"},
		{"Content-Length", "180"},
		{"Connection", "keep-alive"},
		{"Cache-Control", "private, max-age=0"},
		{"Set-Cookie", "session=abcdef123456; Path=/; Secure; HttpOnly"},
		{"Vary", "Accept-Encoding"},
	}
	e.Request.Headers = []Header{
		{"Host", "api.example.test"},
		{"User-Agent", "curl/8.5.0"},
		{"Accept", "*/*"},
		{"Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc"},
	}
	return e
}

func BenchmarkAppendJSON(b *testing.B) {
	benchmarkAppendJSON(b, benchEvent())
}

// BenchmarkAppendJSONWithIdentity is BenchmarkAppendJSON with the identity
// fields pre-encoded, as for every response of a connection after its first.
func BenchmarkAppendJSONWithIdentity(b *testing.B) {
	e := benchEvent()
	e.Identity = new(Identity)
	e.Identity.Encode(e)
	benchmarkAppendJSON(b, e)
}

func benchmarkAppendJSON(b *testing.B, e *Event) {
	r := NewRedactor(nil, false)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSONWith(buf[:0], r)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func TestNameTable(t *testing.T) {
	const tchars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	if len(nameTable) != 256 {
		t.Fatalf("nameTable has %d entries", len(nameTable))
	}
	for i := 0; i < 256; i++ {
		c := byte(i)
		if want := c < 128 && strings.IndexByte(tchars, c) >= 0; isTokenByte(c) != want {
			t.Errorf("isTokenByte(%#x) = %v, want %v", c, !want, want)
		}
		if got, want := nameTable[c]&clsLower != 0, 'a' <= c && c <= 'z'; got != want {
			t.Errorf("lower(%#x) = %v", c, got)
		}
		if got, want := nameTable[c]&clsUpper != 0, 'A' <= c && c <= 'Z'; got != want {
			t.Errorf("upper(%#x) = %v", c, got)
		}
		if got, want := nameTable[c]&clsPlain != 0, string(appendEscaped(nil, string(c))) == string(c) && c < 0x80; got != want {
			t.Errorf("plain(%#x) = %v", c, got)
		}
	}
}

func TestClassifyName(t *testing.T) {
	cases := []struct {
		name        string
		canon, asIs bool
	}{
		{"", false, true},
		{"Content-Type", true, true},
		{"content-type", true, false},
		{"X-B", true, true},
		{"X-b", true, false},
		{"Www-Authenticate", true, true},
		{"WWW-Authenticate", true, false},
		{"bad name", false, true},
		{"bad\"name", false, false},
		{"bad\xffname", false, false},
	}
	for _, tc := range cases {
		ref := classifyName([]Header{{Name: tc.name}}, 0)
		canon, asIs, fast := ref&refCanon != 0, ref&refAsIs != 0, ref&refFast != 0
		if canon != tc.canon || asIs != tc.asIs {
			t.Errorf("classifyName(%q) = %v,%v want %v,%v", tc.name, canon, asIs, tc.canon, tc.asIs)
		}
		if canon && asIs && textproto.CanonicalMIMEHeaderKey(tc.name) != tc.name {
			t.Errorf("%q marked as canonical but textproto disagrees", tc.name)
		}
		if fast {
			var b [4]byte
			copy(b[:], appendCanonicalNameOrRaw(tc.name, canon))
			if want := binary.BigEndian.Uint32(b[:]); ref.key() != want {
				t.Errorf("classifyName(%q).key = %#x, want %#x", tc.name, ref.key(), want)
			}
		}
	}
}

func appendCanonicalNameOrRaw(name string, canon bool) []byte {
	if canon {
		return appendCanonicalName(nil, name)
	}
	return []byte(name)
}

// TestCompareRefsAgreesWithSlowPath checks the fast comparison (prefix keys)
// against the rune-by-rune comparison of written names.
func TestCompareRefsAgreesWithSlowPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"content", "Content", "-", "type", "TYPE", "x", "X", "a", " ", "é", "\xff", "length", "Length-", "", "\"", "12345678"}
	name := func() string {
		var b strings.Builder
		for n := rng.IntN(5); n >= 0; n-- {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	for i := 0; i < 20000; i++ {
		hs := []Header{{Name: name()}, {Name: name()}}
		a, b := classifyName(hs, 0), classifyName(hs, 1)
		got := compareNames(hs, a, b)
		want := compareHeaderNames(hs[0].Name, a&refCanon != 0, hs[1].Name, b&refCanon != 0)
		if got != want {
			t.Fatalf("compareRefs(%q, %q) = %d, slow path says %d", hs[0].Name, hs[1].Name, got, want)
		}
	}
}

// BenchmarkAppendJSONSmall encodes an event shaped like Tracee's samples:
// three response headers, no request.
func BenchmarkAppendJSONSmall(b *testing.B) {
	e := fullEvent(netip.MustParseAddr("172.17.0.2"), netip.MustParseAddr("192.168.100.16"))
	e.Response.Headers = []Header{
		{"Content-Length", "180"},
		{"Content-Type", "application/x-binary"},
		{"Date", "Mon, 02 Oct 2023 18:04:38 GMT"},
	}
	e.Request, e.LatencyKnown = nil, false
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}
