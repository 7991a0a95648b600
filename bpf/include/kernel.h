/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types boxtap reads, declared with preserve_access_index so
 * that libbpf-style CO-RE relocations fix every field offset against the
 * running kernel's BTF at load time. Only the fields used are listed; their
 * order and the struct sizes here do not matter.
 */
#pragma once

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
#endif

struct ns_common {
	unsigned int inum;
};

struct mnt_namespace {
	struct ns_common ns;
};

struct pid_namespace {
	struct ns_common ns;
};

struct nsproxy {
	struct mnt_namespace *mnt_ns;
};

struct upid {
	int nr;
	struct pid_namespace *ns;
};

struct pid {
	unsigned int level;
	struct upid numbers[1];
};

struct task_struct {
	int pid;
	int tgid;
	unsigned long long start_time;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct pid *thread_pid;
	struct nsproxy *nsproxy;
};

struct net_device {
	char name[16];
};

/* The kernel's socket_lock_t is a typedef of an anonymous struct; CO-RE
 * matches its member by name. */
typedef struct {
	int owned;
} socket_lock_t;

struct sock {
	socket_lock_t sk_lock;
};

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
};

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute pop
#endif
