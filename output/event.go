package output

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"time"
)

// Tracee identifiers of the event this package emits.
const (
	// EventID is Tracee's id of net_packet_http_response; it is encoded as
	// a JSON string ("2011"), as Tracee does.
	EventID = 2011
	// EventName is Tracee's name of event 2011.
	EventName = "net_packet_http_response"
)

// Arg type strings written in the "type" field of each argument. Each one is
// a type string that Tracee's trace.Argument.UnmarshalJSON understands, so
// that consumers decoding with Tracee's own types get typed Go values.
const (
	ArgTypePktMeta      = "trace.PktMeta"           // -> trace.PktMeta
	ArgTypeHTTPResponse = "trace.ProtoHTTPResponse" // -> trace.ProtoHTTPResponse
	ArgTypeHTTPRequest  = "trace.ProtoHTTPRequest"  // -> trace.ProtoHTTPRequest
	ArgTypeInt64        = "int64"                   // JSON number -> int64
	ArgTypeString       = "const char*"             // JSON string -> string (Tracee's name for string args)
	ArgTypeBool         = "bool"                    // JSON bool -> bool
)

// Header is one HTTP header field as it appeared on the wire. Events keep
// headers as an ordered slice; the encoder groups repeated names (in wire
// order), canonicalizes names and sorts them when it writes the JSON object.
type Header struct {
	Name  string
	Value string
}

// Container describes the traced container ("container" object in Tracee).
type Container struct {
	ID          string // full container id; also written as top-level "containerId"
	Name        string
	Image       string
	ImageDigest string
}

// Kubernetes describes the pod of the traced container, when known.
type Kubernetes struct {
	PodName      string
	PodNamespace string
	PodUID       string
	PodSandbox   bool
}

// PacketMeta is the "metadata" argument (trace.PktMeta).
type PacketMeta struct {
	// SrcIP and DstIP are written in canonical text form; IPv4-mapped IPv6
	// addresses are written as plain IPv4. The zero Addr is written as "".
	SrcIP     netip.Addr
	DstIP     netip.Addr
	SrcPort   uint16
	DstPort   uint16
	Protocol  uint8  // IP protocol number; 6 for TCP
	PacketLen uint32 // bytes of the packet (or reassembled header block) the event came from
	Iface     string // interface name; "any" when unknown, like Tracee
}

// Response is the "http_response" argument (trace.ProtoHTTPResponse).
type Response struct {
	Status        string // status text after the protocol, e.g. "200 OK"
	StatusCode    int
	Protocol      string // e.g. "HTTP/1.1"
	Headers       []Header
	ContentLength int64 // -1 when unknown or chunked
}

// Request is the "http_request" argument (trace.ProtoHTTPRequest) of the
// request that the response answers.
type Request struct {
	Method        string
	Protocol      string
	Host          string
	URIPath       string // request target; query parameter values are redacted on output
	Headers       []Header
	ContentLength int64 // -1 when unknown or chunked
}

// Direction tells whether the traced container sent the response (it is the
// server: egress) or received it (it is the client: ingress).
type Direction uint8

// Directions; DirectionUnknown omits the "direction" argument.
const (
	DirectionUnknown Direction = iota
	DirectionEgress
	DirectionIngress
)

// String returns "egress", "ingress" or "unknown".
func (d Direction) String() string {
	switch d {
	case DirectionEgress:
		return "egress"
	case DirectionIngress:
		return "ingress"
	default:
		return "unknown"
	}
}

// Event is everything one net_packet_http_response event carries. It is plain
// data: fill it, then encode it with AppendJSON (or a Sink). An Event may be
// reused for the next response once it has been written.
type Event struct {
	Timestamp       int64 // epoch ns of the response's first byte
	ThreadStartTime int64 // epoch ns

	ProcessorID         uint32
	ProcessID           uint32 // in the task's pid namespace
	ThreadID            uint32
	ParentProcessID     uint32
	HostProcessID       uint32 // in the initial pid namespace
	HostThreadID        uint32
	HostParentProcessID uint32
	UserID              uint32
	MountNS             uint32 // mount namespace inode number
	PIDNS               uint32 // pid namespace inode number
	CgroupID            uint64

	ProcessName    string
	ExecutablePath string
	HostName       string // UTS hostname of the task (the container's hostname)

	Container        Container
	Kubernetes       Kubernetes
	ContainerStarted bool

	// Entity ids; see EntityID.
	ThreadEntityID  uint32
	ProcessEntityID uint32
	ParentEntityID  uint32

	Meta     PacketMeta
	Response Response

	// Request is the paired request, nil when unknown.
	Request *Request
	// Latency is request start to response start; written only when
	// LatencyKnown is true.
	Latency      time.Duration
	LatencyKnown bool
	Direction    Direction
	// Truncated reports that the header block exceeded the parser's limit,
	// so Headers is incomplete.
	Truncated bool
	// ContainerRuntime is "docker", "containerd", "podman", ...; omitted when "".
	ContainerRuntime string
	// LostRecords is how many capture records of this container the kernel
	// had to drop (ring buffer full) since tracing began; the "lost_records"
	// arg is written only once it is non-zero, so a consumer sees on every
	// later event that earlier responses may be missing.
	LostRecords uint64
	// Evicted is how many connection states or buffered segments of this
	// container boxtap dropped to stay within its memory budget; the
	// "evicted" arg is written only once it is non-zero.
	Evicted uint64
	// HTTP2, when non-nil, adds the args of an HTTP/2 response stream
	// (stream_id, gRPC status, partial).
	HTTP2 *HTTP2
	// TLS reports that the exchange was read as plaintext from a TLS
	// library, not from packets; the "tls" arg is written only when true.
	TLS bool

	// Identity, when non-nil and encoded, supplies the pre-encoded bytes of
	// the identity fields (processId ... kubernetes, eventId, eventName,
	// matchedPolicies, contextFlags, entity ids; see Identity) instead of
	// encoding them from this Event. The caller must set it only to an
	// Identity encoded from the same values as this Event's (same ids,
	// namespaces, names, executable path, hostName, container, kubernetes,
	// containerStarted and entity ids; Identity.Matches checks that): the
	// encoder does not check, and would write the Identity's values. It is
	// read only while the event is encoded.
	Identity *Identity
}

// ArgsNum returns how many arguments the encoded event carries (Tracee's
// "argsNum").
func (e *Event) ArgsNum() int {
	n := 3 // metadata, http_response, truncated
	if e.Request != nil {
		n++
	}
	if e.LatencyKnown {
		n++
	}
	if e.Direction == DirectionEgress || e.Direction == DirectionIngress {
		n++
	}
	if e.ContainerRuntime != "" {
		n++
	}
	if e.LostRecords > 0 {
		n++
	}
	if e.Evicted > 0 {
		n++
	}
	if e.TLS {
		n++
	}
	return n + e.HTTP2.argsNum()
}

// entityTimeRound is the granularity start times are rounded down to before
// hashing: one USER_HZ clock tick (10 ms), the precision /proc/PID/stat
// offers, so ids computed from eBPF data and from procfs agree.
const entityTimeRound = uint64(10 * time.Millisecond)

// EntityID computes a Tracee-style entity id for a task: MurmurHash3 (x86,
// 32-bit, seed 0) over 12 bytes, the id as a big-endian uint32 followed by
// the start time (ns, rounded down to a 10 ms clock tick) as a big-endian
// uint64. Tracee uses the same recipe (hash of id and start time) for
// threadEntityId (tid, thread start), processEntityId (pid, leader start) and
// parentEntityId (ppid, parent start). Pass host ids and the same clock for
// every call; ids are stable across events but are not guaranteed to equal
// the numbers a Tracee build of a given version prints.
func EntityID(id uint32, startTimeNS uint64) uint32 {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], id)
	binary.BigEndian.PutUint64(b[4:], startTimeNS/entityTimeRound*entityTimeRound)
	return murmur3x86_32(b[:], 0)
}

// murmur3x86_32 is MurmurHash3_x86_32.
func murmur3x86_32(data []byte, seed uint32) uint32 {
	const (
		c1 = 0xcc9e2d51
		c2 = 0x1b873593
	)
	h := seed
	n := len(data) / 4 * 4
	for i := 0; i < n; i += 4 {
		k := binary.LittleEndian.Uint32(data[i:])
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
		h = bits.RotateLeft32(h, 13)
		h = h*5 + 0xe6546b64
	}
	var k uint32
	tail := data[n:]
	switch len(tail) {
	case 3:
		k ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		k ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		k ^= uint32(tail[0])
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
	}
	h ^= uint32(len(data))
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
