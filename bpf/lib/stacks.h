/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef STACKS_H
#define STACKS_H

/* the largest user stack copy a loader may ask for (stack_bytes) */
#define STACK_MAX_BYTES 32768

/* copy_end: why the stack copy ends where it does */
enum stack_copy_end {
	/* the next page is not mapped: the copy holds the whole stack above sp */
	STACK_COPY_WHOLE = 0,
	/* stack_bytes were copied: the stack may go on above the copy */
	STACK_COPY_LIMIT = 1,
};

/*
 * one CPU sample of a user thread: its user registers and the bytes of its stack from sp up,
 * for unwinding in user space (runtime/profiling/unwind.ts)
 */
struct stack_sample {
	__u64 timestamp_ns;
	__u32 pid;
	__u32 tid;
	addr64 ip;
	addr64 sp;
	addr64 bp;
	/* bytes of stack[] that hold the stack from sp */
	__u32 stack_size;
	/* enum stack_copy_end */
	__u32 copy_end;
	__u32 cpu;
	__u32 pad;
	char comm[16];
	__u8 stack[];
};

#endif
