/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef STACKS_H
#define STACKS_H

/* the largest user stack copy a loader may ask for (stack_bytes) */
#define STACK_MAX_BYTES 32768
/* kernel frames kept per sample (bpf_get_stack); deeper kernel stacks keep their innermost frames */
#define KERNEL_MAX_FRAMES 64

/* copy_end: why the stack copy ends where it does */
enum stack_copy_end {
	/* the next page is not mapped: the copy holds the whole stack above sp */
	STACK_COPY_WHOLE = 0,
	/* stack_bytes were copied: the stack may go on above the copy */
	STACK_COPY_LIMIT = 1,
};

/*
 * one sample of a thread: its user registers and the bytes of its user stack from sp up, for
 * unwinding in user space (runtime/profiling/unwind.ts), and its kernel stack. Shared by every
 * object that sends stacks (bpf/include/stack_sample.h fills it): CPU samples here, off-CPU and
 * allocation samples elsewhere, told apart by what `value` weighs.
 */
struct stack_sample {
	/* bpf_ktime_get_boot_ns(), the clock of every other record (ctx.time.wallNs turns it to wall time) */
	__u64 timestamp_ns;
	__u32 pid;
	__u32 tid;
	addr64 ip;
	addr64 sp;
	addr64 bp;
	/* bytes of stack[] that hold the stack from sp (0 for a kernel thread) */
	__u32 stack_size;
	/* enum stack_copy_end */
	__u32 copy_end;
	__u32 cpu;
	/* valid entries of kernel[] */
	__u32 kernel_frames;
	char comm[16];
	/* what the sample weighs: 1 for a CPU sample, ns blocked off-CPU, bytes allocated */
	__u64 value;
	/* the kernel stack, innermost first; no frame when the sample interrupted user mode */
	addr64 kernel[KERNEL_MAX_FRAMES];
	__u8 stack[];
};

#endif
