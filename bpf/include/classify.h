/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Classification of a TCP stream as HTTP/1.x, one byte at a time, so that a
 * start line split over several segments is recognised as well as one in a
 * single segment.
 *
 * The grammar is the one user space frames with (httpstream/startline.go):
 *   *( CR / LF )  token SP target SP "HTTP/1."     a request
 *   *( CR / LF )  "HTTP/1."                        a response
 *   a SETTINGS frame header (HTTP/2's server preface: 9 bytes, type 4,
 *   no ACK flag, stream 0, a length below 64 KiB and a multiple of 6)
 * "HTTP/1." is also "HTTP/2." (the client preface "PRI * HTTP/2.0"), so
 * HTTP/2 with prior knowledge is captured whichever side speaks first.
 * token is RFC 9110's tchar+, target is one or more visible bytes. A stream
 * is HTTP once a version is matched, or once CLS_MAX bytes were a valid
 * prefix of that grammar (a very long method or target); it is not HTTP as
 * soon as a byte cannot continue a valid prefix. So the kernel never rejects
 * a stream user space would frame, and it decides on bytes, not segments.
 *
 * classify_skb.h runs it over the bytes of a packet.
 */
#pragma once

/* Bytes of a stream looked at before it is called HTTP on a valid prefix.
 * A power of two (the step masks its index with it). */
#define CLS_MAX 64

enum cls_phase {
	CLS_LEAD = 0,    /* empty lines before the start line */
	CLS_METHOD = 1,  /* a token; or "HTTP" then '/' for a response */
	CLS_TARGET = 2,  /* after the method's SP */
	CLS_VERSION = 3, /* after the target's SP: "HTTP/1." */
	CLS_RESP = 4,    /* after "HTTP/": "1." */
	CLS_SETTINGS = 5, /* a stream that starts with a 0 byte: an HTTP/2 SETTINGS frame header */
};

enum cls_verdict {
	CLS_PENDING = 0,
	CLS_YES = 1,
	CLS_NO = 2,
};

/* One direction's classifier; a fresh connection keeps it across segments. */
struct cls_state {
	__u8 phase;   /* enum cls_phase */
	__u8 idx;     /* bytes matched in this phase (saturates at 255) */
	__u8 hmatch;  /* CLS_METHOD: the token so far is a prefix of "HTTP" */
	__u8 verdict; /* enum cls_verdict */
	__u16 n;      /* bytes looked at so far */
	__u16 flen;   /* CLS_SETTINGS: the frame length's low 16 bits so far */
};

/* RFC 9110 tchar: "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "."
 * / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA. */
static __always_inline int is_tchar(__u8 ch)
{
	if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
		return 1;
	switch (ch) {
	case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
	case '+': case '-': case '.': case '^': case '_': case '`': case '|': case '~':
		return 1;
	}
	return 0;
}

/* One byte of a SETTINGS frame header after its first (0) byte: length
 * (bytes 1-2), type 4 (3), flags without ACK (4), stream 0 (5-8). */
static __always_inline __u8 cls_settings(struct cls_state *cs, __u8 ch)
{
	switch (cs->idx) {
	case 1:
	case 2:
		cs->flen = (__u16)(cs->flen << 8) | ch;
		break;
	case 3:
		if (ch != 0x04 || cs->flen % 6)
			return CLS_NO;
		break;
	case 4:
		if (ch & 0x01)
			return CLS_NO;
		break;
	default:
		if (ch != 0)
			return CLS_NO;
	}
	return ++cs->idx == 9 ? CLS_YES : CLS_PENDING;
}

/* Feed one byte; returns the verdict it leads to. */
static __always_inline __u8 cls_byte(struct cls_state *cs, __u8 ch)
{
	/* "HTTP/1." as two words the step indexes into. */
	const __u64 version = 0x2e312f50545448ULL; /* "HTTP/1." little-endian */

	switch (cs->phase) {
	case CLS_LEAD:
		if (ch == '\r' || ch == '\n')
			return CLS_PENDING;
		if (ch == 0 && cs->n == 0) {
			/* No start line begins with a 0 byte; a SETTINGS frame
			 * (length below 64 KiB) does. */
			cs->phase = CLS_SETTINGS;
			cs->idx = 1;
			cs->flen = 0;
			return CLS_PENDING;
		}
		cs->phase = CLS_METHOD;
		cs->idx = 0;
		cs->hmatch = 1;
		/* fall through: this byte starts the method */
	case CLS_METHOD:
		if (is_tchar(ch)) {
			cs->hmatch = cs->hmatch && cs->idx < 4 && ch == ((version >> (8 * cs->idx)) & 0xff);
			if (cs->idx < 255)
				cs->idx++;
			return CLS_PENDING;
		}
		if (ch == ' ' && cs->idx > 0) {
			cs->phase = CLS_TARGET;
			cs->idx = 0;
			return CLS_PENDING;
		}
		if (ch == '/' && cs->hmatch && cs->idx == 4) {
			cs->phase = CLS_RESP;
			cs->idx = 0;
			return CLS_PENDING;
		}
		return CLS_NO;
	case CLS_TARGET:
		if (ch > ' ' && ch != 0x7f) {
			cs->idx = 1;
			return CLS_PENDING;
		}
		if (ch == ' ' && cs->idx) {
			cs->phase = CLS_VERSION;
			cs->idx = 0;
			return CLS_PENDING;
		}
		return CLS_NO;
	case CLS_VERSION:
		/* "HTTP/1." or "HTTP/2." (byte 5) */
		if (cs->idx >= 7 || (ch != ((version >> (8 * cs->idx)) & 0xff) && !(cs->idx == 5 && ch == '2')))
			return CLS_NO;
		return ++cs->idx == 7 ? CLS_YES : CLS_PENDING;
	case CLS_RESP:
		/* "1." are bytes 5 and 6 of "HTTP/1." */
		if (cs->idx >= 2 || ch != ((version >> (8 * (5 + cs->idx))) & 0xff))
			return CLS_NO;
		return ++cs->idx == 2 ? CLS_YES : CLS_PENDING;
	case CLS_SETTINGS:
		return cls_settings(cs, ch);
	}
	return CLS_NO;
}
