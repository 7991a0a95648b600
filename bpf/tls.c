//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TLS plaintext of the traced cgroups, from OpenSSL's SSL_read/SSL_write
 * (and their _ex forms) through uprobes, without kprobes.
 *
 * A uprobe fires for every process that maps the library file, in every
 * container sharing it and on the host: each probe first looks the calling
 * task's cgroup up in tls_cgroups and returns when it is not traced.
 *
 * The socket behind an SSL call is found on the same thread: while a traced
 * thread is inside SSL_read/SSL_write (an entry in tls_calls), the
 * raw_syscalls:sys_enter tracepoint notes the fd of the read/write-family
 * syscall OpenSSL makes. On return the fd is turned into its struct sock
 * (task->files->fdt->fd[fd]->private_data->sk) and the 4-tuple is kept per
 * SSL*, so that a read OpenSSL serves from its own buffer (no syscall) is
 * still attributed. sys_enter runs for every syscall on the host: for any
 * thread outside an SSL call of a traced cgroup it costs one hash lookup.
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

/* x86-64 syscall numbers of the calls OpenSSL's socket BIO makes. */
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_mmap 9
#define PROT_EXEC 4

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
		.fd = -1,
		.dir = dir,
		.ex = ex,
	};
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&tls_calls, &id, &call, BPF_ANY);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(tls_sys_enter, struct pt_regs *regs, long nr)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *call = bpf_map_lookup_elem(&tls_calls, &id);
	if (!call)
		return 0;
	switch (nr) {
	case NR_read: case NR_write: case NR_readv: case NR_writev:
	case NR_sendto: case NR_recvfrom: case NR_sendmsg: case NR_recvmsg:
		break;
	default:
		return 0;
	}
	unsigned long fd = 0;
	/* The kernel's pt_regs has the user-space layout; rdi is argument 1. */
	bpf_probe_read_kernel(&fd, sizeof(fd), &regs->rdi);
	call->fd = (__s32)fd;
	return 0;
}

/* sys_exit reports a successful mmap with PROT_EXEC in a traced cgroup (a
 * library loaded, by ld.so or dlopen). Any other syscall on the host costs
 * one read of the syscall number. */
SEC("tp_btf/sys_exit")
int BPF_PROG(tls_sys_exit, struct pt_regs *regs, long ret)
{
	unsigned long nr = 0, prot = 0;
	bpf_probe_read_kernel(&nr, sizeof(nr), &regs->orig_rax);
	if (nr != NR_mmap || (ret < 0 && ret > -4096))
		return 0;
	bpf_probe_read_kernel(&prot, sizeof(prot), &regs->rdx);
	if (!(prot & PROT_EXEC))
		return 0;
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
	if (call.fd >= 0 && (call.fd != c->fd || !c->has_sock)) {
		struct sock *sk = sock_of(call.fd);
		if (sk) {
			fill_tuple(c, sk);
			c->fd = call.fd;
		}
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
