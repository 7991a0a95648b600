//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * boxtap's kernel side: capture the TCP payload of a container's HTTP
 * connections and hand it to user space, which frames HTTP messages.
 *
 * Programs:
 *   cgroup_skb/egress, cgroup_skb/ingress  attached to each traced container's
 *       cgroup only. They classify each TCP connection once (HTTP or not) and,
 *       for HTTP ones, send the payload with its sequence number to the ring
 *       buffer, dropping retransmits and skipping declared bodies. Nothing
 *       else is attached: no program runs for any other cgroup's packets or
 *       for any system call.
 *
 * The process that owns a connection is the task that sends on it: egress
 * packets of a socket whose lock is held by a task are sent by that task,
 * so the program reads it from `current` then (see note_owner).
 *
 * All per-connection state lives in socket-local storage: it is freed with
 * the socket, so nothing leaks and nothing is keyed by packet fields.
 *
 * This file holds the state, the maps and the programs; the work is in
 * include/: stages.h (the stages of one packet, in order), classify.h (the
 * HTTP/1.x start-line grammar; classify_skb.h runs it on packets),
 * classify_h2.h (HTTP/2 frame headers, for connections joined midway), scan.h
 * (the Content-Length scan), emit.h (records and the ring buffer), owner.h
 * (the sending task).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "kernel.h"
#include "boxtap.h"
#include "classify.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* A connection opened before boxtap started is given this many payload
 * segments to show an HTTP start line at a segment start; after that it is
 * "other" and costs one storage lookup per packet. More than one, so that
 * a keep-alive connection is still recognised at its next request. A
 * connection seen from its handshake on is classified on its bytes instead
 * (see classify.h). */
#define CLASSIFY_TRIES 8
/* How far into a response the kernel looks for Content-Length. */
#define SCAN_MAX 512
/* Body segments smaller than this are copied, not skipped: skipping only
 * pays for itself on large bodies. */
#define SKIP_MIN 1024
/* Deepest cgroup level searched for the traced ancestor of a socket. */
#define MAX_CGROUP_LEVEL 16

enum conn_class {
	CLASS_UNKNOWN = 0,
	CLASS_HTTP = 1,
	CLASS_OTHER = 2,
};

enum conn_flags {
	CONN_F_NO_SKIP = 1 << 0, /* a HEAD request was seen: never trust Content-Length */
};

struct dir_state {
	__u32 next;     /* bytes before this sequence number were sent or skipped */
	__u32 boundary; /* with bvalid: a message is known to start here */
	__u32 seen;     /* end of the highest segment seen on the wire */
	__u32 pend_at;  /* with pend: the body of the last response continues here */
	__u32 pend_end; /* with pend: and ends here */
	__u8 init;
	__u8 bvalid;
	__u8 fin_sent;
	__u8 lost;      /* a record of this direction was lost since the last one sent */
	__u8 pend;      /* a declared body is still to come */
	__u8 pad[3];
	struct cls_state cls; /* fresh connections: the classifier, across segments */
	__u32 ifindex;  /* interface of the last packet, whose name is iface */
	char iface[IFNAMSIZ];
};

struct conn {
	struct owner owner;
	__u64 ckey;
	__u64 cookie;    /* bpf_get_socket_cookie, read once */
	__u64 sk_cgroup; /* the socket's cgroup id, read once */
	struct dir_state d[2];
	__u64 owner_sent_ns; /* when the owner was last sent (record timestamp) */
	__u32 owner_gen;     /* bumped each time owner changes; 0: no owner yet */
	__u32 owner_sent;    /* owner_gen of the last owner sent to user space */
	__u8 class;
	__u8 tries;
	__u8 flags;
	__u8 created;
	__u8 fresh;     /* created before any payload flowed: streams start at message starts */
	__u8 spec;      /* records were sent before the connection was classified */
	__u8 pad[2];
};

/* State of the Content-Length scan, carried between bpf_loop steps. It
 * lives in map memory, not on the stack, on purpose: the verifier tracks
 * stack values precisely and would then check every iteration of the loop
 * separately; map values are opaque to it, so one pass suffices. */
struct scan_state {
	__u64 cl;     /* the Content-Length value */
	__u32 hdr_end;
	__u8 cls;     /* Content-Length headers seen */
	__u8 bad;     /* give up: malformed, Transfer-Encoding, or too long */
	__u8 pad[2];
};

/* Scratch space for the Content-Length scan, one per CPU. */
struct scan_buf {
	struct scan_state st;
	struct cls_state cs; /* the classifier while bpf_loop runs it */
	/* The scan reads 8-byte words: aligned, and 16 bytes of slack past the
	 * end so that a masked offset plus a word stays inside. */
	__u8 b[SCAN_MAX + 16] __attribute__((aligned(8)));
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct conn);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* the loader sets the real size */
} events SEC(".maps");

/* cgroup id -> traced container; filled by user space at attach time. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct traced);
} traced_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct counters);
} stats SEC(".maps");

/*
 * The programs can nest on one CPU: an egress run in process context may be
 * interrupted by a softirq that runs the ingress program (loopback delivers
 * packets that way). Each nesting level has its own per-CPU scratch space,
 * or the inner run would overwrite the record the outer one is building.
 */
#define MAX_NEST 3

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} nesting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_NEST);
	__type(key, __u32);
	__type(value, struct scan_buf);
} scratch SEC(".maps");

/* A record is assembled here, then copied to the ring buffer with its exact
 * length: bpf_ringbuf_reserve only takes constant sizes, and reserving for
 * the largest record would waste ring space and the reader's copying. */
struct out_buf {
	struct record r;
	__u8 data[sizeof(struct owner) + CHUNK_LARGE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_NEST);
	__type(key, __u32);
	__type(value, struct out_buf);
} outbuf SEC(".maps");

/* Wake the reader each time another this much data waits (see wakeup_flag);
 * user space also polls on a short timer, so nothing waits longer than that.
 * One wakeup per record would cost microseconds per event. */
volatile const __u64 wakeup_bytes = 256 * 1024;
/* The owner is sent again when it was last sent this long ago, so that user
 * space, which forgets idle connections after a longer time, gets it back. */
volatile const __u64 owner_refresh_ns = 60ULL * 1000 * 1000 * 1000;
/* Set to 0 to send every body byte to user space (for tests). */
volatile const __u8 skip_bodies = 1;
/* With filter_status set, a response whose status code has its bit clear in
 * keep_status (bit code%64 of word code/64, codes 100-599) is left out in the
 * kernel wherever the kernel knows where it starts and ends (see
 * track_body); user space filters every other one itself. */
volatile const __u8 filter_status = 0;
volatile const __u64 keep_status[16] = {}; /* 1024 bits: a mask bounds the index */

/* Ring-buffer records have no map value type, so name struct record here to
 * put it into the object's BTF, where bpf2go finds it. */
const struct record *btf_record __attribute__((unused));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* Clamp n to [1, cap] (cap a power of two) in a way the verifier can follow:
 * the empty asm hides n's range from clang so that it keeps the mask. */
static __always_inline __u32 bounded_len(__u32 n, __u32 cap)
{
	asm volatile("" : "+r"(n));
	return ((n - 1) & (cap - 1)) + 1;
}

static __always_inline int seq_lt(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

static __always_inline int seq_le(__u32 a, __u32 b)
{
	return (__s32)(a - b) <= 0;
}

static __always_inline struct counters *counters_of(__u64 ckey)
{
	return bpf_map_lookup_elem(&stats, &ckey);
}

/* The traced cgroup this socket is in: its own, or the nearest traced
 * ancestor (processes may sit in sub-cgroups of a container). */
static __always_inline __u64 find_ckey(struct __sk_buff *skb)
{
	__u64 id = bpf_skb_cgroup_id(skb);
	struct traced *t = bpf_map_lookup_elem(&traced_cgroups, &id);
	if (t)
		return t->ckey;
	for (int lvl = MAX_CGROUP_LEVEL; lvl >= 1; lvl--) {
		id = bpf_skb_ancestor_cgroup_id(skb, lvl);
		if (!id)
			continue;
		t = bpf_map_lookup_elem(&traced_cgroups, &id);
		if (t)
			return t->ckey;
	}
	return 0;
}

#include "classify_skb.h"
#include "owner.h"
#include "emit.h"
#include "scan.h"
#include "stages.h"

/* One packet of a traced socket, in stages: headers, listener or stream
 * start, bare FIN/RST, classification, retransmits, body skipping, then the
 * records. */
static __always_inline void handle(struct __sk_buff *skb, __u8 dir, __u32 lvl)
{
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != IPPROTO_TCP)
		return;
	struct conn *c = bpf_sk_storage_get(&conns, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!c) {
		count_no_storage(skb);
		return;
	}
	if (c->class == CLASS_OTHER)
		return;

	struct pkt p = {};
	p.dir = dir;
	p.lvl = lvl;
	if (!parse_l3l4(skb, &p))
		return;
	if (!c->ckey)
		c->ckey = find_ckey(skb);

	if (sk->state == BPF_TCP_LISTEN) {
		handle_listener(skb, c, &p);
		return;
	}
	struct dir_state *ds = &c->d[dir & 1];
	if (!start_stream(skb, sk, c, ds, &p))
		return;
	if (p.len == 0) {
		handle_bare(skb, c, ds, &p);
		return;
	}
	if (c->class == CLASS_UNKNOWN &&
	    !(c->fresh ? classify_fresh(skb, c, ds, &p, p.off, p.len)
		       : classify_joined(skb, c, ds, p.seq, p.off, p.len, lvl))) {
		ds->next = p.seq + p.len;
		ds->seen = p.seq + p.len;
		return;
	}

	int order = trim_retransmit(c, ds, &p);
	if (!order)
		return;
	if (p.tcp_flags & TCP_F_FIN) {
		p.rflags |= REC_F_FIN;
		ds->fin_sent = 1;
	}
	if (p.tcp_flags & TCP_F_RST)
		p.rflags |= REC_F_RST;
	__u32 capture = track_body(skb, c, ds, &p, order == 1);
	note_iface(skb, ds);
	if (dir == DIR_EGRESS)
		note_owner(skb, c);
	emit_payload(skb, c, ds, &p, capture);
}

/* Run handle at the next nesting level of this CPU. A nested run finishes
 * before the run it interrupted resumes, so a plain per-CPU counter is
 * enough. Deeper nesting than MAX_NEST is not expected; such a packet is
 * let through uncaptured and counted. The programs always pass packets
 * (return 1). */
static __always_inline int capture(struct __sk_buff *skb, __u8 dir)
{
	__u32 zero = 0;
	__u32 *depth = bpf_map_lookup_elem(&nesting, &zero);
	if (!depth)
		return 1;
	__u32 lvl = *depth;
	if (lvl >= MAX_NEST) {
		struct counters *ctr = counters_of(find_ckey(skb));
		if (ctr)
			ctr->nest_overflow++;
		return 1;
	}
	*depth = lvl + 1;
	handle(skb, dir, lvl);
	*depth = lvl;
	return 1;
}

SEC("cgroup_skb/egress")
int capture_egress(struct __sk_buff *skb)
{
	return capture(skb, DIR_EGRESS);
}

SEC("cgroup_skb/ingress")
int capture_ingress(struct __sk_buff *skb)
{
	return capture(skb, DIR_INGRESS);
}
