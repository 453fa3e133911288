/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef ALLOC_H
#define ALLOC_H

#define ALLOC_COMM_LEN 16

/* the libc functions followed, by index in `calls` */
enum alloc_func {
	ALLOC_MALLOC = 0,
	ALLOC_CALLOC = 1,
	ALLOC_REALLOC = 2,
	ALLOC_FREE = 3,
	ALLOC_FUNCS = 4,
};

/* what a bounded map could not store, counted in `overflows` */
enum alloc_overflow {
	/* a block's address and size: its free is not subtracted from bytes in use */
	ALLOC_OVERFLOW_BLOCKS = 0,
	/* a process's counters: its calls are not counted */
	ALLOC_OVERFLOW_PROCESSES = 1,
	/* a thread's call in flight, whose storage could not be made: the call is not counted */
	ALLOC_OVERFLOW_IN_FLIGHT = 2,
	ALLOC_OVERFLOWS = 3,
};

/*
 * A target process's counts since its first followed call (`processes` map value, and its last
 * counts on `exits` when it exits). Bytes in use are tracked_bytes - freed_bytes: blocks allocated
 * while followed and not freed yet.
 */
struct alloc_stats {
	/* calls that returned, by enum alloc_func (realloc(NULL, n) is a realloc) */
	__u64 calls[ALLOC_FUNCS];
	/* malloc, calloc or realloc that returned NULL for a size above 0 */
	__u64 failures;
	/* bytes asked for by every malloc, calloc (nmemb * size) and realloc (the new size) that succeeded */
	__u64 allocated_bytes;
	/* of those, the bytes of the blocks remembered in `blocks` */
	__u64 tracked_bytes;
	/* bytes of remembered blocks freed (by free, or moved or shrunk by realloc) */
	__u64 freed_bytes;
	/* frees of blocks not remembered: allocated before the probes, or by another function (memalign) */
	__u64 unknown_frees;
	/* when the entry was made (boot clock): tells a pid's owners apart */
	__u64 created_ns;
	__u32 pid;
	__u32 pad;
	char comm[ALLOC_COMM_LEN];
};

/* `blocks` key: a live block of a process */
struct alloc_block {
	__u32 tgid;
	__u32 pad;
	__u64 address;
};

#endif
