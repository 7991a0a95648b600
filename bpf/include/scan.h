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

/* One byte of the scan. bpf_loop lets the verifier check this once instead
 * of once per byte. ctx points to the nesting level. Returns 1 to stop. */
static long scan_step(__u64 i, void *ctx)
{
	struct scan_buf *s = bpf_map_lookup_elem(&scratch, ctx);
	if (!s)
		return 1;
	struct scan_state *st = &s->st;
	/* "\ncontent-length:" and "\ntransfer-encodi" after |0x20 ('\n' is '*') */
	const __u64 cl_hi = 0x2a636f6e74656e74ULL; /* "*content" */
	const __u64 cl_lo = 0x2d6c656e6774683aULL; /* "-length:" */
	const __u64 te_hi = 0x2a7472616e736665ULL; /* "*transfe" */
	const __u64 te_lo = 0x722d656e636f6469ULL; /* "r-encodi" */
	__u8 ch = s->b[(i + 12) & (SCAN_MAX - 1)];

	st->w4 = (st->w4 << 8) | ch;
	if (st->w4 == 0x0d0a0d0a) {
		st->hdr_end = i + 13;
		return 1;
	}
	if (st->in_cl) {
		if (ch >= '0' && ch <= '9') {
			st->cl = st->cl * 10 + (ch - '0');
			st->in_cl = 2;
			if (st->cl > 0x7fffffffULL) {
				st->bad = 1;
				return 1;
			}
		} else if (ch == '\r' || ch == ' ' || ch == '\t') {
			if (st->in_cl == 2)
				st->in_cl = 0;
		} else {
			st->bad = 1;
			return 1;
		}
	}
	st->hi = (st->hi << 8) | (st->lo >> 56);
	st->lo = (st->lo << 8) | (ch | 0x20);
	if (st->hi == cl_hi && st->lo == cl_lo) {
		st->in_cl = 1;
		if (++st->cls > 1) {
			st->bad = 1;
			return 1;
		}
	} else if (st->hi == te_hi && st->lo == te_lo) {
		st->bad = 1;
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
	bpf_loop(n - 12, scan_step, &lvl, 0);
	if (st->bad || !st->hdr_end || st->in_cl == 1)
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
