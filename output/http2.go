package output

import "strconv"

// HTTP2 holds the args of an event that came from an HTTP/2 stream.
type HTTP2 struct {
	StreamID uint32 // "stream_id"
	// GRPC reports that the response carried a grpc-status (trailers, or a
	// trailers-only response): "grpc_status" and "grpc_message" are written.
	GRPC        bool
	GRPCStatus  int64
	GRPCMessage string // as sent (percent-encoded per the gRPC spec)
	// Partial marks an event decoded without the connection's full HPACK
	// state: "partial" true, and fields that could not be decoded are empty.
	Partial bool
}

// argsNum is how many args the HTTP/2 fields add.
func (h *HTTP2) argsNum() int {
	if h == nil {
		return 0
	}
	n := 1
	if h.GRPC {
		n += 2
	}
	if h.Partial {
		n++
	}
	return n
}

// appendArgs writes the HTTP/2 args.
func (h *HTTP2) appendArgs(dst []byte) []byte {
	if h == nil {
		return dst
	}
	dst = append(dst, `,{"name":"stream_id","type":"`+ArgTypeInt64+`","value":`...)
	dst = strconv.AppendUint(dst, uint64(h.StreamID), 10)
	dst = append(dst, '}')
	if h.GRPC {
		dst = append(dst, `,{"name":"grpc_status","type":"`+ArgTypeInt64+`","value":`...)
		dst = strconv.AppendInt(dst, h.GRPCStatus, 10)
		dst = appendStringField(dst, `},{"name":"grpc_message","type":"`+ArgTypeString+`","value":`, h.GRPCMessage)
		dst = append(dst, '}')
	}
	if h.Partial {
		dst = append(dst, `,{"name":"partial","type":"`+ArgTypeBool+`","value":true}`...)
	}
	return dst
}
