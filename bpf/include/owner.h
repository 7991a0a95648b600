/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The task that owns a socket: read from `current` when it sends (see
 * note_owner), with CO-RE reads of the task, pid and namespace structs.
 *
 * Included by capture.c after its state types, maps and small helpers,
 * which it uses; not a header of its own standing.
 */
#pragma once

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
