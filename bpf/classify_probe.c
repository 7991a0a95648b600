//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A test harness, never loaded by boxtap: runs the kernel's HTTP/1.x
 * classifier (include/classify.h, the code capture.c runs) over the payload
 * of packets given to BPF_PROG_TEST_RUN, so that Go tests can check its
 * grammar against user space's. The classifier's state persists in `state`
 * across runs, as it persists across the segments of a connection; the test
 * resets it between cases. Returns the verdict (enum cls_verdict).
 * classify_h2_probe runs the HTTP/2 check of a connection joined midway
 * (h2_joined, include/classify_h2.h) on one packet instead.
 *
 * The payload starts after a 14-byte Ethernet header, which test runs of
 * tc programs require.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "classify.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_HLEN 14

static __always_inline __u32 bounded_len(__u32 n, __u32 cap)
{
	asm volatile("" : "+r"(n));
	return ((n - 1) & (cap - 1)) + 1;
}

struct scan_buf {
	struct cls_state cs;
	__u8 b[CLS_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scan_buf);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cls_state);
} state SEC(".maps");

#include "classify_skb.h"

SEC("tc")
int classify_probe(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct cls_state *st = bpf_map_lookup_elem(&state, &zero);
	if (!st || skb->len < ETH_HLEN)
		return 255;
	struct cls_state cs = *st;
	__u8 v = classify(skb, &cs, ETH_HLEN, skb->len - ETH_HLEN, 0);
	*st = cs;
	return v;
}

/* The check of a connection joined midway for HTTP/2 (h2_joined in
 * classify_skb.h) on one segment: returns 1 when it is taken for HTTP/2. */
SEC("tc")
int classify_h2_probe(struct __sk_buff *skb)
{
	if (skb->len < ETH_HLEN)
		return 255;
	return h2_joined(skb, ETH_HLEN, skb->len - ETH_HLEN);
}
