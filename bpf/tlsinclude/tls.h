/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What tls.c shares with user space (bpf2go -type tls_record). */
#pragma once

#define TLS_CHUNK 8192     /* plaintext bytes per record at most */
#define TLS_MAX_CHUNKS 8   /* records per SSL call; the rest is counted, not copied */

enum tls_flags {
	TLS_FLAG_SOCK = 1 << 0, /* the 4-tuple is known */
	TLS_FLAG_GAP = 1 << 1,  /* records of this connection were lost before this one */
	TLS_FLAG_CLOSE = 1 << 2, /* SSL_free: the connection ended; no data */
};

/* One record per chunk of plaintext an SSL_read/SSL_write call moved. */
struct tls_record {
	__u64 ts_tai;          /* bpf_ktime_get_tai_ns() when the call returned */
	__u64 conn;            /* the SSL* of the call: the TLS connection within tgid */
	__u64 cgroup_id;       /* the calling task's cgroup v2 id */
	__u64 start_ns;        /* thread start, CLOCK_MONOTONIC ns */
	__u64 leader_start_ns; /* process start */
	__u32 tgid, tid;       /* host ids */
	__u32 ns_tgid, ns_tid; /* ids in the task's pid namespace */
	__u32 uid;
	__u32 mntns, pidns;
	__u32 seq;      /* offset of data[0] in its direction's plaintext stream (mod 2^32) */
	__u32 len;      /* bytes this record stands for; data_len of them were copied */
	__u32 data_len; /* bytes of data that follow the header */
	__u32 call_len; /* bytes the whole SSL call moved */
	__u8 local[16];  /* local address (IPv4 in the first 4 bytes) */
	__u8 remote[16]; /* remote address */
	__u16 lport, rport; /* host byte order */
	__u8 family;     /* 4 or 6 */
	__u8 dir;        /* 0 egress (SSL_write), 1 ingress (SSL_read) */
	__u8 flags;      /* enum tls_flags */
	__u8 pad;
	char comm[16];
};

/* A process of a traced cgroup to look at for TLS libraries: it exec'd, was
 * forked or had its dynamic loader load libraries (tls_mapped_events). */
struct tls_mapped {
	__u64 ts_tai;
	__u64 cgroup_id;
	__u32 tgid;
	__u32 pad;
};
