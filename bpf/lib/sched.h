/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef SCHED_H
#define SCHED_H

#define SCHED_COMM_LEN 16

/*
 * Run-queue latency buckets, log2 in microseconds: slot 0 holds waits under 1 µs, slot k (1 ≤ k <
 * RUNQ_SLOTS - 1) waits of [2^(k-1), 2^k) µs, and the last slot every longer wait (over 2^25 µs,
 * about 33 s). As OpenTelemetry boundaries: 2^0 .. 2^(RUNQ_SLOTS-2) µs.
 */
#define RUNQ_SLOTS 27

enum sched_event_kind {
	SCHED_EVENT_START = 1,
	SCHED_EVENT_EXIT = 2,
	SCHED_EVENT_OOM_KILL = 3,
};

/* what could not be stored because a map was full: indexes of the `overflow` map */
enum sched_overflow {
	OVERFLOW_PROC_STATS = 0,
	/* a thread's run-queue mark (task storage) could not be allocated */
	OVERFLOW_RUNNABLE_SINCE = 1,
	/* a thread's fault counts as last accounted (task storage) could not be allocated */
	OVERFLOW_THREAD_FAULTS = 2,
	/* a process's exit-reported flag (task storage) could not be allocated: its exit may be reported twice */
	OVERFLOW_EXIT_REPORTED = 3,
	OVERFLOW_KINDS = 4,
};

/*
 * Per process (tgid), from its first switch, fault or its fork until its exit. Faults are the
 * kernel's own minor and major counts (task min_flt and maj_flt, which count faults taken in the
 * kernel on user memory too), taken at each user page fault and at each thread's exit.
 */
struct proc_stats {
	__u64 voluntary_switches;
	__u64 involuntary_switches;
	__u64 minor_faults;
	__u64 major_faults;
	char comm[SCHED_COMM_LEN];
};

/* per thread: its min_flt and maj_flt as last added to its process's counts */
struct thread_faults {
	__u64 minor;
	__u64 major;
	/* 0 until first seen, for a thread older than the object: its faults so far are not counted */
	__u32 counted;
	__u32 pad;
};

/* one per CPU, summed by the reader */
struct runq_hist {
	__u64 slots[RUNQ_SLOTS];
	__u64 sum_ns;
};

struct sched_event {
	__u32 kind;
	/* start: the new process; exit: the process that ended; oom kill: the victim */
	__u32 pid;
	/* start and exit: the parent; oom kill: the process whose allocation ran out of memory */
	__u32 ppid;
	/* oom kill: the victim's owner */
	__u32 uid;
	/* exit: exit_group's status, and the signal that killed it (0: none) */
	__s32 exit_code;
	__u32 exit_signal;
	__u64 timestamp_ns;
	/* exit: how long the process lived */
	__u64 lifetime_ns;
	/* exit: the process's totals (its proc_stats entry, removed now) */
	__u64 voluntary_switches;
	__u64 involuntary_switches;
	__u64 minor_faults;
	__u64 major_faults;
	/* oom kill: the victim's memory in kB, as the OOM killer reports it */
	__u64 total_vm_kb;
	__u64 anon_rss_kb;
	__u64 file_rss_kb;
	__u64 shmem_rss_kb;
	__s32 oom_score_adj;
	__u32 pad;
	/* start: the new process's (its parent's); exit: at exit; oom kill: the victim's */
	char comm[SCHED_COMM_LEN];
	/* oom kill: the process that ran out of memory */
	char trigger_comm[SCHED_COMM_LEN];
};

#endif
