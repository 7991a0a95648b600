/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel types tls.c reads, declared with preserve_access_index so that
 * CO-RE relocations fix every field offset against the running kernel's BTF
 * at load time. Only the fields used are listed. Every read goes through
 * BPF_CORE_READ, so these local sizes never act as strides except where a
 * comment says so.
 */
#pragma once

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

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

struct file {
	void *private_data;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

/* s6_addr is a macro for in6_u.u6_addr8; CO-RE needs the real names. */
struct in6_addr {
	union {
		unsigned char u6_addr8[16];
	} in6_u;
};

/* The kernel nests these in anonymous unions and structs; CO-RE matches
 * members by name through them. */
struct sock_common {
	unsigned int skc_daddr;
	unsigned int skc_rcv_saddr;
	unsigned short skc_dport;
	unsigned short skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct sock {
	struct sock_common __sk_common;
	unsigned short sk_type;
	unsigned short sk_protocol;
};

struct socket {
	short type;
	struct file *file;
	struct sock *sk;
};

struct task_struct {
	int pid;
	int tgid;
	unsigned long long start_time;
	struct task_struct *group_leader;
	struct pid *thread_pid;
	struct nsproxy *nsproxy;
	struct files_struct *files;
};

#pragma clang attribute pop
