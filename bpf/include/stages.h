/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The stages of handling one packet, in the order handle() runs them:
 * parse_l3l4, handle_listener or start_stream, handle_bare, classification
 * (classify_fresh, classify_joined; grammar in classify.h), trim_retransmit,
 * track_body; emit.h then sends the records.
 *
 * Included by capture.c after its state types, maps and small helpers,
 * which it uses; not a header of its own standing.
 */
#pragma once

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
 * own, for CLASSIFY_TRIES segments. A segment that starts an HTTP/1 message,
 * or a chain of HTTP/2 frames (classify_h2.h), makes it HTTP, framed from
 * there on. Returns 1 when the segment is to be sent.
 */
static __always_inline int classify_joined(struct __sk_buff *skb, struct conn *c, struct dir_state *ds,
					   __u32 seq, __u32 off, __u32 plen, __u32 lvl)
{
	struct cls_state cs = {};
	if (classify(skb, &cs, off, plen, lvl) != CLS_YES && !h2_joined(skb, off, plen)) {
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
 * A response the status filter leaves out, of mlen bytes from this segment's
 * start (at a known boundary, so its request is the oldest one user space
 * has queued): send one record of no payload that covers the segment and
 * says where the response ends (skip_to), so that user space pairs and
 * passes it without parsing. A body that runs past the segment is pending
 * like any other: skipped from its next large segment on, unless that
 * segment starts a response (an answer to a HEAD the kernel did not see;
 * user space, which knows the request, resynchronises there). Returns the
 * bytes to capture: none.
 */
static __always_inline __u32 filter_response(struct conn *c, struct dir_state *ds, struct pkt *p, __u32 mlen)
{
	__u32 end = p->seq + mlen;
	struct counters *ctr = counters_of(c->ckey);
	if (ctr)
		ctr->filtered++;
	p->rflags |= REC_F_FILTERED;
	p->skip_to = end;
	ds->boundary = end;
	ds->pend = mlen > p->len;
	ds->pend_at = p->seq + p->len;
	ds->pend_end = end;
	return 0;
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
		int filter = filter_status && c->class == CLASS_HTTP;
		int worth = filter || plen >= SKIP_MIN ||
			    (plen >= 4 && !bpf_skb_load_bytes(skb, off + plen - 4, tail, sizeof(tail)) &&
			     tail[0] == '\r' && tail[1] == '\n' && tail[2] == '\r' && tail[3] == '\n');
		__u32 mlen = (!worth || (c->flags & CONN_F_NO_SKIP)) ? 0 : response_len(skb, off, plen, p->lvl);
		if (!mlen || mlen < plen) {
			ds->bvalid = 0; /* unknown length or pipelined: stop guessing */
			ds->pend = 0;
		} else if (filter && (p->status = status_filtered_out(p->lvl))) {
			capture = filter_response(c, ds, p, mlen);
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
