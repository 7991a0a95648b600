/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Running the classifier of classify.h over the payload of an skb.
 *
 * Needs, defined before this header is included: bounded_len and a per-CPU
 * array map `scratch` (indexed by nesting level) whose value has a
 * `struct cls_state cs` and `__u8 b[]` of at least CLS_MAX bytes. The step
 * function reads its bytes and keeps its state there: map memory, whose
 * values the verifier does not follow, so it checks the step once. Used by
 * capture.c, and by classify_probe.c, which tests the grammar in the kernel.
 */
#pragma once

#include "classify.h"
#include "classify_h2.h"

/* One byte of classification (see classify.h), run by bpf_loop so that the
 * verifier checks it once, not once per byte. ctx points to the nesting
 * level. Returns 1 to stop: the verdict is in. */
static long cls_step(__u64 i, void *ctx)
{
	struct scan_buf *s = bpf_map_lookup_elem(&scratch, ctx);
	if (!s)
		return 1;
	__u8 v = cls_byte(&s->cs, s->b[i & (CLS_MAX - 1)]);
	s->cs.n++;
	s->cs.verdict = v;
	return v != CLS_PENDING;
}

/* Feed the payload at off (plen bytes, as many as the classifier still
 * looks at) to cs and return its verdict: CLS_YES once a version matched
 * or CLS_MAX bytes were a valid prefix, CLS_NO once a byte proved the
 * stream is not HTTP/1.x, CLS_PENDING while the bytes so far are a valid
 * prefix. */
static __always_inline __u8 classify(struct __sk_buff *skb, struct cls_state *cs, __u32 off, __u32 plen,
				     __u32 lvl)
{
	if (cs->verdict != CLS_PENDING || plen == 0)
		return cs->verdict;
	struct scan_buf *s = bpf_map_lookup_elem(&scratch, &lvl);
	if (!s)
		return CLS_PENDING;
	__u32 room = cs->n < CLS_MAX ? CLS_MAX - cs->n : 0;
	__u32 k = plen < room ? plen : room;
	if (k) {
		k = bounded_len(k, CLS_MAX);
		if (bpf_skb_load_bytes(skb, off, s->b, k))
			return CLS_PENDING;
		s->cs = *cs;
		bpf_loop(k, cls_step, &lvl, 0);
		*cs = s->cs;
	}
	if (cs->verdict == CLS_PENDING && cs->n >= CLS_MAX)
		cs->verdict = CLS_YES; /* a long but valid start: user space decides */
	return cs->verdict;
}

/* The verdict on a chain after the frame that ends at pos: 1 accepted, 0
 * rejected, -1 go on with the next header. */
static __always_inline int h2_chain_end(__u32 pos, __u32 plen, __u8 type, int last)
{
	if (pos == plen)
		return 1;
	if (pos > plen)
		return h2_may_span(type);
	return last ? 1 : -1;
}

/*
 * Whether the segment at off (plen bytes) starts a chain of plausible
 * HTTP/2 frame headers (classify_h2.h), for a connection joined midway.
 * The headers are loaded one by one at the offsets their lengths give; a
 * header cut by the segment's end after at least one whole frame is not
 * checked (the chain so far is consistent).
 */
static __always_inline int h2_joined(struct __sk_buff *skb, __u32 off, __u32 plen)
{
	__u32 pos = 0;
#pragma unroll
	for (int i = 0; i < H2_CHAIN; i++) {
		__u8 h[H2_FRAME_HEADER];
		if (pos + H2_FRAME_HEADER > plen)
			return i > 0;
		if (bpf_skb_load_bytes(skb, off + pos, h, sizeof(h)) || !h2_header_ok(h))
			return 0;
		pos += H2_FRAME_HEADER + h2_len(h);
		int v = h2_chain_end(pos, plen, h[3], i == H2_CHAIN - 1);
		if (v >= 0)
			return v;
	}
	return 0;
}
