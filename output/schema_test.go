package output

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"reflect"
	"sort"
	"testing"

	"github.com/aquasecurity/tracee/types/trace"
)

// decodeTrace decodes our output with Tracee's own types.
func decodeTrace(t *testing.T, b []byte) trace.Event {
	t.Helper()
	var ev trace.Event
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("tracee's trace.Event rejected our JSON: %v\n%s", err, b)
	}
	return ev
}

func TestSchemaDecodesWithTraceeTypes(t *testing.T) {
	cases := []struct {
		name             string
		src, dst         netip.Addr
		wantSrc, wantDst string
	}{
		{"ipv4", netip.MustParseAddr("172.17.0.2"), netip.MustParseAddr("192.168.100.16"), "172.17.0.2", "192.168.100.16"},
		{"ipv6", netip.MustParseAddr("2001:0db8:0000:0000:0000:0000:0000:0001"), netip.MustParseAddr("::1"), "2001:db8::1", "::1"},
		{"v4-mapped", netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("::ffff:127.0.0.1"), "10.0.0.1", "127.0.0.1"},
	}
	for _, tc := range cases {
		for _, withIdentity := range []bool{false, true} {
			name := tc.name
			if withIdentity {
				name += "/identity"
			}
			t.Run(name, func(t *testing.T) {
				testSchemaDecodes(t, tc.src, tc.dst, tc.wantSrc, tc.wantDst, withIdentity)
			})
		}
	}
}

// testSchemaDecodes checks one event against Tracee's types; withIdentity
// encodes its identity fields from a pre-encoded Identity.
func testSchemaDecodes(t *testing.T, src, dst netip.Addr, wantSrc, wantDst string, withIdentity bool) {
	e := fullEvent(src, dst)
	if withIdentity {
		e.Identity = new(Identity)
		e.Identity.Encode(e)
	}
	out := e.AppendJSON(nil)
	ev := decodeTrace(t, out)

	want := trace.Event{
		Timestamp:           int(e.Timestamp),
		ThreadStartTime:     int(e.ThreadStartTime),
		ProcessorID:         int(e.ProcessorID),
		ProcessID:           int(e.ProcessID),
		CgroupID:            uint(e.CgroupID),
		ThreadID:            int(e.ThreadID),
		ParentProcessID:     int(e.ParentProcessID),
		HostProcessID:       int(e.HostProcessID),
		HostThreadID:        int(e.HostThreadID),
		HostParentProcessID: int(e.HostParentProcessID),
		UserID:              int(e.UserID),
		MountNS:             int(e.MountNS),
		PIDNS:               int(e.PIDNS),
		ProcessName:         e.ProcessName,
		Executable:          trace.File{Path: e.ExecutablePath},
		HostName:            e.HostName,
		ContainerID:         e.Container.ID,
		Container: trace.Container{
			ID:          e.Container.ID,
			Name:        e.Container.Name,
			ImageName:   e.Container.Image,
			ImageDigest: e.Container.ImageDigest,
		},
		Kubernetes: trace.Kubernetes{
			PodName:      e.Kubernetes.PodName,
			PodNamespace: e.Kubernetes.PodNamespace,
			PodUID:       e.Kubernetes.PodUID,
			PodSandbox:   true,
		},
		EventID:         2011,
		EventName:       "net_packet_http_response",
		MatchedPolicies: []string{""},
		ArgsNum:         8,
		ReturnValue:     0,
		Syscall:         "",
		StackAddresses:  []uint64{0},
		ContextFlags:    trace.ContextFlags{ContainerStarted: true},
		ThreadEntityId:  e.ThreadEntityID,
		ProcessEntityId: e.ProcessEntityID,
		ParentEntityId:  e.ParentEntityID,
	}
	got := ev
	got.Args = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("top level mismatch\n got %+v\nwant %+v", got, want)
	}
	if len(ev.Args) != ev.ArgsNum {
		t.Errorf("argsNum %d but %d args", ev.ArgsNum, len(ev.Args))
	}

	wantArgs := []trace.Argument{
		{ArgMeta: trace.ArgMeta{Name: "metadata", Type: "trace.PktMeta"}, Value: trace.PktMeta{
			SrcIP: wantSrc, DstIP: wantDst, SrcPort: 8080, DstPort: 50322, Protocol: 6, PacketLen: 331, Iface: "eth0",
		}},
		{ArgMeta: trace.ArgMeta{Name: "http_response", Type: "trace.ProtoHTTPResponse"}, Value: trace.ProtoHTTPResponse{
			Status: "200 OK", StatusCode: 200, Protocol: "HTTP/1.1", ContentLength: 180,
			Headers: http.Header{
				"Date":           {"Mon, 02 Oct 2023 18:04:38 GMT"},
				"Content-Type":   {"text/html; charset=UTF-8"},
				"Set-Cookie":     {"a=<redacted>; Path=/", "b=<redacted>; Secure"},
				"Vary":           {"Accept-Encoding"},
				"Content-Length": {"180"},
			},
		}},
		{ArgMeta: trace.ArgMeta{Name: "http_request", Type: "trace.ProtoHTTPRequest"}, Value: trace.ProtoHTTPRequest{
			Method: "GET", Protocol: "HTTP/1.1", Host: "example.test", URIPath: "/index.html", ContentLength: 0,
			Headers: http.Header{
				"Host":       {"example.test"},
				"User-Agent": {"curl/8.0"},
				"Accept":     {"*/*"},
			},
		}},
		{ArgMeta: trace.ArgMeta{Name: "latency_ns", Type: "int64"}, Value: int64(1500000)},
		{ArgMeta: trace.ArgMeta{Name: "direction", Type: "const char*"}, Value: "egress"},
		{ArgMeta: trace.ArgMeta{Name: "truncated", Type: "bool"}, Value: true},
		{ArgMeta: trace.ArgMeta{Name: "container_runtime", Type: "const char*"}, Value: "docker"},
		{ArgMeta: trace.ArgMeta{Name: "lost_records", Type: "int64"}, Value: int64(3)},
	}
	if !reflect.DeepEqual(ev.Args, wantArgs) {
		t.Errorf("args mismatch\n got %#v\nwant %#v", ev.Args, wantArgs)
	}

	// Tracee's own accessors work on the extra args.
	if s, err := ev.GetStringArgumentByName("direction"); err != nil || s != "egress" {
		t.Errorf("GetStringArgumentByName(direction) = %q, %v", s, err)
	}
	if v, err := trace.ArgVal[int64](ev.Args, "latency_ns"); err != nil || v != 1500000 {
		t.Errorf("ArgVal[int64](latency_ns) = %d, %v", v, err)
	}
	if v, err := trace.ArgVal[bool](ev.Args, "truncated"); err != nil || !v {
		t.Errorf("ArgVal[bool](truncated) = %v, %v", v, err)
	}
}

func TestSchemaMinimalEvent(t *testing.T) {
	// Nothing optional known: the two Tracee args plus "truncated".
	e := &Event{Response: Response{Status: "204 No Content", StatusCode: 204, Protocol: "HTTP/1.1", ContentLength: -1}}
	out := e.AppendJSON(nil)
	ev := decodeTrace(t, out)
	if ev.ArgsNum != 3 || len(ev.Args) != 3 {
		t.Fatalf("argsNum=%d len(args)=%d, want 3", ev.ArgsNum, len(ev.Args))
	}
	names := []string{ev.Args[0].Name, ev.Args[1].Name, ev.Args[2].Name}
	if !reflect.DeepEqual(names, []string{"metadata", "http_response", "truncated"}) {
		t.Errorf("arg names %v", names)
	}
	resp, ok := ev.Args[1].Value.(trace.ProtoHTTPResponse)
	if !ok || resp.ContentLength != -1 || resp.StatusCode != 204 || len(resp.Headers) != 0 {
		t.Errorf("http_response = %#v", ev.Args[1].Value)
	}
	var generic map[string]any
	if err := json.Unmarshal(out, &generic); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"container", "kubernetes"} {
		obj, ok := generic[key].(map[string]any)
		if !ok || len(obj) != 0 {
			t.Errorf("%s = %#v, want present and empty", key, generic[key])
		}
	}
	if exe, ok := generic["executable"].(map[string]any); !ok || exe["path"] != "" {
		t.Errorf("executable = %#v, want {\"path\":\"\"}", generic["executable"])
	}
}

// jsonKind names the JSON type of a decoded value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case float64, json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "?"
}

func TestFieldPresenceMatchesTracee(t *testing.T) {
	ref, err := json.Marshal(trace.Event{})
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(ref, &want); err != nil {
		t.Fatal(err)
	}
	for name, e := range map[string]*Event{
		"full":  fullEvent(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")),
		"empty": {},
	} {
		var got map[string]any
		if err := json.Unmarshal(e.AppendJSON(nil), &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var keys []string
		for k := range want {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			g, ok := got[k]
			if !ok {
				t.Errorf("%s: key %q that tracee marshals is missing", name, k)
				continue
			}
			wk, gk := jsonKind(want[k]), jsonKind(g)
			if wk == "null" {
				// nil slices in the zero trace.Event (stackAddresses, args):
				// ours must be arrays.
				wk = "array"
			}
			if wk != gk {
				t.Errorf("%s: key %q is %s, tracee writes %s", name, k, gk, wk)
			}
		}
		// Sub-objects: contextFlags and executable carry the same keys.
		for _, obj := range []string{"contextFlags", "executable"} {
			wm, gm := want[obj].(map[string]any), got[obj].(map[string]any)
			for k, v := range wm {
				if jsonKind(gm[k]) != jsonKind(v) {
					t.Errorf("%s: %s.%s is %s, tracee writes %s", name, obj, k, jsonKind(gm[k]), jsonKind(v))
				}
			}
		}
	}
}
