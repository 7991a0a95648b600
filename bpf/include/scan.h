/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The Content-Length scan of a response start, which lets the kernel skip
 * declared bodies instead of copying them.
 *
 * Included by capture.c after its state types, maps and small helpers,
 * which it uses; not a header of its own standing.
 */
#pragma once

/* Parse the status code of "HTTP/1.x NNN". Returns 0 when malformed. */
static __always_inline int status_code(const __u8 *b)
{
	if (b[8] != ' ')
		return 0;
	int d0 = b[9] - '0', d1 = b[10] - '0', d2 = b[11] - '0';
	if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9)
		return 0;
	return d0 * 100 + d1 * 10 + d2;
}

/* Bytes of b equal to '\n': the high bit of each such byte is set, exactly
 * (no false positives next to a match, unlike the shorter zero-byte test). */
static __always_inline __u64 newline_bytes(__u64 w)
{
	const __u64 low7 = 0x7f7f7f7f7f7f7f7fULL;
	__u64 x = w ^ 0x0a0a0a0a0a0a0a0aULL;
	return ~(((x & low7) + low7) | x | low7);
}

/* The 8 bytes at b[at], lower-cased with |0x20 (as the header names are
 * compared), first byte lowest. */
static __always_inline __u64 folded8(const __u8 *b, __u32 at)
{
	__u64 w;
	__builtin_memcpy(&w, b + (at & (SCAN_MAX - 1)), sizeof(w));
	return w | 0x2020202020202020ULL;
}

/* The Content-Length value that starts at b[at] (after the colon): optional
 * blanks, digits, then a blank or CR. Sets st->bad when it is anything else
 * or too large. */
static __always_inline void scan_cl_value(struct scan_buf *s, __u32 at)
{
	struct scan_state *st = &s->st;
	__u64 cl = 0;
	int digits = 0;
	for (int k = 0; k < 24; k++) {
		__u8 ch = s->b[(at + k) & (SCAN_MAX - 1)];
		if (ch >= '0' && ch <= '9') {
			cl = cl * 10 + (ch - '0');
			digits = 1;
			if (cl > 0x7fffffffULL)
				break;
		} else if (ch == ' ' || ch == '\t') {
			if (digits) {
				st->cl = cl;
				return;
			}
		} else if (ch == '\r' && digits) {
			st->cl = cl;
			return;
		} else {
			break;
		}
	}
	st->bad = 1;
}

/* A line feed at b[j], j >= 12: the end of the header block when it closes
 * an empty line, else the start of a header line, whose name is checked for
 * Content-Length and Transfer-Encoding. n bytes of b are valid. Returns 1 to
 * stop the scan. */
static __always_inline long scan_line(struct scan_buf *s, __u32 j, __u32 n)
{
	struct scan_state *st = &s->st;
	if (j >= 15 && s->b[(j - 1) & (SCAN_MAX - 1)] == '\r' && s->b[(j - 2) & (SCAN_MAX - 1)] == '\n' &&
	    s->b[(j - 3) & (SCAN_MAX - 1)] == '\r') {
		st->hdr_end = j + 1;
		return 1;
	}
	if (j + 16 > n)
		return 0; /* no room for a name of interest before the end */
	__u8 first = s->b[(j + 1) & (SCAN_MAX - 1)] | 0x20;
	if (first != 'c' && first != 't')
		return 0;
	/* "content-length:" and "transfer-encodi": 8 bytes, then 7 */
	const __u64 low7 = 0x00ffffffffffffffULL;
	__u64 a = folded8(s->b, j + 1), c = folded8(s->b, j + 9) & low7;
	if (a == 0x2d746e65746e6f63ULL && c == 0x003a6874676e656cULL) {
		if (++st->cls > 1) {
			st->bad = 1;
			return 1;
		}
		scan_cl_value(s, j + 16);
		return st->bad;
	}
	if (a == 0x726566736e617274ULL && c == 0x0069646f636e652dULL) {
		st->bad = 1;
		return 1;
	}
	return 0;
}

struct scan_ctx {
	__u32 lvl; /* which scratch buffer */
	__u32 n;   /* bytes of it that hold the response start */
};

/* One 8-byte word of the scan, b[8i+8 .. 8i+16): each line feed in it at or
 * after byte 12 and before n. A header block of 130 bytes takes 16 steps
 * and a look at each of its 8 or so line feeds. ctx is a struct scan_ctx.
 * Returns 1 to stop. */
static long scan_step(__u64 i, void *ctx)
{
	struct scan_ctx *x = ctx;
	struct scan_buf *s = bpf_map_lookup_elem(&scratch, &x->lvl);
	if (!s)
		return 1;
	__u32 base = 8 + 8 * (__u32)i;
	__u64 w;
	__builtin_memcpy(&w, s->b + (base & (SCAN_MAX - 1)), sizeof(w));
	__u64 m = newline_bytes(w);
	if (!m)
		return 0;
	for (__u32 t = 0; t < 8; t++) {
		if (!((m >> (8 * t + 7)) & 1))
			continue;
		__u32 j = base + t;
		if (j < 12)
			continue;
		if (j >= x->n)
			return 1;
		if (scan_line(s, j, x->n))
			return 1;
	}
	return 0;
}

/*
 * Length of the response at the start of s->b[0..n), when the kernel can tell
 * cheaply: its header block ends within the buffer and it carries no body
 * (1xx, 204, 304) or exactly one Content-Length and no Transfer-Encoding.
 * Returns 0 when unknown. User space frames every message itself and checks
 * each skip the kernel makes against its own framing.
 */
static __always_inline __u32 scan_response(struct scan_buf *s, __u32 n, __u32 lvl)
{
	if (!(s->b[0] == 'H' && s->b[1] == 'T' && s->b[2] == 'T' && s->b[3] == 'P' && s->b[4] == '/'))
		return 0;
	int code = status_code(s->b);
	if (!code)
		return 0;
	struct scan_state *st = &s->st;
	__builtin_memset(st, 0, sizeof(*st));
	struct scan_ctx x = {.lvl = lvl, .n = n};
	bpf_loop((n - 1) / 8, scan_step, &x, 0);
	if (st->bad || !st->hdr_end)
		return 0;
	if (code < 200 || code == 204 || code == 304)
		return st->hdr_end;
	if (st->cls != 1)
		return 0; /* chunked or close-delimited: user space frames it */
	__u64 total = (__u64)st->hdr_end + st->cl;
	if (total > 0x7fffffffULL)
		return 0;
	return (__u32)total;
}

/* Load the start of a response into per-CPU scratch and scan it. */
static __always_inline __u32 response_len(struct __sk_buff *skb, __u32 off, __u32 len, __u32 lvl)
{
	struct scan_buf *s = bpf_map_lookup_elem(&scratch, &lvl);
	if (!s)
		return 0;
	__u32 n = len > SCAN_MAX ? SCAN_MAX : len;
	if (n < 16)
		return 0;
	n = bounded_len(n, SCAN_MAX);
	if (bpf_skb_load_bytes(skb, off, s->b, n))
		return 0;
	return scan_response(s, n, lvl);
}

/* The status code of the response response_len just scanned (its start is
 * still in scratch) when the status filter leaves it out, else 0. Interim responses (1xx) are
 * never left out: user space pairs requests with final responses only. */
static __always_inline __u32 status_filtered_out(__u32 lvl)
{
	if (!filter_status)
		return 0;
	struct scan_buf *s = bpf_map_lookup_elem(&scratch, &lvl);
	if (!s)
		return 0;
	__u32 code = status_code(s->b);
	if (code < 200)
		return 0;
	/* The mask, not a comparison, bounds the index for the verifier. */
	__u32 w = (code >> 6) & 15;
	return ((keep_status[w] >> (code & 63)) & 1) ? 0 : code;
}

/*
 * How much of the first segment of a response to copy when its body runs
 * past the segment: only the header block (the scan just found its end),
 * when body bytes follow it in this segment. User space frames the body
 * from Content-Length; the rest of the segment is covered without being
 * copied, as the segments the kernel skips later are. Everything is
 * copied when the bytes after the header block start a response: the
 * first one had no body after all (an answer to HEAD), and the second one
 * is in this segment.
 */
static __always_inline __u32 header_capture(struct __sk_buff *skb, __u32 off, __u32 plen, __u32 lvl)
{
	struct scan_buf *s = bpf_map_lookup_elem(&scratch, &lvl);
	if (!s)
		return MAX_CHUNKS * CHUNK_LARGE;
	__u32 hdr = s->st.hdr_end;
	if (hdr == 0 || hdr > SCAN_MAX || hdr + CHUNK_SMALL >= plen)
		return MAX_CHUNKS * CHUNK_LARGE;
	__u8 next[5] = {};
	if (bpf_skb_load_bytes(skb, off + hdr, next, sizeof(next)))
		return MAX_CHUNKS * CHUNK_LARGE;
	if (next[0] == 'H' && next[1] == 'T' && next[2] == 'T' && next[3] == 'P' && next[4] == '/')
		return MAX_CHUNKS * CHUNK_LARGE;
	return hdr;
}
