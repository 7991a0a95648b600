/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Recognising HTTP/2 on a connection joined midway (RFC 9113 section 4.1).
 *
 * A connection that carried data before boxtap started shows neither the
 * client preface nor the server's first SETTINGS frame. It is HTTP/2 when a
 * segment starts with a chain of plausible frame headers: each one a known
 * type (DATA..CONTINUATION), the flags that type defines, the reserved bit
 * clear, a stream id and a length the type allows, and a length of at most
 * the default maximum frame size (16 KiB). A segment is accepted when its
 * chain ends exactly at the segment's end, when H2_CHAIN headers in a row
 * were plausible, or when a frame that may be large (DATA, HEADERS,
 * CONTINUATION) runs past it. No HTTP/1 start line, TLS record or text
 * protocol starts with a 0 byte, so none passes the first check; binary
 * protocols must pass every check of every header of the chain.
 *
 * A segment that does not start at a frame boundary is not accepted: the
 * next segment that does (usually the next request or response: HTTP/2
 * stacks write whole frames) classifies the connection, within
 * CLASSIFY_TRIES segments. Pure functions on the 9 header bytes;
 * classify_skb.h walks the chain in a packet.
 */
#pragma once

#define H2_FRAME_HEADER 9
/* SETTINGS_MAX_FRAME_SIZE's initial value: a peer may raise it, but frames
 * of small messages stay below it, and those are what the join waits for. */
#define H2_MAX_FRAME 16384
/* Frame headers checked in one segment. */
#define H2_CHAIN 4

enum h2_type {
	H2_DATA = 0,
	H2_HEADERS = 1,
	H2_PRIORITY = 2,
	H2_RST_STREAM = 3,
	H2_SETTINGS = 4,
	H2_PUSH_PROMISE = 5,
	H2_PING = 6,
	H2_GOAWAY = 7,
	H2_WINDOW_UPDATE = 8,
	H2_CONTINUATION = 9,
};

static __always_inline __u32 h2_len(const __u8 *h)
{
	return ((__u32)h[0] << 16) | ((__u32)h[1] << 8) | h[2];
}

static __always_inline __u32 h2_stream(const __u8 *h)
{
	return ((__u32)(h[5] & 0x7f) << 24) | ((__u32)h[6] << 16) | ((__u32)h[7] << 8) | h[8];
}

/* The flags a type defines (section 6); a stack sets no other. */
static __always_inline int h2_flags_ok(__u8 type, __u8 flags)
{
	switch (type) {
	case H2_DATA:
		return !(flags & ~0x09); /* END_STREAM, PADDED */
	case H2_HEADERS:
		return !(flags & ~0x2d); /* END_STREAM, END_HEADERS, PADDED, PRIORITY */
	case H2_SETTINGS:
	case H2_PING:
		return !(flags & ~0x01); /* ACK */
	case H2_PUSH_PROMISE:
		return !(flags & ~0x0c); /* END_HEADERS, PADDED */
	case H2_CONTINUATION:
		return !(flags & ~0x04); /* END_HEADERS */
	}
	return flags == 0;
}

/* Frames of a stream need a stream id, connection frames must have none;
 * WINDOW_UPDATE is either. */
static __always_inline int h2_stream_ok(__u8 type, __u32 id)
{
	switch (type) {
	case H2_SETTINGS:
	case H2_PING:
	case H2_GOAWAY:
		return id == 0;
	case H2_WINDOW_UPDATE:
		return 1;
	}
	return id != 0;
}

/* The payload lengths fixed or bounded by the type. */
static __always_inline int h2_len_ok(__u8 type, __u8 flags, __u32 len)
{
	if (len > H2_MAX_FRAME)
		return 0;
	switch (type) {
	case H2_PRIORITY:
		return len == 5;
	case H2_RST_STREAM:
	case H2_WINDOW_UPDATE:
		return len == 4;
	case H2_SETTINGS:
		return (flags & 0x01) ? len == 0 : len % 6 == 0;
	case H2_PING:
		return len == 8;
	case H2_GOAWAY:
		return len >= 8;
	case H2_PUSH_PROMISE:
		return len >= 4;
	}
	return 1;
}

/* A plausible frame header. */
static __always_inline int h2_header_ok(const __u8 *h)
{
	__u8 type = h[3], flags = h[4];
	if (type > H2_CONTINUATION || (h[5] & 0x80))
		return 0;
	return h2_flags_ok(type, flags) && h2_stream_ok(type, h2_stream(h)) && h2_len_ok(type, flags, h2_len(h));
}

/* A frame that may run past the segment it starts: only these carry
 * payloads of a message's size. */
static __always_inline int h2_may_span(__u8 type)
{
	return type == H2_DATA || type == H2_HEADERS || type == H2_CONTINUATION;
}
