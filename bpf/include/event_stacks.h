/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The stacks of a traced event (a tracepoint hit, a uprobe hit), for bpftrace's `kstack` and
 * `ustack` in one-liners: a struct stack_sample (bpf/lib/stacks.h, the record profile samples
 * use) appended to the event's record, so user space unwinds and names it as it does a profile
 * sample (runtime/profiling/unwind.ts, repl/bpftrace/profile.ts).
 *
 * The kernel stack comes from bpf_get_stack. The user stack is the thread's user registers and a
 * copy of its stack from sp up (EVENT_STACK_BYTES at most), unwound in user space with each
 * file's .eh_frame, as profile samples are, rather than bpf_get_stack(BPF_F_USER_STACK), the
 * frame-pointer walk bpftrace does. Measured with bench/repl-stacks.bench.ts (getppid(2) 50,000
 * times a second, the program's run time per event under the kernel's BPF stats, which add about
 * 0.1 us; 2-CPU VM): no stacks 0.7 us, kstack 2.6-2.8 us, ustack by copy 2.8 us, ustack by frame
 * pointers 1.9 us, both stacks 4.0-5.1 us. So the copy costs the traced thread about 0.9 us an
 * event more than the walk, under what kstack costs, and buys the frames a walk loses: at a
 * system call, the libc wrapper keeps no frame pointer, so a walk drops the function that called
 * it (the one a syscall stack is read for), and it drops callers of any code built without frame
 * pointers (most of Debian). The price is on the reader's side: about 8.8 KB a record instead of
 * under 1 KB, and 16 us of unwinding and naming per event against 6.6 us for a kernel stack, so
 * a one-liner keeps up with about 50,000 ustack events a second here before the ring drops some
 * (it says how many, as bpftrace prints lost events).
 */
#ifndef EVENT_STACKS_H
#define EVENT_STACKS_H

#include "stack_sample.h"

/* which stacks a probe slot captures (its config's `stacks`); 0 costs nothing */
#define EVENT_STACK_KERNEL 1
#define EVENT_STACK_USER 2

/* bytes of user stack copied per event: as profile probes copy (repl/bpftrace/profile.ts) */
#define EVENT_STACK_BYTES 8192

/* the most bytes event_stacks() writes: the sample, the copy, and the page the verifier's bound on
 * a copy's offset and length leaves room for (see STACK_SAMPLE_BYTES) */
#define EVENT_STACKS_MAX STACK_SAMPLE_BYTES(EVENT_STACK_BYTES)

/*
 * Fills `s` with the current task's stacks that `flags` asks for; returns the bytes of `s` that
 * hold them (a kernel thread has no user stack; a stack not asked for is empty). `pid` and `tid`
 * are the event's: the unwinder reads the process's mappings by pid.
 */
static __always_inline __u32 event_stacks(void *ctx, struct stack_sample *s, __u32 flags, __u32 pid, __u32 tid)
{
	struct task_struct *task;
	struct pt_regs *regs = 0;
	long kernel_bytes = 0;
	__u32 copied;

	s->timestamp_ns = 0;
	s->pid = pid;
	s->tid = tid;
	s->cpu = 0;
	s->value = 1;
	__builtin_memset(s->comm, 0, sizeof(s->comm));
	if (flags & EVENT_STACK_KERNEL)
		kernel_bytes = bpf_get_stack(ctx, s->kernel, sizeof(s->kernel), 0);
	s->kernel_frames = kernel_bytes > 0 ? kernel_bytes / sizeof(s->kernel[0]) : 0;

	if (flags & EVENT_STACK_USER) {
		task = bpf_get_current_task_btf();
		if (!(task->flags & STACK_PF_KTHREAD))
			regs = (struct pt_regs *)bpf_task_pt_regs(task);
	}
	if (!regs) {
		s->ip = s->sp = s->bp = 0;
		s->stack_size = 0;
		s->copy_end = STACK_COPY_WHOLE;
		return sizeof(*s);
	}
	s->ip = regs->ip;
	s->sp = regs->sp;
	s->bp = regs->bp;
	copied = copy_user_stack(s->stack, regs->sp, EVENT_STACK_BYTES);
	if (copied > EVENT_STACK_BYTES)
		copied = EVENT_STACK_BYTES;
	s->stack_size = copied;
	s->copy_end = copied == EVENT_STACK_BYTES ? STACK_COPY_LIMIT : STACK_COPY_WHOLE;
	return sizeof(*s) + copied;
}

#endif
