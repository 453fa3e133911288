/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef OFFCPU_H
#define OFFCPU_H

/* whom `options.observe` watches */
enum offcpu_observe {
	/* nobody: the options' value until user space claims them */
	OFFCPU_OBSERVE_NONE = 0,
	/* the processes in `targets` */
	OFFCPU_OBSERVE_TARGETS = 1,
	/* every user process but those in `self_tgids` */
	OFFCPU_OBSERVE_ALL = 2,
};

/* `options` entry 0, claimed by user space */
struct offcpu_options {
	/* blocks shorter than this are not recorded (0: every block) */
	__u64 min_block_ns;
	/* enum offcpu_observe */
	__u32 observe;
	__u32 pad;
};

/* what could not be recorded, counted in `overflows` */
enum offcpu_overflow {
	/*
	 * a thread's state could not be made (its task storage, task work or stash: a full map, or
	 * the kernel's allocation cache empty at that moment): that block is not sent
	 */
	OFFCPU_OVERFLOW_THREADS = 0,
	/*
	 * a long block's task work could not be scheduled (the thread's previous one not run yet, or
	 * the thread exiting): its time waits for the thread's next long block, or is lost at exit
	 */
	OFFCPU_OVERFLOW_SCHEDULE = 1,
	/*
	 * a block whose end no sched_switch reported: the thread blocked again while its last block
	 * was still open, so that block's length is unknown and it is not sent. The kernel's own
	 * tracepoint misses a switch-in now and then on a loaded machine (bpftrace counts the same).
	 */
	OFFCPU_OVERFLOW_UNSEEN_END = 2,
	OFFCPU_OVERFLOWS = 3,
};

#endif
