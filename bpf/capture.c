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
	__u64 hi, lo; /* rolling 16-byte window, lower-cased with |0x20 */
	__u64 cl;
	__u32 w4;     /* rolling 4-byte window, to find CRLFCRLF */
	__u32 hdr_end;
	__u8 in_cl;   /* 1: in a Content-Length value, 2: in its digits */
	__u8 cls;     /* Content-Length headers seen */
	__u8 bad;     /* give up: malformed, Transfer-Encoding, or too long */
	__u8 pad[5];
};

/* Scratch space for the Content-Length scan, one per CPU. */
struct scan_buf {
	struct scan_state st;
	struct cls_state cs; /* the classifier while bpf_loop runs it */
	__u8 b[SCAN_MAX];
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

/* The address of pid->numbers[level], with the running kernel's offset of
 * numbers and size of struct upid (CO-RE): kernel.h's own sizes do not
 * matter. Read through it with BPF_CORE_READ. */
static __always_inline struct upid *upid_at(struct pid *pid, unsigned int level)
{
	return (struct upid *)((unsigned long)pid + bpf_core_field_offset(struct pid, numbers) +
			       (level & 31) * bpf_core_type_size(struct upid));
}

static __always_inline void fill_owner(struct owner *o)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct task_struct *leader = t->group_leader;
	struct task_struct *parent = leader->real_parent;
	__u64 ug = bpf_get_current_uid_gid();

	o->tid = t->pid;
	o->tgid = t->tgid;
	o->ppid = parent->tgid;
	o->start_ns = t->start_time;
	o->leader_start_ns = leader->start_time;
	o->parent_start_ns = parent->start_time;
	o->uid = (__u32)ug;
	o->gid = ug >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o->comm, sizeof(o->comm));

	/* Ids as seen inside the task's own pid namespace: numbers[level]. */
	struct pid *tp = BPF_CORE_READ(t, thread_pid);
	unsigned int level = BPF_CORE_READ(tp, level);
	struct upid *up = upid_at(tp, level);
	o->ns_tid = BPF_CORE_READ(up, nr);
	o->pidns = BPF_CORE_READ(up, ns, ns.inum);

	up = upid_at(BPF_CORE_READ(leader, thread_pid), level);
	o->ns_tgid = BPF_CORE_READ(up, nr);

	/* The parent's id in the child's namespace, if it lives there. */
	struct pid *pp = BPF_CORE_READ(parent, group_leader, thread_pid);
	o->ns_ppid = 0;
	if (BPF_CORE_READ(pp, level) >= level) {
		up = upid_at(pp, level);
		if (BPF_CORE_READ(up, ns, ns.inum) == o->pidns)
			o->ns_ppid = BPF_CORE_READ(up, nr);
	}
	o->mntns = BPF_CORE_READ(t, nsproxy, mnt_ns, ns.inum);
}

/*
 * Record the task that owns a socket. A task holds the socket lock
 * (sk_lock.owned) while it sends, and the kernel never transmits for a
 * socket owned by a task from any other context: softirq work on it waits
 * until the owner releases the lock. So an egress packet of a locked socket
 * was sent by `current`. Unlocked transmits (ACK-clocked sends, timers) run
 * on whatever task the CPU was interrupted in and are ignored.
 */
static __always_inline void note_owner(struct __sk_buff *skb, struct conn *c)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct sock *sk = kskb->sk;
	if (!sk || !sk->sk_lock.owned)
		return;
	__u64 pt = bpf_get_current_pid_tgid();
	if (c->owner_gen && c->owner.tid == (__u32)pt && c->owner.tgid == (__u32)(pt >> 32))
		return;
	fill_owner(&c->owner);
	c->owner_gen++;
	if (!c->owner_gen)
		c->owner_gen = 1;
}

/* Packet facts gathered once per skb. */
struct pkt {
	__u32 seq;
	__u32 off;     /* offset of the first payload byte to send */
	__u32 len;     /* payload bytes to send from off */
	__u32 skip_to;
	__u16 sport, dport;
	__u8 family, tcp_flags, rflags, dir;
	__u8 saddr[16], daddr[16];
	__u32 lvl;     /* nesting level: which scratch buffers this run owns */
};

static __always_inline void fill_record(struct record *r, struct __sk_buff *skb, struct conn *c,
					const struct dir_state *ds, const struct pkt *p, __u32 seq,
					__u32 seg_len)
{
	r->ts_tai = bpf_ktime_get_tai_ns();
	r->cookie = c->cookie;
	r->ckey = c->ckey;
	r->sk_cgroup = c->sk_cgroup;
	r->seq = seq;
	r->seg_len = seg_len;
	r->skip_to = p->skip_to;
	r->pkt_len = skb->len;
	r->data_len = 0;
	r->sport = p->sport;
	r->dport = p->dport;
	r->dir = p->dir;
	r->family = p->family;
	r->tcp_flags = p->tcp_flags;
	r->rflags = p->rflags;
	r->cpu = bpf_get_smp_processor_id();
	r->pad = 0;
	__builtin_memcpy(r->saddr, p->saddr, 16);
	__builtin_memcpy(r->daddr, p->daddr, 16);
	__builtin_memcpy(r->iface, ds->iface, sizeof(r->iface));
}

/* Remember the name of the interface the direction's packets use; it is read
 * again only when the interface changes. */
static __always_inline void note_iface(struct __sk_buff *skb, struct dir_state *ds)
{
	__u32 ifindex = skb->ifindex;
	if (ifindex == ds->ifindex && ds->iface[0])
		return;
	ds->ifindex = ifindex;
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct net_device *dev = kskb->dev;
	if (!dev || bpf_probe_read_kernel_str(ds->iface, sizeof(ds->iface), dev->name) < 0)
		ds->iface[0] = 0;
}

static __always_inline void count_lost(struct conn *c, struct dir_state *ds, __u32 bytes)
{
	struct counters *ctr = counters_of(c->ckey);
	ds->lost = 1;
	if (ctr) {
		ctr->lost_records++;
		ctr->lost_bytes += bytes;
	}
}

/*
 * Wake the reader when the data waiting in the ring crosses another multiple
 * of wakeup_bytes with this record, never for every record while it stays
 * above: a wakeup is an irq_work self-IPI (a VM exit in a guest), and forcing
 * one per record once the reader lagged by wakeup_bytes cost more than all
 * the rest of the program.
 */
static __always_inline long wakeup_flag(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	return (avail + size) / wakeup_bytes > avail / wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/*
 * Send one record covering [seq, seq+seg_len) with `take` bytes captured from
 * offset off of the skb. The owner rides along only when it changed since it
 * was last sent, or was last sent owner_refresh_ns ago, so most records are
 * the header and the payload. Returns 0 when the ring buffer is full (the
 * loss is counted).
 */
static __always_inline int emit_record(struct __sk_buff *skb, struct conn *c, struct dir_state *ds,
				       const struct pkt *p, __u32 seq, __u32 seg_len, __u32 off, __u32 take)
{
	struct out_buf *b = bpf_map_lookup_elem(&outbuf, &p->lvl);
	if (!b)
		return 0;
	fill_record(&b->r, skb, c, ds, p, seq, seg_len);
	__u32 olen = 0;
	__u64 now = b->r.ts_tai;
	if (c->owner_gen && (c->owner_gen != c->owner_sent || now - c->owner_sent_ns >= owner_refresh_ns)) {
		__builtin_memcpy(b->data, &c->owner, sizeof(struct owner));
		b->r.rflags |= REC_F_OWNER;
		olen = sizeof(struct owner);
	}
	__u32 n = 0;
	if (take) {
		n = bounded_len(take, CHUNK_LARGE);
		if (bpf_skb_load_bytes(skb, off, b->data + olen, n))
			return 1; /* not in the skb after all: nothing to send */
	}
	b->r.data_len = n;
	__u32 size = sizeof(struct record) + olen + n;
	if (size > sizeof(*b))
		return 1; /* never true: tells the verifier the read stays in b */
	if (bpf_ringbuf_output(&events, b, size, wakeup_flag(size))) {
		count_lost(c, ds, seg_len);
		return 0;
	}
	if (olen) {
		c->owner_sent = c->owner_gen;
		c->owner_sent_ns = now;
	}
	return 1;
}

/* Send [p->off, p->off+p->len) of the skb: full CHUNK_LARGE records while
 * more than one record's worth is left, then one last record with the rest.
 * The last record also covers, without capturing, whatever lies past the
 * capture budget. Control flags (FIN, RST, SKIP) go on the last record only;
 * REC_F_LISTENER on every record, since it says whose cookie they carry.
 * The loop is not unrolled, so the verifier's work stays linear in
 * MAX_CHUNKS. */
static __always_inline void emit_payload(struct __sk_buff *skb, struct conn *c, struct dir_state *ds,
					 struct pkt *p, __u32 capture)
{
	__u32 off = p->off;
	__u32 seq = p->seq;
	__u32 left = p->len;
	__u8 every = p->rflags & REC_F_LISTENER;
	__u8 ctl = p->rflags & ~REC_F_LISTENER; /* FIN, RST, SKIP: for the last record */

	/* Tell user space, on the first record, that bytes of this
	 * direction went missing before it. */
	p->rflags = every | (ds->lost ? REC_F_GAP : 0);
	ds->lost = 0;

#pragma clang loop unroll(disable)
	for (int i = 0; i < MAX_CHUNKS - 1; i++) {
		if (left <= CHUNK_LARGE || capture <= CHUNK_LARGE)
			break;
		if (!emit_record(skb, c, ds, p, seq, CHUNK_LARGE, off, CHUNK_LARGE))
			return;
		p->rflags = every;
		left -= CHUNK_LARGE;
		off += CHUNK_LARGE;
		seq += CHUNK_LARGE;
		capture -= CHUNK_LARGE;
	}

	p->rflags |= ctl;
	emit_record(skb, c, ds, p, seq, left, off, left < capture ? left : capture);
}

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

static __always_inline void count_not_http(struct conn *c)
{
	struct counters *ctr = counters_of(c->ckey);
	if (ctr)
		ctr->not_http++;
}

/* The socket had no storage and none could be allocated (memory): its
 * packets pass uncaptured. Rare, so the traced cgroup is looked up again. */
static __always_inline void count_no_storage(struct __sk_buff *skb)
{
	struct counters *ctr = counters_of(find_ckey(skb));
	if (ctr)
		ctr->no_storage++;
}

/*
 * Classify a connection seen from its handshake on, from the bytes of
 * whichever direction decides first. Each direction's classifier reads its
 * stream in order across segments, so a start line after empty lines or cut
 * into small writes is recognised. Returns 1 when the segment is to be sent:
 * the connection is HTTP, or still undecided. Undecided segments are sent on
 * speculation (they are a valid start so far); if the connection then turns
 * out not to be HTTP, a REC_F_NOT_HTTP record tells user space to forget it.
 */
static __always_inline int classify_fresh(struct __sk_buff *skb, struct conn *c, struct dir_state *ds,
					  struct pkt *p, __u32 off, __u32 plen)
{
	__u32 seq = p->seq;
	__u32 end = seq + plen;
	__u8 v = ds->cls.verdict;
	/* Only new bytes in order continue the stream: a retransmit is fed
	 * from where the classifier stopped, a segment after a hole not at all. */
	if (seq_le(seq, ds->next) && seq_lt(ds->next, end)) {
		__u32 skip = ds->next - seq;
		v = classify(skb, &ds->cls, off + skip, plen - skip, p->lvl);
	}
	if (v == CLS_YES) {
		c->class = CLASS_HTTP;
		return 1;
	}
	if (v == CLS_PENDING) {
		c->spec = 1;
		return 1;
	}
	c->class = CLASS_OTHER;
	count_not_http(c);
	if (c->spec) {
		p->off = off;
		p->len = 0;
		p->rflags = REC_F_NOT_HTTP;
		note_iface(skb, ds);
		emit_record(skb, c, ds, p, seq, 0, off, 0);
	}
	return 0;
}

/*
 * Classify a connection that carried data before boxtap started: it may be
 * in the middle of a message for a while, so each segment is judged on its
 * own, for CLASSIFY_TRIES segments. A segment that starts a message makes it
 * HTTP, framed from that message on. Returns 1 when the segment is to be sent.
 */
static __always_inline int classify_joined(struct __sk_buff *skb, struct conn *c, struct dir_state *ds,
					   __u32 seq, __u32 off, __u32 plen, __u32 lvl)
{
	struct cls_state cs = {};
	if (classify(skb, &cs, off, plen, lvl) != CLS_YES) {
		if (++c->tries >= CLASSIFY_TRIES) {
			c->class = CLASS_OTHER;
			count_not_http(c);
		}
		return 0;
	}
	c->class = CLASS_HTTP;
	/* Frame from this message on; its start is a known boundary. */
	ds->next = seq;
	ds->boundary = seq;
	ds->bvalid = 1;
	return 1;
}

#define TCP_F_FIN 0x01
#define TCP_F_SYN 0x02
#define TCP_F_RST 0x04

/* Stage 1: the IP and TCP headers. Fills the packet's addresses, ports,
 * flags, sequence number and payload span [off, off+len). Returns 0 for a
 * packet boxtap does not follow: not TCP, an IP fragment, IPv6 extension
 * headers. */
static __always_inline int parse_l3l4(struct __sk_buff *skb, struct pkt *p)
{
	__u32 ip_hl;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 0;
		if (ip.protocol != IPPROTO_TCP || (ip.frag_off & bpf_htons(0x1fff)))
			return 0;
		ip_hl = ip.ihl * 4;
		p->family = 4;
		__builtin_memcpy(p->saddr, &ip.saddr, 4);
		__builtin_memcpy(p->daddr, &ip.daddr, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return 0;
		if (ip6.nexthdr != IPPROTO_TCP) /* extension headers: not followed */
			return 0;
		ip_hl = sizeof(ip6);
		p->family = 6;
		__builtin_memcpy(p->saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->daddr, &ip6.daddr, 16);
	} else {
		return 0;
	}

	struct tcphdr th;
	if (bpf_skb_load_bytes(skb, ip_hl, &th, sizeof(th)))
		return 0;
	__u32 off = ip_hl + th.doff * 4;
	if (skb->len < off)
		return 0;
	p->off = off;
	p->len = skb->len - off;
	p->seq = bpf_ntohl(th.seq);
	p->sport = bpf_ntohs(th.source);
	p->dport = bpf_ntohs(th.dest);
	p->tcp_flags = ((__u8 *)&th)[13];
	return 1;
}

/* Remember, once per socket, what every record of it carries. */
static __always_inline void note_socket(struct __sk_buff *skb, struct conn *c)
{
	c->created = 1;
	c->cookie = bpf_get_socket_cookie(skb);
	c->sk_cgroup = bpf_skb_cgroup_id(skb);
}

/*
 * Stage 2a, a listening socket. When the client's handshake ACK is lost,
 * its first data segment completes the handshake and the kernel filters it
 * against the listening socket, before the accepted socket exists. Send it
 * as it is, marked, so that user space can hand it to the connection it
 * belongs to (by address). Each such segment is judged on its own: it may
 * start a request (a short one, "GET", is still sent).
 */
static __always_inline void handle_listener(struct __sk_buff *skb, struct conn *c, struct pkt *p)
{
	if (p->len == 0 || !c->created) {
		note_socket(skb, c);
		if (p->len == 0)
			return;
	}
	struct cls_state lcs = {};
	if (classify(skb, &lcs, p->off, p->len, p->lvl) == CLS_NO)
		return;
	p->rflags = REC_F_LISTENER;
	struct dir_state *lds = &c->d[DIR_INGRESS];
	note_iface(skb, lds);
	emit_payload(skb, c, lds, p, MAX_CHUNKS * CHUNK_LARGE);
}

/*
 * Stage 2b: start following a connection and a direction. A socket seen
 * before any payload flowed starts each stream with a message; one that
 * carried data before boxtap started is framed from its next message
 * boundary on, in user space. Returns 0 when the packet is a SYN: it takes
 * one sequence number, and data starts after it.
 */
static __always_inline int start_stream(struct __sk_buff *skb, struct bpf_sock *sk, struct conn *c,
					struct dir_state *ds, const struct pkt *p)
{
	if (!c->created) {
		note_socket(skb, c);
		struct bpf_tcp_sock *tp = bpf_tcp_sock(sk);
		c->fresh = tp && tp->bytes_received == 0 && tp->data_segs_out == 0;
	}
	int syn = p->tcp_flags & TCP_F_SYN;
	if (syn || !ds->init) {
		__u32 first = syn ? p->seq + 1 : p->seq;
		ds->init = 1;
		ds->next = first;
		ds->seen = first;
		ds->boundary = first;
		ds->bvalid = c->fresh;
	}
	return !syn;
}

/* Stage 3, a packet without payload: a bare FIN or RST ends the direction
 * for user space, once. It carries the gap flag like any first record after
 * a loss. */
static __always_inline void handle_bare(struct __sk_buff *skb, struct conn *c, struct dir_state *ds,
					struct pkt *p)
{
	if (!(p->tcp_flags & (TCP_F_FIN | TCP_F_RST)) || ds->fin_sent)
		return;
	if (c->class != CLASS_HTTP && !c->spec)
		return;
	ds->fin_sent = 1;
	p->rflags = ((p->tcp_flags & TCP_F_FIN) ? REC_F_FIN : REC_F_RST) | (ds->lost ? REC_F_GAP : 0);
	ds->lost = 0;
	note_iface(skb, ds);
	emit_record(skb, c, ds, p, p->seq, 0, p->off, 0);
}

/*
 * Stage 5: drop what was sent before. Returns 0 when nothing in the segment
 * is new: a retransmit or duplicate (counted), or more bytes of a body the
 * kernel skips. Otherwise trims the bytes already sent from p and returns 1
 * when the segment continues the stream in order, 2 when it comes after a
 * hole.
 */
static __always_inline int trim_retransmit(struct conn *c, struct dir_state *ds, struct pkt *p)
{
	__u32 end = p->seq + p->len;
	if (seq_le(end, ds->next)) {
		if (seq_lt(ds->seen, end)) {
			ds->seen = end; /* new bytes of a body the kernel skips */
			return 0;
		}
		struct counters *ctr = counters_of(c->ckey);
		if (ctr)
			ctr->dup_segments++;
		return 0;
	}
	if (seq_lt(ds->seen, end))
		ds->seen = end;
	if (seq_lt(p->seq, ds->next)) {
		__u32 trim = ds->next - p->seq;
		p->off += trim;
		p->len -= trim;
		p->seq = ds->next;
	}
	if (p->seq != ds->next)
		return 2;
	ds->next = end;
	return 1;
}

/*
 * Stage 6, body skipping: how many bytes of the segment to capture. The
 * kernel follows message boundaries as long as each response starts a
 * segment and declares its length. A response whose body runs past its
 * first segment leaves a pending skip; the body is skipped from the next
 * large segment on, unless that segment starts with "HTTP/": then the
 * response had no body after all (an answer to HEAD) and the kernel stops
 * guessing for this connection.
 */
static __always_inline __u32 track_body(struct __sk_buff *skb, struct conn *c, struct dir_state *ds,
					struct pkt *p, int in_order)
{
	__u32 seq = p->seq, off = p->off, plen = p->len;
	__u32 end = seq + plen;
	__u8 head[5] = {};
	if (plen >= 5 && !bpf_skb_load_bytes(skb, off, head, sizeof(head)) && head[0] == 'H' &&
	    head[1] == 'E' && head[2] == 'A' && head[3] == 'D' && head[4] == ' ')
		c->flags |= CONN_F_NO_SKIP;

	__u32 capture = MAX_CHUNKS * CHUNK_LARGE;
	if (!ds->bvalid || !in_order)
		return capture;
	int starts_http = head[0] == 'H' && head[1] == 'T' && head[2] == 'T' && head[3] == 'P' && head[4] == '/';
	if (ds->pend && seq == ds->pend_at) {
		if (starts_http) {
			ds->pend = 0;
			ds->bvalid = 0;
		} else if (seq_le(ds->pend_end, end)) {
			ds->pend = 0; /* the body ends in this segment */
		} else if (plen >= SKIP_MIN && skip_bodies && !(c->flags & CONN_F_NO_SKIP)) {
			p->skip_to = ds->pend_end;
			p->rflags |= REC_F_SKIP;
			ds->next = ds->pend_end;
			ds->pend = 0;
			capture = CHUNK_SMALL;
			struct counters *ctr = counters_of(c->ckey);
			if (ctr)
				ctr->skipped_bytes += ds->pend_end - end;
		} else {
			ds->pend_at = end; /* wait for a larger body segment */
		}
	} else if (seq == ds->boundary && starts_http) {
		/* A response starts here: learn where it ends. Scanning its
		 * headers costs more than copying a small response, so only
		 * a response that may have a large body is scanned: one whose
		 * segment is large, or holds just the header block (servers
		 * that sendfile the body). After a small response the kernel
		 * stops following boundaries on this connection; user space
		 * frames everything anyway. */
		__u8 tail[4] = {};
		int worth = plen >= SKIP_MIN ||
			    (plen >= 4 && !bpf_skb_load_bytes(skb, off + plen - 4, tail, sizeof(tail)) &&
			     tail[0] == '\r' && tail[1] == '\n' && tail[2] == '\r' && tail[3] == '\n');
		__u32 mlen = (!worth || (c->flags & CONN_F_NO_SKIP)) ? 0 : response_len(skb, off, plen, p->lvl);
		if (!mlen || mlen < plen) {
			ds->bvalid = 0; /* unknown length or pipelined: stop guessing */
			ds->pend = 0;
		} else {
			ds->boundary = seq + mlen;
			ds->pend = mlen > plen;
			ds->pend_at = end;
			ds->pend_end = seq + mlen;
			if (ds->pend && skip_bodies && !(c->flags & CONN_F_NO_SKIP))
				capture = header_capture(skb, off, plen, p->lvl);
		}
	} else if (seq == ds->boundary || seq_lt(ds->boundary, seq)) {
		/* A request, or a boundary passed mid-segment. */
		ds->bvalid = 0;
		ds->pend = 0;
	}
	return capture;
}

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
