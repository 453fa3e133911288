/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef ALLOC_STACKS_H
#define ALLOC_STACKS_H

/* `options` entry 0, claimed by user space */
struct alloc_stacks_options {
	/*
	 * the mean number of bytes allocated between two samples (a thread's countdown, restarted at
	 * a random gap in [1, 2 * sample_bytes]); 0 samples every allocation with its exact size
	 */
	__u64 sample_bytes;
};

/* `live` key: a sampled block not freed yet */
struct alloc_stacks_block {
	__u32 tgid;
	__u32 pad;
	__u64 address;
};

/* `live` value: what its sample weighed, and the sample's (tid, timestamp_ns) that names it */
struct alloc_stacks_live {
	__u64 weight;
	__u64 timestamp_ns;
	__u32 tid;
	__u32 pad;
};

/* what a bounded map could not store, counted in `overflows` */
enum alloc_stacks_overflow {
	/* a sampled block: its bytes never leave bytes in use, nor count in it */
	ALLOC_STACKS_OVERFLOW_LIVE = 0,
	/* a thread's call in flight, whose storage could not be made: the call is not sampled */
	ALLOC_STACKS_OVERFLOW_IN_FLIGHT = 1,
	ALLOC_STACKS_OVERFLOWS = 2,
};

#endif
