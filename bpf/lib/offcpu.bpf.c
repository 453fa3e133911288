// SPDX-License-Identifier: GPL-2.0
/*
 * Off-CPU time: how long user threads stay blocked (switched out in a sleeping state, by
 * sched_switch), and where, as stack samples (struct stack_sample, `value` = ns blocked) of the
 * blocks that lasted at least `min_block_ns`.
 *
 * Whether a block was long enough is known only when the thread is switched back in, in the
 * context of the task it replaces, whose memory bpf_probe_read_user would read. So the switch-in
 * schedules a BPF task work on the woken thread (bpf_task_work_schedule_resume, Linux 6.18), which
 * runs in that thread on its way back to user space: there its user registers and stack are
 * still those of the moment it blocked (it ran only in the kernel since), and it sends the sample.
 * A context switch costs a task storage write at switch-out and a lookup at switch-in; only the
 * long blocks pay for the stack copy, never the short ones. The kernel stack is the sleeping
 * thread's, read at switch-in (bpf_get_task_stack skips the scheduler's own frames).
 *
 * Where the task work cannot be had (a kernel before 6.18, `use_task_work` 0, or raw_tp and the
 * tracepoint, whose task pointers task storage and the task work do not take), each block of a
 * watched thread is stashed at its switch-out, with its stack copied then (the thread is current),
 * and sent at its switch-in if it was long enough: every blocking switch pays for the copy.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "periscope.h"
#include "sample_buffer.h"
#include "offcpu.h"

char LICENSE[] SEC("license") = "GPL";

#define TASK_RUNNING 0
/* the tracepoint's prev_state of a preempted task (include/linux/sched.h: TASK_REPORT_IDLE << 1) */
#define TASK_REPORT_MAX 0x100
/* the most stack a stash holds */
#define OFFCPU_STASH_BYTES 8192

/* the most stack bytes copied per sample, up to SAMPLE_BUFFER_MAX_BYTES (OFFCPU_STASH_BYTES stashed) */
const volatile __u32 stack_bytes = 8192;
/* 0: stash every block at its switch-out even where the kernel has the task work */
const volatile __u32 use_task_work = 1;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} samples SEC(".maps");
RECORD(samples, struct stack_sample);

DROP_COUNTER;

/* where a sample is built, so that the ring gets only its filled bytes */
SAMPLE_BUFFER_MAP(sample_buffer);

/* entry 0; all zero (nobody observed) until user space claims it */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct offcpu_options);
} options SEC(".maps");

/* the processes observed with OFFCPU_OBSERVE_TARGETS, claimed by user space */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

/* Periscope's own processes, never observed (written by the loader) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} self_tgids SEC(".maps");

/* a thread's off-CPU state, made at its first observed block and gone with the thread */
struct off_cpu {
	/* when it blocked (boot clock); 0 while it runs */
	__u64 since;
	/* the long blocks not sent yet, and when the first of them began */
	__u64 blocked_ns;
	__u64 first_block_ns;
	/* the kernel stack of the last of them */
	__u32 kernel_frames;
	__u32 pad;
	addr64 kernel[KERNEL_MAX_FRAMES];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct off_cpu);
} threads SEC(".maps");

/* the task work of a thread that had a long block, by tid (the kernel takes it only in a hash or array value) */
struct send_work {
	struct bpf_task_work work;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct send_work);
} send_works SEC(".maps");

/* a watched thread's last block and its sample, where it is stashed at the switch-out */
struct offcpu_stash {
	/* when it blocked (boot clock); 0 while it runs */
	__u64 since;
	/* a struct stack_sample and its stack */
	__u8 sample[STACK_SAMPLE_BYTES(OFFCPU_STASH_BYTES)];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct offcpu_stash);
} stashes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OFFCPU_OVERFLOWS);
	__type(key, __u32);
	__type(value, __u64);
} overflows SEC(".maps");

extern int bpf_task_work_schedule_resume_impl(struct task_struct *task, struct bpf_task_work *tw, void *map__map,
					      int (*callback)(struct bpf_map *map, void *key, void *value), void *aux__prog) __ksym __weak;

static __always_inline void count_overflow(__u32 reason)
{
	__u64 *count = bpf_map_lookup_elem(&overflows, &reason);

	if (count)
		*count += 1;
}

/* a watched thread blocks at `now`: a block still open means the kernel never reported its end */
static __always_inline void block_begins(__u64 *since, __u64 now)
{
	if (*since)
		count_overflow(OFFCPU_OVERFLOW_UNSEEN_END);
	*since = now;
}

static __always_inline bool observed(struct task_struct *task, struct offcpu_options *opts)
{
	__u32 tgid = task->tgid;

	/* the idle task and kernel threads: no user stack, and no return to user space to send from */
	if (task->pid == 0 || (task->flags & STACK_PF_KTHREAD))
		return false;
	/* one hash lookup per switch: Periscope is left out only when every process is observed */
	if (opts->observe == OFFCPU_OBSERVE_TARGETS)
		return bpf_map_lookup_elem(&targets, &tgid);
	return opts->observe == OFFCPU_OBSERVE_ALL && !bpf_map_lookup_elem(&self_tgids, &tgid);
}

/* the task work: runs in the woken thread, on its way back to user space */
static int send_sample(struct bpf_map *map, __u32 *tid, struct send_work *work)
{
	__u64 limit = stack_bytes > SAMPLE_BUFFER_MAX_BYTES ? SAMPLE_BUFFER_MAX_BYTES : stack_bytes;
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();
	struct stack_sample *s;
	struct off_cpu *thread;
	struct pt_regs *regs;

	thread = bpf_task_storage_get(&threads, task, NULL, 0);
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!thread || !regs || !thread->blocked_ns)
		return 0;
	s = take_sample_buffer(&sample_buffer);
	if (!s) {
		count_drop(&dropped);
		return 0;
	}
	/* the time the thread was off the CPU: from its first long block */
	s->timestamp_ns = thread->first_block_ns;
	s->value = thread->blocked_ns;
	thread->blocked_ns = 0;
	s->pid = id >> 32;
	s->tid = (__u32)id;
	s->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	s->kernel_frames = thread->kernel_frames > KERNEL_MAX_FRAMES ? KERNEL_MAX_FRAMES : thread->kernel_frames;
	bpf_probe_read_kernel(s->kernel, sizeof(s->kernel), thread->kernel);

	/* user registers and stack, as they were when the thread blocked */
	s->ip = regs->ip;
	s->sp = regs->sp;
	s->bp = regs->bp;
	s->stack_size = copy_user_stack(s->stack, regs->sp, limit);
	s->copy_end = s->stack_size == limit ? STACK_COPY_LIMIT : STACK_COPY_WHOLE;
	if (send_sample_buffer(&samples, s))
		count_drop(&dropped);
	return 0;
}

/* switch-in of a thread that blocked: a long block is added up and its sample scheduled */
static __always_inline void woken(struct task_struct *task, __u64 now, struct offcpu_options *opts)
{
	struct off_cpu *thread = bpf_task_storage_get(&threads, task, NULL, 0);
	struct send_work empty = {}, *work;
	__u64 blocked_ns;
	__u32 tid;
	long bytes;

	if (!thread || !thread->since)
		return;
	blocked_ns = now - thread->since;
	if (blocked_ns < opts->min_block_ns) {
		thread->since = 0;
		return;
	}
	if (!thread->blocked_ns)
		thread->first_block_ns = thread->since;
	thread->since = 0;
	thread->blocked_ns += blocked_ns;
	bytes = bpf_get_task_stack(task, thread->kernel, sizeof(thread->kernel), 0);
	thread->kernel_frames = bytes > 0 ? bytes / sizeof(addr64) : 0;

	tid = task->pid;
	work = bpf_map_lookup_elem(&send_works, &tid);
	if (!work) {
		if (bpf_map_update_elem(&send_works, &tid, &empty, BPF_NOEXIST) && !bpf_map_lookup_elem(&send_works, &tid)) {
			count_overflow(OFFCPU_OVERFLOW_THREADS);
			return;
		}
		work = bpf_map_lookup_elem(&send_works, &tid);
		if (!work)
			return;
	}
	if (bpf_task_work_schedule_resume_impl(task, &work->work, &send_works, (void *)send_sample, NULL))
		count_overflow(OFFCPU_OVERFLOW_SCHEDULE);
}

/*
 * switch-out of a watched thread (current) that blocks: its sample is stashed, stack and all.
 * `kernel_skip` kernel frames are the program's and the tracepoint's own (bpf_get_stack's skip),
 * so that the kernel stack starts in the scheduler.
 */
static __always_inline void stash_block(void *ctx, struct task_struct *task, __u64 now, __u32 kernel_skip)
{
	__u64 limit = stack_bytes > OFFCPU_STASH_BYTES ? OFFCPU_STASH_BYTES : stack_bytes;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, zero = 0;
	struct offcpu_stash *stash;
	struct sample_buffer *any;
	struct stack_sample *s;
	struct pt_regs *regs;
	long kernel_bytes;

	stash = bpf_map_lookup_elem(&stashes, &tid);
	if (!stash) {
		/* a new entry's bytes are all written below: any value of the right size makes it */
		any = bpf_map_lookup_elem(&sample_buffer, &zero);
		if (!any)
			return;
		if (bpf_map_update_elem(&stashes, &tid, any->bytes, BPF_NOEXIST) && !bpf_map_lookup_elem(&stashes, &tid)) {
			count_overflow(OFFCPU_OVERFLOW_THREADS);
			return;
		}
		stash = bpf_map_lookup_elem(&stashes, &tid);
		if (!stash)
			return;
		/* the copied bytes are no block of this thread's */
		stash->since = 0;
	}
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return;
	block_begins(&stash->since, now);
	s = (struct stack_sample *)stash->sample;
	s->timestamp_ns = now;
	s->pid = id >> 32;
	s->tid = tid;
	s->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	kernel_bytes = bpf_get_stack(ctx, s->kernel, sizeof(s->kernel), kernel_skip & BPF_F_SKIP_FIELD_MASK);
	s->kernel_frames = kernel_bytes > 0 ? kernel_bytes / sizeof(s->kernel[0]) : 0;
	s->ip = regs->ip;
	s->sp = regs->sp;
	s->bp = regs->bp;
	s->stack_size = copy_user_stack(s->stack, regs->sp, limit);
	s->copy_end = s->stack_size == limit ? STACK_COPY_LIMIT : STACK_COPY_WHOLE;
}

/* switch-in of a thread with a stashed block: sent if it was long enough */
static __always_inline void send_stash(__u32 tid, __u64 now, struct offcpu_options *opts)
{
	struct offcpu_stash *stash = bpf_map_lookup_elem(&stashes, &tid);
	struct stack_sample *s;
	__u64 blocked_ns;
	__u32 size;

	if (!stash || !stash->since)
		return;
	blocked_ns = now - stash->since;
	stash->since = 0;
	if (blocked_ns < opts->min_block_ns)
		return;
	s = (struct stack_sample *)stash->sample;
	s->value = blocked_ns;
	size = s->stack_size > OFFCPU_STASH_BYTES ? OFFCPU_STASH_BYTES : s->stack_size;
	if (bpf_ringbuf_output(&samples, s, sizeof(*s) + size, 0))
		count_drop(&dropped);
}

/* a switch seen where the blocks are stashed: `blocked` says whether current (prev) blocks */
static __always_inline void stash_switch(void *ctx, bool blocked, __u32 next_tid, __u32 kernel_skip)
{
	__u64 now = bpf_ktime_get_boot_ns();
	struct offcpu_options *opts;
	struct task_struct *task;
	__u32 zero = 0;

	opts = bpf_map_lookup_elem(&options, &zero);
	if (!opts || opts->observe == OFFCPU_OBSERVE_NONE)
		return;
	task = bpf_get_current_task_btf();
	if (blocked && observed(task, opts))
		stash_block(ctx, task, now, kernel_skip);
	send_stash(next_tid, now, opts);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(handle_switch, bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
{
	/*
	 * a preempted thread waits for a CPU, not blocked: even one whose state is already a sleeping
	 * one, preempted on its way to schedule()
	 */
	bool blocked = !preempt && prev_state != TASK_RUNNING;
	__u64 now = bpf_ktime_get_boot_ns();
	struct offcpu_options *opts;
	__u32 zero = 0;

	if (!use_task_work || !bpf_task_work_schedule_resume_impl) {
		/* this program, bpf_trace_run4 and __traceiter_sched_switch */
		stash_switch(ctx, blocked, next->pid, 3);
		return 0;
	}
	opts = bpf_map_lookup_elem(&options, &zero);
	if (!opts || opts->observe == OFFCPU_OBSERVE_NONE)
		return 0;
	if (blocked && observed(prev, opts)) {
		struct off_cpu *thread = bpf_task_storage_get(&threads, prev, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);

		/* the storage is allocated at a thread's first block, and may not be had then */
		if (thread)
			block_begins(&thread->since, now);
		else
			count_overflow(OFFCPU_OVERFLOW_THREADS);
	}
	woken(next, now, opts);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(raw_switch, bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
{
	/* as handle_switch; this program, bpf_trace_run4 and __traceiter_sched_switch */
	stash_switch(ctx, !preempt && prev_state != TASK_RUNNING, BPF_CORE_READ(next, pid), 3);
	return 0;
}

SEC("tracepoint/sched/sched_switch")
int tp_switch(struct trace_event_raw_sched_switch *ctx)
{
	/* the tracepoint reports a preempted task as TASK_REPORT_MAX, whatever its state */
	long state = ctx->prev_state;

	/* __traceiter_sched_switch (the perf glue's frames are not in the stack) */
	stash_switch(ctx, state != TASK_RUNNING && !(state & TASK_REPORT_MAX), ctx->next_pid, 1);
	return 0;
}

/* a thread's task work and stash go with it (its task storage goes by itself) */
SEC("tracepoint/sched/sched_process_exit")
int handle_exit(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&send_works, &tid);
	bpf_map_delete_elem(&stashes, &tid);
	return 0;
}
