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
 * times a second, nothing lost; the program's run time per event under the kernel's BPF stats,
 * which add about 0.1 us; a loaded 2-CPU VM): no stacks 0.67 us, kstack 2.6 us, ustack by copy
 * 2.9 us, ustack by frame pointers 1.9 us (a build that walked them, for the comparison), both
 * stacks 4.6 us. So the copy costs the traced thread about 1 us an event more than the walk (a
 * kernel stack adds 1.9 us), and buys the frames a walk loses: at a system call, the libc wrapper keeps
 * no frame pointer, so a walk drops the function that called it (the one a syscall stack is read
 * for), and it drops callers of any code built without frame pointers (most of Debian). The
 * price is on the reader's side: up to 8.8 KB a record instead of under 1.7 KB, and 7.4 us of
 * reading, unwinding and naming an event (profile.ts names each distinct stack once a second)
 * against 5.7 us with a kernel stack and 2.9 us with none; with stacks a one-liner keeps up with
 * about 50,000 events a second here (at 100,000, 15-27% are lost, and it says how many, as
 * bpftrace prints lost events), without them with 200,000.
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
