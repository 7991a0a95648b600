//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TLS plaintext of Go programs: uprobes on crypto/tls.(*Conn).Write and
 * (*Conn).Read of the traced processes' own executables.
 *
 * No uretprobe: a uretprobe replaces the return address on the stack, and
 * Go copies goroutine stacks when they grow, which then crash the program.
 * Go's register ABI (amd64, Go 1.17 and later) passes the receiver in RAX
 * and the buffer's pointer and length in RBX and RCX. Write's plaintext is
 * copied when Write starts, so that a request is recorded before the
 * response another goroutine reads. Read's is copied at each of its RET
 * instructions (user space puts a uprobe on each), where n is in RAX, from
 * the buffer noted when Read started. R14 holds the current goroutine (g)
 * throughout: the Read in flight is keyed by goroutine, not by thread,
 * since a goroutine blocked in Read may resume on another thread.
 *
 * The probes at a function's start sit after its stack check, which
 * otherwise re-runs the entry each time the stack grows (user space finds
 * the place).
 *
 * The socket is found from the *tls.Conn itself (its net.Conn is a
 * *net.TCPConn, whose netFD holds the fd) and then from the fd to the
 * struct sock (sock_of). The maps user space reads are tls.c's: user space
 * loads this object with them as replacements, so both paths feed one ring
 * buffer and one table of connections.
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

struct linux_binprm;

/*
 * Offsets in Go's structs (amd64), unchanged from Go 1.18 through 1.26 and
 * checked against each tested toolchain's DWARF (gotls_offsets_test.go):
 *   crypto/tls.Conn.conn     net.Conn interface at 0; its data word at 8
 *   net.TCPConn{conn{fd}}    *net.netFD at 0
 *   net.netFD.pfd            internal/poll.FD at 0
 *   internal/poll.FD.Sysfd   int at 16 (after fdMutex: uint64 + 2 x uint32)
 */
#define GO_TLSCONN_CONN_DATA 8
#define GO_TCPCONN_FD 0
#define GO_NETFD_SYSFD 16

/* One Read in flight on a goroutine. */
struct go_call_key {
	__u64 g;
	__u32 tgid;
	__u32 pad;
};

struct go_call {
	__u64 conn; /* the *tls.Conn */
	__u64 buf;
};

/* LRU: a call whose RET was never seen (a panic unwinding through it)
 * must not pin an entry forever; the goroutine's next call replaces it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct go_call_key);
	__type(value, struct go_call);
} go_calls SEC(".maps");

static __always_inline int traced(void)
{
	__u64 cg = bpf_get_current_cgroup_id();
	return bpf_map_lookup_elem(&tls_cgroups, &cg) != NULL;
}

static __always_inline struct go_call_key call_key(struct pt_regs *ctx)
{
	struct go_call_key k = {.g = ctx->r14, .tgid = bpf_get_current_pid_tgid() >> 32};
	return k;
}

/* go_sysfd follows *tls.Conn -> net.Conn data -> *net.netFD -> Sysfd; -1
 * when a pointer cannot be read. A net.Conn other than *net.TCPConn gives
 * a number that sock_of then rejects unless it names a TCP socket. */
static __always_inline __s32 go_sysfd(__u64 conn)
{
	__u64 inner = 0, netfd = 0;
	__s64 fd = -1;
	if (bpf_probe_read_user(&inner, sizeof(inner), (void *)(conn + GO_TLSCONN_CONN_DATA)) || !inner)
		return -1;
	if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(inner + GO_TCPCONN_FD)) || !netfd)
		return -1;
	if (bpf_probe_read_user(&fd, sizeof(fd), (void *)(netfd + GO_NETFD_SYSFD)))
		return -1;
	return fd < 0 || fd > 0x7fffffff ? -1 : (__s32)fd;
}

/* go_conn returns the connection state of (tgid, *tls.Conn), created on
 * first use, with its 4-tuple refreshed when the fd changed (a Conn freed
 * and its address reused). */
static __always_inline struct tls_conn *go_conn(__u64 conn, __u32 tgid)
{
	struct tls_conn_key k = {.ssl = conn, .tgid = tgid};
	struct tls_conn *c = bpf_map_lookup_elem(&tls_conns, &k);
	if (!c) {
		struct tls_conn fresh = {.fd = -1};
		bpf_map_update_elem(&tls_conns, &k, &fresh, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&tls_conns, &k);
		if (!c)
			return NULL;
	}
	__s32 fd = go_sysfd(conn);
	if (fd >= 0 && (fd != c->fd || !c->has_sock)) {
		struct sock *sk = sock_of(fd);
		if (sk) {
			fill_tuple(c, sk);
			c->fd = fd;
		}
	}
	return c;
}

/* go_emit copies n bytes at buf of (*tls.Conn) conn, direction dir. */
static __always_inline void go_emit(__u64 conn, __u64 buf, __s64 n, __u8 dir)
{
	if (n <= 0)
		return;
	struct tls_conn *c = go_conn(conn, bpf_get_current_pid_tgid() >> 32);
	if (!c)
		return;
	struct tls_call call = {.ssl = conn, .buf = buf, .dir = dir};
	emit(&call, c, (__u64)n);
}

/* (*Conn).Write(b): the plaintext b (RBX, RCX) of conn (RAX). A Write
 * that fails midway is copied whole: it is the connection's last. */
SEC("uprobe")
int go_write_enter(struct pt_regs *ctx)
{
	if (traced())
		go_emit(ctx->rax, ctx->rbx, (__s64)ctx->rcx, 0);
	return 0;
}

/* (*Conn).Read(b): notes conn and b for the RET. */
SEC("uprobe")
int go_read_enter(struct pt_regs *ctx)
{
	if (!traced())
		return 0;
	struct go_call_key k = call_key(ctx);
	struct go_call call = {.conn = ctx->rax, .buf = ctx->rbx};
	bpf_map_update_elem(&go_calls, &k, &call, BPF_ANY);
	return 0;
}

/* A RET of (*Conn).Read: copies the n bytes (RAX) it read. */
SEC("uprobe")
int go_read_ret(struct pt_regs *ctx)
{
	struct go_call_key k = call_key(ctx);
	struct go_call *p = bpf_map_lookup_elem(&go_calls, &k);
	if (!p)
		return 0;
	struct go_call gc = *p;
	bpf_map_delete_elem(&go_calls, &k);
	go_emit(gc.conn, gc.buf, (__s64)ctx->rax, 1);
	return 0;
}

/* (*Conn).Close: tell user space the stream ended, since the garbage
 * collector may give a later Conn the same address. */
SEC("uprobe")
int go_close(struct pt_regs *ctx)
{
	if (!traced())
		return 0;
	struct tls_conn_key k = {.ssl = ctx->rax, .tgid = bpf_get_current_pid_tgid() >> 32};
	if (!bpf_map_lookup_elem(&tls_conns, &k))
		return 0;
	end_conn(&k);
	return 0;
}

/* sched_process_exec reports a program started in a traced cgroup, Go or
 * not: user space then probes its executable, its dynamic loader (whose
 * uprobe reports later dlopens, tls.c) and the TLS libraries it maps. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(go_exec, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	if (!traced())
		return 0;
	struct tls_mapped m = {.tgid = bpf_get_current_pid_tgid() >> 32, .cgroup_id = bpf_get_current_cgroup_id(), .ts_tai = bpf_ktime_get_tai_ns()};
	if (bpf_ringbuf_output(&tls_mapped_events, &m, sizeof(m), 0))
		count_lost();
	return 0;
}
