/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Fills a struct stack_sample (bpf/lib/stacks.h) for the current task, the same way for every
 * object that sends stacks: its user registers (the thread's user registers even when it is in
 * the kernel, task_pt_regs, so a thread in a system call unwinds from its call site), a copy of
 * its user stack from sp up, its kernel stack, pid, tid, comm, cpu and boot-clock time.
 *
 * @example
 *   s = RESERVE_OR_DROP(samples, STACK_SAMPLE_BYTES(limit));
 *   if (!s)
 *           return 0;
 *   fill_stack_sample(ctx, s, limit, 1);
 *   bpf_ringbuf_submit(s, 0);
 */
#ifndef STACK_SAMPLE_H
#define STACK_SAMPLE_H

#include "stacks.h"

#define STACK_PAGE_BYTES 4096
#define STACK_PF_KTHREAD 0x00200000

/*
 * what to reserve for a sample with up to `limit` bytes of stack: room for a last partial page
 * past the limit, since the verifier bounds a copy's offset and length apart
 */
#define STACK_SAMPLE_BYTES(limit) (sizeof(struct stack_sample) + (limit) + STACK_PAGE_BYTES)

/*
 * copies the stack from sp up, a page at a time so that the copy ends exactly where the mapped
 * stack does (a single read of `limit` bytes fails whole when the stack is shallower); returns
 * the bytes copied
 */
static __always_inline __u32 copy_user_stack(__u8 *dst, __u64 sp, __u64 limit)
{
	__u64 done = 0;

	for (int i = 0; i < STACK_MAX_BYTES / STACK_PAGE_BYTES + 1; i++) {
		__u64 len;

		if (done >= limit)
			break;
		/* up to the end of the page, or of the copy */
		len = STACK_PAGE_BYTES - ((sp + done) & (STACK_PAGE_BYTES - 1));
		if (len > limit - done)
			len = limit - done;
		if (bpf_probe_read_user(dst + done, len, (void *)(sp + done)))
			break;
		done += len;
	}
	return done;
}

/*
 * fills `s` (reserved with STACK_SAMPLE_BYTES(limit), limit <= STACK_MAX_BYTES) for the current
 * task; `ctx` is the program's context, which bpf_get_stack reads the kernel stack from. A kernel
 * thread gets its kernel stack and no user stack (stack_size 0, registers 0).
 */
static __always_inline void fill_stack_sample(void *ctx, struct stack_sample *s, __u64 limit, __u64 value)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();
	struct pt_regs *regs = 0;
	long kernel_bytes;

	if (limit > STACK_MAX_BYTES)
		limit = STACK_MAX_BYTES;
	s->timestamp_ns = bpf_ktime_get_boot_ns();
	s->pid = id >> 32;
	s->tid = (__u32)id;
	s->cpu = bpf_get_smp_processor_id();
	s->value = value;
	bpf_get_current_comm(s->comm, sizeof(s->comm));

	/* kernel stack */
	kernel_bytes = bpf_get_stack(ctx, s->kernel, sizeof(s->kernel), 0);
	s->kernel_frames = kernel_bytes > 0 ? kernel_bytes / sizeof(s->kernel[0]) : 0;

	/* user registers and stack: none for kernel threads */
	if (!(task->flags & STACK_PF_KTHREAD))
		regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs) {
		s->ip = s->sp = s->bp = 0;
		s->stack_size = 0;
		s->copy_end = STACK_COPY_WHOLE;
		return;
	}
	s->ip = regs->ip;
	s->sp = regs->sp;
	s->bp = regs->bp;
	s->stack_size = copy_user_stack(s->stack, regs->sp, limit);
	s->copy_end = s->stack_size == limit ? STACK_COPY_LIMIT : STACK_COPY_WHOLE;
}

#endif
