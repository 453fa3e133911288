// SPDX-License-Identifier: GPL-2.0
/*
 * Scheduler and process metrics, aggregated in the kernel: a run-queue latency histogram
 * (wakeup, or preemption, to switch-in), context switches and page faults per process, read from
 * user space every collection interval; process starts, exits (with exit code and totals) and
 * OOM kills through the ring buffer. A process's entries are removed when it exits, so the maps
 * follow the live processes; what a full map could not store is counted in `overflow`.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "overflow_counter.h"
#include "periscope.h"
#include "sched.h"

char LICENSE[] SEC("license") = "GPL";

/* 0 observes every process; otherwise only this tgid (its threads, its faults, its exit) */
const volatile __u32 target_tgid = 0;

/* include/linux/sched/signal.h: exit_group() or a fatal signal ended the whole thread group */
#define SIGNAL_GROUP_EXIT 0x00000004
/* include/linux/sched.h: the task is in do_exit() */
#define PF_EXITING 0x00000004

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} events SEC(".maps");
RECORD(events, struct sched_event);

/* preallocated: the switch and fault paths insert here, and must not allocate */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct proc_stats);
} proc_stats SEC(".maps");

/*
 * Per thread: when it became runnable (woken, or preempted while still runnable), 0 while it runs
 * or sleeps. Task storage, not a hash keyed by thread: no hash operation on the switch path, and
 * the entry goes with its thread.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} runnable_since SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct thread_faults);
} thread_faults SEC(".maps");

/*
 * Per process, on its group leader (whose task outlives every other thread of the group): set by
 * the one thread that reports the process's exit. Not in the process's proc_stats entry, which a
 * full map may not have given it, and which goes at the report.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} exit_reported SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct runq_hist);
} runq_latency SEC(".maps");

OVERFLOW_COUNTER(overflow, OVERFLOW_KINDS);

DROP_COUNTER;

static __always_inline bool observed(__u32 tgid)
{
	return !target_tgid || tgid == target_tgid;
}

/*
 * The process's entry, made on first sight (a process older than the object), but never for an
 * exiting task: its last switch comes after its exit removed the entry, which must stay removed.
 */
static __always_inline struct proc_stats *stats_of(__u32 tgid, struct task_struct *task)
{
	struct proc_stats *stats = bpf_map_lookup_elem(&proc_stats, &tgid);
	struct proc_stats fresh = {};

	if (stats || (BPF_CORE_READ(task, flags) & PF_EXITING))
		return stats;
	BPF_CORE_READ_STR_INTO(&fresh.comm, task, group_leader, comm);
	if (bpf_map_update_elem(&proc_stats, &tgid, &fresh, BPF_NOEXIST) && bpf_map_lookup_elem(&proc_stats, &tgid) == NULL) {
		count_overflow(OVERFLOW_PROC_STATS);
		return NULL;
	}
	return bpf_map_lookup_elem(&proc_stats, &tgid);
}

static __always_inline __u32 log2_slot(__u64 us)
{
	__u32 slot = 0;

	/* slot = bit length of us, so [2^(k-1), 2^k) µs lands in slot k */
	while (us && slot < RUNQ_SLOTS - 1) {
		us >>= 1;
		slot++;
	}
	return slot;
}

static __always_inline void record_runq_wait(__u64 waited)
{
	struct runq_hist *hist;
	__u32 zero = 0, slot;

	hist = bpf_map_lookup_elem(&runq_latency, &zero);
	if (!hist)
		return;
	slot = log2_slot(waited / 1000);
	if (slot < RUNQ_SLOTS)
		hist->slots[slot] += 1;
	hist->sum_ns += waited;
}

static __always_inline void mark_runnable(struct task_struct *task, __u64 now)
{
	__u64 *since = bpf_task_storage_get(&runnable_since, task, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (since)
		*since = now;
	else
		count_overflow(OVERFLOW_RUNNABLE_SINCE);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(handle_switch, bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
{
	__u32 prev_tgid = prev->tgid;
	__u64 now = bpf_ktime_get_ns(), *since;
	struct proc_stats *stats;

	/* the idle task (pid 0) is no process */
	if (prev->pid && observed(prev_tgid)) {
		stats = stats_of(prev_tgid, prev);
		/* as the kernel counts nvcsw: a task that gave up the CPU in a sleeping state */
		if (stats && !preempt && prev_state != 0)
			__sync_fetch_and_add(&stats->voluntary_switches, 1);
		else if (stats)
			__sync_fetch_and_add(&stats->involuntary_switches, 1);
		/* still runnable: it waits in the run queue from now; asleep: a wakeup that came while it still ran is void */
		if (prev_state == 0) {
			mark_runnable(prev, now);
		} else {
			since = bpf_task_storage_get(&runnable_since, prev, NULL, 0);
			if (since)
				*since = 0;
		}
	}
	if (next->pid) {
		since = bpf_task_storage_get(&runnable_since, next, NULL, 0);
		if (since && *since) {
			record_runq_wait(now - *since);
			*since = 0;
		}
	}
	return 0;
}

static __always_inline void on_wakeup(struct task_struct *task)
{
	if (task->pid && observed(task->tgid))
		mark_runnable(task, bpf_ktime_get_ns());
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(handle_wakeup, struct task_struct *task)
{
	on_wakeup(task);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(handle_wakeup_new, struct task_struct *task)
{
	on_wakeup(task);
	return 0;
}

/*
 * Adds what the thread's fault counts grew by since last time to its process's. The kernel
 * accounts a fault when it is done, so at a fault's tracepoint the counts hold every fault
 * before it: a thread's last fault shows at its next one, or at its exit.
 */
static __always_inline void account_faults(struct task_struct *task, __u32 tgid)
{
	struct thread_faults *last = bpf_task_storage_get(&thread_faults, task, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	__u64 minor = task->min_flt, major = task->maj_flt;
	struct proc_stats *stats;

	if (!last) {
		count_overflow(OVERFLOW_THREAD_FAULTS);
		return;
	}
	if (last->counted) {
		stats = stats_of(tgid, task);
		if (stats) {
			__sync_fetch_and_add(&stats->minor_faults, minor - last->minor);
			__sync_fetch_and_add(&stats->major_faults, major - last->major);
		}
	}
	last->minor = minor;
	last->major = major;
	last->counted = 1;
}

SEC("tracepoint/exceptions/page_fault_user")
int handle_page_fault(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = task->tgid;

	if (observed(tgid))
		account_faults(task, tgid);
	return 0;
}

/*
 * A new thread's faults count from its birth (the kernel starts its counts at 0); a new process
 * (not a new thread) also gets its entry now, and its start is reported.
 */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 child_tgid = child->tgid;
	struct thread_faults *faults;
	struct sched_event *e;

	if (!observed(child_tgid))
		return 0;
	faults = bpf_task_storage_get(&thread_faults, child, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (faults)
		faults->counted = 1;
	else
		count_overflow(OVERFLOW_THREAD_FAULTS);
	if (child_tgid == parent->tgid)
		return 0;
	stats_of(child_tgid, child);

	e = RESERVE_OR_DROP(events, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = SCHED_EVENT_START;
	e->pid = child_tgid;
	e->ppid = parent->tgid;
	e->timestamp_ns = bpf_ktime_get_boot_ns();
	BPF_CORE_READ_STR_INTO(&e->comm, child, comm);
	bpf_ringbuf_submit(e, wake_flags(&events));
	return 0;
}

/* the process's metrics carry its new name from its exec on */
SEC("tracepoint/sched/sched_process_exec")
int handle_exec(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct proc_stats *stats = bpf_map_lookup_elem(&proc_stats, &tgid);

	if (stats)
		bpf_get_current_comm(stats->comm, sizeof(stats->comm));
	return 0;
}

static __always_inline void report_exit(struct task_struct *task, __u32 tgid, struct proc_stats *totals)
{
	struct sched_event *e;
	__u32 status;

	e = RESERVE_OR_DROP(events, sizeof(*e));
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = SCHED_EVENT_EXIT;
	e->pid = tgid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->timestamp_ns = bpf_ktime_get_boot_ns();
	e->lifetime_ns = e->timestamp_ns - BPF_CORE_READ(task, group_leader, start_boottime);
	/* exit_group's status, for every thread of the group; else this last thread's own */
	if (BPF_CORE_READ(task, signal, flags) & SIGNAL_GROUP_EXIT)
		status = BPF_CORE_READ(task, signal, group_exit_code);
	else
		status = BPF_CORE_READ(task, exit_code);
	e->exit_code = (status >> 8) & 0xff;
	e->exit_signal = status & 0x7f;
	e->voluntary_switches = totals->voluntary_switches;
	e->involuntary_switches = totals->involuntary_switches;
	e->minor_faults = totals->minor_faults;
	e->major_faults = totals->major_faults;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, wake_flags(&events));
}

/*
 * Whether this thread is the one to report its process's exit: threads ending together may each
 * find the group dead, and the first to set the flag on the leader wins. Without the flag (task
 * storage the kernel could not allocate) every such thread reports, and the overflow says so.
 */
static __always_inline bool claims_exit_report(struct task_struct *task)
{
	struct task_struct *leader = task->group_leader;
	/* 64 bits: the BPF target has no 32-bit exchange before cpu v3 */
	__u64 *reported = bpf_task_storage_get(&exit_reported, leader, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);

	/* a thread that created it at the same time made this one's creation fail */
	if (!reported)
		reported = bpf_task_storage_get(&exit_reported, leader, NULL, 0);
	if (!reported) {
		count_overflow(OVERFLOW_EXIT_REPORTED);
		return true;
	}
	return __sync_lock_test_and_set(reported, 1) == 0;
}

SEC("tracepoint/sched/sched_process_exit")
int handle_exit(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = task->tgid;
	struct proc_stats *stats, totals = {};

	if (!observed(tgid))
		return 0;
	/* this thread's last faults, into its process's entry while there is one */
	account_faults(task, tgid);
	/* the group's last thread: every thread has counted itself out of signal->live */
	if (BPF_CORE_READ(task, signal, live.counter) != 0 || !claims_exit_report(task))
		return 0;
	/* the entry goes before its totals are sent: a collection that sees it has not had them */
	stats = bpf_map_lookup_elem(&proc_stats, &tgid);
	if (stats) {
		totals = *stats;
		bpf_map_delete_elem(&proc_stats, &tgid);
	}
	report_exit(task, tgid, &totals);
	return 0;
}

SEC("tracepoint/oom/mark_victim")
int handle_oom_victim(struct trace_event_raw_mark_victim *ctx)
{
	struct sched_event *e;
	__u32 victim = ctx->pid;

	if (!observed(victim))
		return 0;
	e = RESERVE_OR_DROP(events, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = SCHED_EVENT_OOM_KILL;
	e->pid = victim;
	e->ppid = bpf_get_current_pid_tgid() >> 32;
	e->uid = BPF_CORE_READ(ctx, uid);
	e->timestamp_ns = bpf_ktime_get_boot_ns();
	e->total_vm_kb = BPF_CORE_READ(ctx, total_vm);
	e->anon_rss_kb = BPF_CORE_READ(ctx, anon_rss);
	e->file_rss_kb = BPF_CORE_READ(ctx, file_rss);
	e->shmem_rss_kb = BPF_CORE_READ(ctx, shmem_rss);
	e->oom_score_adj = BPF_CORE_READ(ctx, oom_score_adj);
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), (void *)ctx + (ctx->__data_loc_comm & 0xFFFF));
	bpf_get_current_comm(e->trigger_comm, sizeof(e->trigger_comm));
	bpf_ringbuf_submit(e, wake_flags(&events));
	return 0;
}
