//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TLS plaintext of the traced cgroups, from OpenSSL's SSL_read/SSL_write
 * (and their _ex forms) through uprobes, without kprobes.
 *
 * The uprobes are set per traced process (user space passes the pid), so
 * no other process mapping the same library file traps into the kernel;
 * each probe still looks the calling task's cgroup up in tls_cgroups.
 *
 * The socket behind an SSL call is found on the same thread: while a traced
 * thread is inside SSL_read/SSL_write (an entry in tls_calls), the
 * sock_send_length and sock_recv_length tracepoints, which the kernel fires
 * after every socket send or receive (read, write, send*, recv* alike),
 * note the struct sock OpenSSL's socket BIO used. On return its 4-tuple is
 * kept per SSL*, so that a read OpenSSL serves from its own buffer (no
 * syscall) is still attributed. The two tracepoints run for socket calls
 * only, never for other system calls, and for a thread outside an SSL call
 * of a traced process cost one hash lookup.
 *
 * New code mapped by a traced process is reported by a uprobe on the
 * dynamic loader's _dl_debug_state (set per process, like the others),
 * forks by sched_process_fork and execs by gotls.c's sched_process_exec:
 * user space then looks for TLS libraries in the process.
 *
 * Offsets per direction are counted here, per SSL*, so that user space sees
 * a lost record as a hole in a stream, as it does for TCP.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "tls_kernel.h"
#include "tls.h"
#include "tls_common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The SSL call in progress on each thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

/* bpf2go -type needs the types referenced. */
const struct tls_record *unused_tls_record __attribute__((unused));
const struct tls_mapped *unused_tls_mapped __attribute__((unused));

static __always_inline int enter(struct pt_regs *ctx, __u8 dir, __u8 ex)
{
	__u64 cg = bpf_get_current_cgroup_id();
	if (!bpf_map_lookup_elem(&tls_cgroups, &cg))
		return 0;
	struct tls_call call = {
		.ssl = PT_REGS_PARM1(ctx),
		.buf = PT_REGS_PARM2(ctx),
		.out_len = ex ? PT_REGS_PARM4(ctx) : 0,
		.dir = dir,
		.ex = ex,
	};
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&tls_calls, &id, &call, BPF_ANY);
	return 0;
}

/* note_sock records sk, a TCP socket, in the SSL call in progress on the
 * current thread; a thread outside one returns at the first lookup. */
static __always_inline void note_sock(struct sock *sk)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *call = bpf_map_lookup_elem(&tls_calls, &id);
	if (!call || !sk)
		return;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	call->sk = (__u64)sk;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tls_sock_send, struct sock *sk, int ret, int flags)
{
	note_sock(sk);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tls_sock_recv, struct sock *sk, int ret, int flags)
{
	note_sock(sk);
	return 0;
}

/* The dynamic loader (glibc's and musl's) calls _dl_debug_state, the
 * debuggers' breakpoint, once it has mapped a program's libraries at start
 * and before and after each dlopen. User space sets this uprobe per traced
 * process, on the loader it maps, and looks for TLS libraries on each
 * notice: a process whose loader was probed before user space's scan of
 * its mappings cannot load libssl unseen. */
SEC("uprobe")
int tls_loader(struct pt_regs *ctx)
{
	__u64 cg = bpf_get_current_cgroup_id();
	if (!bpf_map_lookup_elem(&tls_cgroups, &cg))
		return 0;
	struct tls_mapped m = {.tgid = bpf_get_current_pid_tgid() >> 32, .cgroup_id = cg, .ts_tai = bpf_ktime_get_tai_ns()};
	if (bpf_ringbuf_output(&tls_mapped_events, &m, sizeof(m), 0))
		count_lost();
	return 0;
}

/* sched_process_fork reports a new process (not a thread) forked in a
 * traced cgroup: uprobes are set per process, and a forked child (an nginx
 * worker, say) maps nothing new. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(tls_fork, struct task_struct *parent, struct task_struct *child)
{
	__u64 cg = bpf_get_current_cgroup_id();
	if (!bpf_map_lookup_elem(&tls_cgroups, &cg))
		return 0;
	int pid = BPF_CORE_READ(child, pid);
	int tgid = BPF_CORE_READ(child, tgid);
	if (pid != tgid)
		return 0;
	struct tls_mapped m = {.tgid = tgid, .cgroup_id = cg, .ts_tai = bpf_ktime_get_tai_ns()};
	if (bpf_ringbuf_output(&tls_mapped_events, &m, sizeof(m), 0))
		count_lost();
	return 0;
}


static __always_inline int leave(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *p = bpf_map_lookup_elem(&tls_calls, &id);
	if (!p)
		return 0;
	struct tls_call call = *p;
	bpf_map_delete_elem(&tls_calls, &id);

	/* All four return int: the upper half of the register is not theirs
	 * (a -1 read as long would be 4 GiB of "plaintext"). */
	int rc = (int)PT_REGS_RC(ctx);
	__u64 n = 0;
	if (call.ex) {
		if (rc != 1 || !call.out_len)
			return 0;
		bpf_probe_read_user(&n, sizeof(n), (void *)call.out_len);
	} else {
		if (rc <= 0)
			return 0;
		n = rc;
	}
	if (!n)
		return 0;

	struct tls_conn_key k = {.ssl = call.ssl, .tgid = id >> 32};
	struct tls_conn *c = bpf_map_lookup_elem(&tls_conns, &k);
	if (!c) {
		struct tls_conn fresh = {.fd = -1};
		bpf_map_update_elem(&tls_conns, &k, &fresh, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&tls_conns, &k);
		if (!c)
			return 0;
	}
	/* A call without socket I/O keeps the tuple of the SSL*'s last one. */
	if (call.sk && (call.sk != c->sk || !c->has_sock)) {
		fill_tuple(c, (struct sock *)call.sk);
		c->sk = call.sk;
	}
	emit(&call, c, n);
	return 0;
}

SEC("uprobe")
int tls_write_enter(struct pt_regs *ctx) { return enter(ctx, 0, 0); }

SEC("uprobe")
int tls_write_ex_enter(struct pt_regs *ctx) { return enter(ctx, 0, 1); }

SEC("uprobe")
int tls_read_enter(struct pt_regs *ctx) { return enter(ctx, 1, 0); }

SEC("uprobe")
int tls_read_ex_enter(struct pt_regs *ctx) { return enter(ctx, 1, 1); }

SEC("uretprobe")
int tls_leave(struct pt_regs *ctx) { return leave(ctx); }

/* SSL_free: the SSL* may be reused for another connection. */
SEC("uprobe")
int tls_free(struct pt_regs *ctx)
{
	__u64 cg = bpf_get_current_cgroup_id();
	if (!bpf_map_lookup_elem(&tls_cgroups, &cg))
		return 0;
	struct tls_conn_key k = {.ssl = PT_REGS_PARM1(ctx), .tgid = bpf_get_current_pid_tgid() >> 32};
	struct tls_conn *c = bpf_map_lookup_elem(&tls_conns, &k);
	if (!c)
		return 0;
	/* A later SSL* at the same address starts a new connection. */
	end_conn(&k);
	return 0;
}
