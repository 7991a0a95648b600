/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What tls.c (OpenSSL) and gotls.c (Go crypto/tls) share: the maps user
 * space reads (gotls.c's are replaced by tls.c's at load) and the code
 * that turns one call's plaintext into records. Include after tls.h. */
#pragma once

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* One SSL call in progress on a thread. */
struct tls_call {
	__u64 ssl;
	__u64 buf;
	__u64 out_len; /* size_t * of the _ex forms, 0 otherwise */
	__u64 sk;      /* struct sock * of the call's last TCP send or receive, 0 if none */
	__u8 dir;
	__u8 ex;
};

/* What is kept per TLS connection (per process and SSL*). */
struct tls_conn_key {
	__u64 ssl;
	__u32 tgid;
	__u32 pad;
};

struct tls_conn {
	__u64 sk; /* the struct sock the tuple was read from (OpenSSL) */
	__u32 off[2];
	__u8 lost[2];
	__u8 has_sock;
	__u8 family;
	__s32 fd; /* the fd the tuple was read from (Go) */
	__u16 lport, rport;
	__u8 local[16];
	__u8 remote[16];
};

struct tls_scratch {
	struct tls_record h;
	__u8 data[TLS_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);  /* cgroup id */
	__type(value, __u8);
} tls_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tls_conn_key);
	__type(value, struct tls_conn);
} tls_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_scratch);
} tls_scratch SEC(".maps");

/* Records the ring buffer had no room for, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tls_lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} tls_events SEC(".maps");

/* Processes of traced cgroups that exec'd, forked or loaded libraries:
 * user space looks for TLS libraries in them. Rare, so every record wakes
 * the reader. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 10);
} tls_mapped_events SEC(".maps");


static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&tls_lost, &zero);
	if (n)
		(*n)++;
}

/* sock_of returns the TCP socket behind fd of the current task, or NULL. */
static __always_inline struct sock *sock_of(__s32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	/* The stride is a pointer's size, the same here and in the kernel. */
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return NULL;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	/* Only a socket's file has a private_data whose file points back. */
	if (!sock || BPF_CORE_READ(sock, file) != f)
		return NULL;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	return sk;
}

static __always_inline void fill_tuple(struct tls_conn *c, struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == AF_INET) {
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memset(c->local, 0, 16);
		__builtin_memset(c->remote, 0, 16);
		__builtin_memcpy(c->local, &l, 4);
		__builtin_memcpy(c->remote, &r, 4);
		c->family = 4;
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&c->local, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&c->remote, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
		c->family = 6;
	} else {
		return;
	}
	c->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	c->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	c->has_sock = 1;
}

static __always_inline void fill_task(struct tls_record *h)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	h->tgid = id >> 32;
	h->tid = (__u32)id;
	h->uid = (__u32)bpf_get_current_uid_gid();
	h->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
	h->start_ns = BPF_CORE_READ(t, start_time);
	h->leader_start_ns = BPF_CORE_READ(t, group_leader, start_time);
	struct pid *tp = BPF_CORE_READ(t, thread_pid);
	unsigned int level = BPF_CORE_READ(tp, level);
	struct upid up = {};
	/* numbers[] is indexed with the local struct upid size: int + pointer,
	 * 16 bytes here as in the kernel. */
	bpf_probe_read_kernel(&up, sizeof(up), &tp->numbers[level & 31]);
	h->ns_tid = up.nr;
	h->pidns = BPF_CORE_READ(up.ns, ns.inum);
	struct pid *lp = BPF_CORE_READ(t, group_leader, thread_pid);
	bpf_probe_read_kernel(&up, sizeof(up), &lp->numbers[level & 31]);
	h->ns_tgid = up.nr;
	h->mntns = BPF_CORE_READ(t, nsproxy, mnt_ns, ns.inum);
}

/* emit sends n plaintext bytes at buf as records of at most TLS_CHUNK
 * bytes; past TLS_MAX_CHUNKS the last record stands for the rest uncopied. */
static __always_inline void emit(struct tls_call *call, struct tls_conn *c, __u64 n)
{
	__u32 zero = 0;
	struct tls_scratch *s = bpf_map_lookup_elem(&tls_scratch, &zero);
	if (!s)
		return;
	struct tls_record *h = &s->h;
	__builtin_memset(h, 0, sizeof(*h));
	fill_task(h);
	h->ts_tai = bpf_ktime_get_tai_ns();
	h->conn = call->ssl;
	h->dir = call->dir & 1;
	h->call_len = n > 0xffffffff ? 0xffffffff : (__u32)n;
	if (c->has_sock) {
		h->flags |= TLS_FLAG_SOCK;
		h->family = c->family;
		h->lport = c->lport;
		h->rport = c->rport;
		__builtin_memcpy(h->local, c->local, 16);
		__builtin_memcpy(h->remote, c->remote, 16);
	}
	__u8 dir = call->dir & 1;
	for (int i = 0; i < TLS_MAX_CHUNKS; i++) {
		__u64 off = (__u64)i * TLS_CHUNK;
		if (off >= n)
			break;
		__u64 left = n - off;
		__u32 cl = left > TLS_CHUNK ? TLS_CHUNK : (__u32)left;
		h->seq = c->off[dir];
		h->len = i == TLS_MAX_CHUNKS - 1 ? (__u32)left : cl;
		h->data_len = cl;
		h->flags &= ~TLS_FLAG_GAP;
		if (c->lost[dir])
			h->flags |= TLS_FLAG_GAP;
		if (bpf_probe_read_user(s->data, cl, (void *)(call->buf + off)) < 0) {
			h->data_len = 0;
			cl = 0;
		}
		if (bpf_ringbuf_output(&tls_events, s, sizeof(*h) + cl, BPF_RB_NO_WAKEUP) == 0) {
			c->lost[dir] = 0;
		} else {
			c->lost[dir] = 1;
			count_lost();
		}
		c->off[dir] += h->len;
	}
}

/* end_conn tells user space that the stream of connection k ended, so that
 * a later connection with the same address (SSL* or Go Conn) starts a new
 * stream, and forgets k. */
static __always_inline void end_conn(struct tls_conn_key *k)
{
	__u32 zero = 0;
	struct tls_scratch *s = bpf_map_lookup_elem(&tls_scratch, &zero);
	if (s) {
		struct tls_record *h = &s->h;
		__builtin_memset(h, 0, sizeof(*h));
		fill_task(h);
		h->ts_tai = bpf_ktime_get_tai_ns();
		h->conn = k->ssl;
		h->flags = TLS_FLAG_CLOSE;
		if (bpf_ringbuf_output(&tls_events, h, sizeof(*h), BPF_RB_NO_WAKEUP))
			count_lost();
	}
	bpf_map_delete_elem(&tls_conns, k);
}
