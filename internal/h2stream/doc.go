// Package h2stream decodes the HTTP/2 frames of one connection (RFC 9113)
// into one httpstream.Response per response stream. It implements
// httpstream.Protocol: httpstream keeps reassembling TCP and hands over
// each direction's bytes in order once the connection switched to HTTP/2.
//
// Frames are split from arbitrary segmentation: the 9-byte header first,
// then a non-DATA frame is buffered whole (up to the receiver's
// SETTINGS_MAX_FRAME_SIZE, never above 1 MiB) and parsed by x/net's Framer;
// DATA payloads are only counted. Header blocks (HEADERS or PUSH_PROMISE,
// then CONTINUATION) go through x/net's HPACK decoder, one per direction,
// kept from the connection's start; SETTINGS_HEADER_TABLE_SIZE allows the
// peer's encoder a larger table (up to 64 KiB).
//
// A stream's request comes from the client's HEADERS (or a PUSH_PROMISE);
// its event is given when the response stream ends, so that a gRPC status
// in the trailers and the DATA length are known. Interim 1xx heads are
// given at once. A stream ended before any response head (RST_STREAM, a
// GOAWAY below its id, the connection's end) is counted in
// Stats.CutStreams. Anything that breaks the framing (uncaptured bytes
// outside a DATA payload, an invalid frame, an HPACK error) stops the
// parsing of that direction and counts one Stats.Desyncs.
//
// Unlike httpstream's, the strings of an event are not rewritten later;
// the Response and Request structs themselves, and their Headers slices
// (those of a dropped stream serve the next one), are reused after emit.
package h2stream
