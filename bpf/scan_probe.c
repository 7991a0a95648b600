//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A test harness, never loaded by boxtap: runs the kernel's Content-Length
 * scan (include/scan.h, the code capture.c runs on a response start) over
 * the payload of a packet given to BPF_PROG_TEST_RUN, so that Go tests can
 * check the lengths it finds. Returns response_len: the response's length,
 * or 0 when the kernel cannot tell.
 *
 * The payload starts after a 14-byte Ethernet header, which test runs of
 * tc programs require.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "boxtap.h"
#include "classify.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_HLEN 14
#define SCAN_MAX 512

/* As in capture.c. */
struct scan_state {
	__u64 cl;
	__u32 hdr_end;
	__u8 cls;
	__u8 bad;
	__u8 pad[2];
};

struct scan_buf {
	struct scan_state st;
	struct cls_state cs;
	__u8 b[SCAN_MAX + 16] __attribute__((aligned(8)));
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scan_buf);
} scratch SEC(".maps");

volatile const __u8 filter_status = 0;
volatile const __u64 keep_status[16] = {};

static __always_inline __u32 bounded_len(__u32 n, __u32 cap)
{
	asm volatile("" : "+r"(n));
	return ((n - 1) & (cap - 1)) + 1;
}

#include "scan.h"

SEC("tc")
int scan_probe(struct __sk_buff *skb)
{
	if (skb->len < ETH_HLEN)
		return 0;
	return response_len(skb, ETH_HLEN, skb->len - ETH_HLEN, 0);
}
