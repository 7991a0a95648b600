/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structures shared by the eBPF programs and the Go loader. bpf2go turns each
 * one into a Go type (-type flags in gen.go), so both sides always agree on
 * the layout. Every struct has a fixed size and explicit padding.
 */
#pragma once

#define TASK_COMM_LEN 16
#define IFNAMSIZ 16

/* Payload bytes one record can carry. A segment larger than this is split
 * over several records; see MAX_CHUNKS. */
#define CHUNK_SMALL 256
#define CHUNK_LARGE 4096
/* 16 x 4 KiB covers the largest GSO/GRO super-packet on loopback (64 KiB). */
#define MAX_CHUNKS 16

enum direction {
	DIR_EGRESS = 0,
	DIR_INGRESS = 1,
};

/* record.rflags */
enum record_flags {
	REC_F_SKIP = 1 << 0,      /* skip_to is valid: the kernel will not send [seq+seg_len, skip_to) */
	REC_F_OWNER = 1 << 1,     /* a struct owner precedes data[]: the socket's owner changed */
	REC_F_FIN = 1 << 2,       /* the sender finished at seq+seg_len */
	REC_F_RST = 1 << 3,       /* the connection was reset */
	REC_F_GAP = 1 << 4,       /* records of this direction were lost before this one */
	REC_F_LISTENER = 1 << 5,  /* seen on a listening socket: cookie is the listener's */
	REC_F_NOT_HTTP = 1 << 6,  /* records were sent before classification, which found
				   * the connection is not HTTP after all: forget it */
	REC_F_FILTERED = 1 << 7,  /* a response whose status the filter leaves out starts at
				   * seq and ends at skip_to (not a skip); nothing of
				   * [seq, seq+seg_len) is captured */
};

/* The task that owns a socket: the last thread that sent on it. */
struct owner {
	__u64 start_ns;        /* thread start, CLOCK_MONOTONIC ns */
	__u64 leader_start_ns; /* process (thread group leader) start */
	__u64 parent_start_ns; /* parent process start */
	__u64 cgroup_id;       /* the task's cgroup v2 id */
	__u32 tid;             /* host ids */
	__u32 tgid;
	__u32 ppid;
	__u32 ns_tid;          /* ids in the task's own pid namespace */
	__u32 ns_tgid;
	__u32 ns_ppid;         /* 0 when the parent lives outside that namespace */
	__u32 uid;
	__u32 gid;
	__u32 mntns;
	__u32 pidns;
	char comm[TASK_COMM_LEN];
};

/* One ring-buffer record: a run of TCP payload bytes of an HTTP connection,
 * or a bare FIN/RST. With REC_F_OWNER a struct owner follows the header;
 * then data_len captured bytes. Records are exactly as long as that, so the
 * ring holds as many as possible and the reader copies no slack. */
struct record {
	__u64 ts_tai;      /* bpf_ktime_get_tai_ns() when the packet passed the hook */
	__u64 cookie;      /* socket cookie: the connection's identity */
	__u64 ckey;        /* cgroup id where boxtap attached: which container */
	__u64 sk_cgroup;   /* cgroup id of the socket itself */
	__u32 seq;         /* TCP sequence number of the first byte covered */
	__u32 seg_len;     /* payload bytes covered from seq (>= data_len) */
	__u32 skip_to;     /* with REC_F_SKIP: next sequence number the kernel sends;
			    * with REC_F_FILTERED: the end of the response */
	__u32 pkt_len;     /* skb->len of the packet */
	__u16 data_len;    /* bytes in data[] */
	__u16 sport;       /* host byte order */
	__u16 dport;
	__u8 dir;          /* enum direction */
	__u8 family;       /* 4 or 6 (of the packet, not the socket) */
	__u8 tcp_flags;
	__u8 rflags;       /* enum record_flags */
	__u16 cpu;
	__u16 status;      /* with REC_F_FILTERED: the response's status code */
	__u16 pad;
	__u8 saddr[16];    /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	char iface[IFNAMSIZ];
};

/* Per-container counters (per-CPU hash keyed by ckey). */
struct counters {
	__u64 lost_records;  /* records the ring buffer had no room for */
	__u64 lost_bytes;    /* payload bytes those records would have carried */
	__u64 dup_segments;  /* retransmitted or duplicate segments dropped in the kernel */
	__u64 skipped_bytes; /* body bytes skipped in the kernel (Content-Length) */
	__u64 not_http;      /* connections classified as not HTTP */
	__u64 no_storage;    /* packets passed uncaptured: no socket storage could be allocated */
	__u64 nest_overflow; /* packets passed uncaptured: programs nested deeper than MAX_NEST */
	__u64 filtered;      /* responses left out in the kernel by the status filter */
};

/* Value of the traced-cgroup map. */
struct traced {
	__u64 ckey;
};
