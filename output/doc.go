// Package output turns observed HTTP responses into Tracee v0.24
// trace.Event JSON (event 2011, net_packet_http_response) and writes them to
// sinks.
//
// # Schema mapping
//
// One Event becomes one JSON object with Tracee's keys, in Tracee's order, so
// consumers decoding with github.com/aquasecurity/tracee/types/trace work
// unchanged:
//
//	timestamp            Event.Timestamp: epoch ns of the response's first byte
//	threadStartTime      Event.ThreadStartTime: epoch ns, start of the attributed thread
//	processorId          Event.ProcessorID: CPU that observed the packet
//	processId, threadId, parentProcessId
//	                     ids in the task's pid namespace (Event.ProcessID, ...)
//	hostProcessId, hostThreadId, hostParentProcessId
//	                     ids in the initial pid namespace
//	userId, mountNamespace, pidNamespace, cgroupId
//	                     task credentials / namespace inodes / cgroup v2 id
//	processName          Event.ProcessName (comm)
//	executable.path      Event.ExecutablePath; the object is always present
//	hostName             Event.HostName (UTS name of the task)
//	containerId          Event.Container.ID
//	container            {id,name,image,imageDigest} from Event.Container, always
//	                     present, empty members omitted (Tracee's omitempty)
//	kubernetes           {podName,podNamespace,podUID,podSandbox}, always present,
//	                     empty members omitted
//	eventId              "2011" (a JSON string, as Tracee writes it)
//	eventName            "net_packet_http_response"
//	matchedPolicies      [""]
//	argsNum              number of entries in args
//	returnValue          0
//	syscall              ""
//	stackAddresses       [0]
//	contextFlags         {"containerStarted": Event.ContainerStarted, "isCompat": false}
//	threadEntityId, processEntityId, parentEntityId
//	                     Event.*EntityID, see EntityID
//	args                 see below
//
// args, in this order:
//
//	metadata           trace.PktMeta            Event.Meta: src_ip, dst_ip (canonical text;
//	                                            IPv4-mapped IPv6 written as IPv4), src_port,
//	                                            dst_port, protocol (6), packet_len, iface
//	http_response      trace.ProtoHTTPResponse  Event.Response: status ("200 OK"),
//	                                            status_code, protocol, headers, content_length
//	                                            (-1 when unknown or chunked)
//	http_request       trace.ProtoHTTPRequest   Event.Request, only when the paired request
//	                                            is known: method, protocol, host, uri_path,
//	                                            headers, content_length
//	latency_ns         int64                    Event.Latency, request start to response
//	                                            start, only when Event.LatencyKnown
//	direction          const char*              "egress" (the traced container sent the
//	                                            response) or "ingress" (it received it);
//	                                            omitted when unknown
//	truncated          bool                     Event.Truncated: the header block exceeded
//	                                            the parser's limit; always present
//	container_runtime  const char*              Event.ContainerRuntime ("docker",
//	                                            "containerd", ...), omitted when ""
//	lost_records       int64                    Event.LostRecords: capture records of this
//	                                            container dropped by the kernel so far;
//	                                            omitted while zero
//	evicted            int64                    Event.Evicted: connection states or buffered
//	                                            segments of this container dropped for the
//	                                            memory budget so far; omitted while zero
//	tls                bool                     Event.TLS: read as plaintext from a TLS
//	                                            library (always true; omitted otherwise).
//	                                            packet_len is then the plaintext bytes of
//	                                            the SSL_read/SSL_write call that carried
//	                                            the message's first byte
//
// The first two are exactly Tracee's. The extra arguments use type strings
// that Tracee's trace.Argument.UnmarshalJSON decodes into plain Go values:
// "trace.ProtoHTTPRequest" into trace.ProtoHTTPRequest, "int64" into int64
// (numbers with an unknown type string are rejected by Tracee, so "int" must
// not be used), and "const char*" (Tracee's own type string for string
// arguments) and "bool" are left as the decoded string and bool.
//
// headers is an object from canonical header name (as
// net/textproto.CanonicalMIMEHeaderKey would write it) to the list of its
// values in wire order; keys are sorted like encoding/json sorts map keys.
//
// # Redaction
//
// Secrets are redacted by default; see Redactor for the exact formats. The
// marker is "<redacted>":
//
//	Set-Cookie: session=<redacted>; Path=/; Secure; HttpOnly
//	Cookie: a=<redacted>; b=<redacted>
//	Authorization: Bearer <redacted>
//	WWW-Authenticate: Bearer realm=<redacted>, error=<redacted>
//	X-Api-Key: <redacted>
//	Location: https://app/cb?code=<redacted>#access_token=<redacted>
//	uri_path: /app;jsessionid=<redacted>/search?q=<redacted>&page=<redacted>
//
// # Encoding
//
// Event.AppendJSON is a hand-written append encoder: no reflection and no
// allocation with a reused buffer. Strings are escaped as JSON requires
// ('"', '\\', control characters), U+2028/U+2029 are escaped, invalid UTF-8
// bytes become U+FFFD, and '<', '>', '&' are written as is.
package output
