/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Records: assembling them in per-CPU scratch, copying them to the ring
 * buffer with their exact length, splitting a segment over several, counting
 * what the ring had no room for.
 *
 * Included by capture.c after its state types, maps and small helpers,
 * which it uses; not a header of its own standing.
 */
#pragma once

/* Packet facts gathered once per skb. */
struct pkt {
	__u32 seq;
	__u32 off;     /* offset of the first payload byte to send */
	__u32 len;     /* payload bytes to send from off */
	__u32 skip_to;
	__u16 status;  /* with REC_F_FILTERED */
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
	r->status = p->status;
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
