// SPDX-License-Identifier: GPL-2.0
/*
 * CPU samples with user stacks to unwind in user space: a perf_event program (attached on every
 * CPU at a frequency) sends, for each sample of a user thread, its user registers and a copy of
 * its stack from sp up, at most stack_bytes (perf's --call-graph dwarf way). The registers are the
 * thread's user registers even when the sample interrupted the kernel (task_pt_regs), so a thread
 * in a system call unwinds from its call site.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "periscope.h"
#include "stacks.h"

char LICENSE[] SEC("license") = "GPL";

#define PAGE_BYTES 4096
#define PF_KTHREAD 0x00200000

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} samples SEC(".maps");
RECORD(samples, struct stack_sample);

DROP_COUNTER;

/* the process to sample (its tgid); 0 samples every process */
const volatile __u32 target_tgid = 0;
/* the most stack bytes copied per sample, up to STACK_MAX_BYTES */
const volatile __u32 stack_bytes = 8192;
/*
 * wake the reader only once the ring holds this many bytes (0: at every sample); a reader that
 * drains on a timer saves the wakeup, which costs as much as copying a few KB of stack
 */
const volatile __u64 wakeup_bytes = 0;

/*
 * copies the stack from sp up, a page at a time so that the copy ends exactly where the mapped
 * stack does (a single read of stack_bytes fails whole when the stack is shallower); returns the
 * bytes copied
 */
static __always_inline __u32 copy_stack(__u8 *dst, __u64 sp, __u64 limit)
{
	__u64 done = 0;

	for (int i = 0; i < STACK_MAX_BYTES / PAGE_BYTES + 1; i++) {
		__u64 len;

		if (done >= limit)
			break;
		/* up to the end of the page, or of the copy */
		len = PAGE_BYTES - ((sp + done) & (PAGE_BYTES - 1));
		if (len > limit - done)
			len = limit - done;
		if (bpf_probe_read_user(dst + done, len, (void *)(sp + done)))
			break;
		done += len;
	}
	return done;
}

SEC("perf_event")
int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
	__u64 limit = stack_bytes > STACK_MAX_BYTES ? STACK_MAX_BYTES : stack_bytes;
	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct stack_sample *s;
	struct pt_regs *regs;

	if ((__u32)id == 0 || (target_tgid && id >> 32 != target_tgid))
		return 0;
	task = bpf_get_current_task_btf();
	/* kernel threads have no user stack */
	if (task->flags & PF_KTHREAD)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return 0;

	/* room for a last partial page past the limit: the verifier bounds offset and length apart */
	s = RESERVE_OR_DROP(samples, sizeof(*s) + limit + PAGE_BYTES);
	if (!s)
		return 0;
	s->timestamp_ns = bpf_ktime_get_ns();
	s->pid = id >> 32;
	s->tid = (__u32)id;
	s->ip = regs->ip;
	s->sp = regs->sp;
	s->bp = regs->bp;
	s->cpu = bpf_get_smp_processor_id();
	s->pad = 0;
	bpf_get_current_comm(s->comm, sizeof(s->comm));

	/* copy the user stack */
	s->stack_size = copy_stack(s->stack, regs->sp, limit);
	s->copy_end = s->stack_size == limit ? STACK_COPY_LIMIT : STACK_COPY_WHOLE;
	bpf_ringbuf_submit(s, wakeup_bytes && bpf_ringbuf_query(&samples, BPF_RB_AVAIL_DATA) < wakeup_bytes ? BPF_RB_NO_WAKEUP : 0);
	return 0;
}
