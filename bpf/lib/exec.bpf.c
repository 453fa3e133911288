// SPDX-License-Identifier: GPL-2.0
/* process exec and exit events from the sched tracepoints, with filename and argv; with
 * target_tgid set, only that process and its descendants, followed through forks */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "periscope.h"
#include "exec.h"

char LICENSE[] SEC("license") = "GPL";

/* 0 traces every process; otherwise only this tgid and its descendants' execs */
const volatile __u32 target_tgid = 0;
const volatile __u64 min_duration_ns = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");
RECORD(events, struct exec_event);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} exec_start SEC(".maps");

/* how far up the parent chain an exec looks for target_tgid, for processes forked before load */
#define ANCESTOR_DEPTH 32

/*
 * Processes that descend from target_tgid, added when a followed process forks and removed at
 * exit: a descendant whose parent exits before it execs is reparented out of the target's tree,
 * so only this map still knows it. When the map is full, a new descendant is found by the
 * ancestor walk as long as its chain of parents is intact.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u8);
} descendants SEC(".maps");

DROP_COUNTER;

static __always_inline void fill_common(struct exec_event *e, struct task_struct *task)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ugid = bpf_get_current_uid_gid();

	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->uid = (__u32)ugid;
	e->gid = ugid >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->timestamp_ns = bpf_ktime_get_boot_ns();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

/* whether tgid (whose task is task) is target_tgid or descends from it; remembers what it finds */
static __always_inline bool follows_target(struct task_struct *task, __u32 tgid)
{
	__u8 yes = 1;
	__u32 ancestor;
	int depth;

	if (tgid == target_tgid || bpf_map_lookup_elem(&descendants, &tgid))
		return true;
	for (depth = 0; depth < ANCESTOR_DEPTH; depth++) {
		task = BPF_CORE_READ(task, real_parent);
		ancestor = BPF_CORE_READ(task, tgid);
		if (ancestor == target_tgid) {
			bpf_map_update_elem(&descendants, &tgid, &yes, BPF_ANY);
			return true;
		}
		/* init, or the idle task above it */
		if (ancestor <= 1)
			break;
	}
	return false;
}

static __always_inline bool wanted(struct task_struct *task)
{
	if (!target_tgid)
		return true;
	return follows_target(task, BPF_CORE_READ(task, tgid));
}

SEC("tracepoint/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct exec_event *e;
	unsigned long arg_start, arg_end, len;
	unsigned int fname_off;
	__u64 now;
	__u32 pid;

	if (!wanted(task))
		return 0;

	/* remember the start for the exit event's duration */
	pid = bpf_get_current_pid_tgid() >> 32;
	now = bpf_ktime_get_boot_ns();
	bpf_map_update_elem(&exec_start, &pid, &now, BPF_ANY);

	/* reserve sample from ringbuf */
	e = RESERVE_OR_DROP(events, sizeof(*e));
	if (!e)
		return 0;
	fill_common(e, task);
	e->kind = EXEC_EVENT_EXEC;
	e->duration_ns = 0;
	e->exit_code = 0;

	fname_off = ctx->__data_loc_filename & 0xFFFF;
	bpf_probe_read_str(e->filename, sizeof(e->filename), (void *)ctx + fname_off);

	/* copy argv from the new image's stack: NUL-separated strings */
	arg_start = BPF_CORE_READ(task, mm, arg_start);
	arg_end = BPF_CORE_READ(task, mm, arg_end);
	len = arg_end - arg_start;
	e->args_truncated = len > EXEC_ARGS_LEN - 1;
	if (len > EXEC_ARGS_LEN - 1)
		len = EXEC_ARGS_LEN - 1;
	if (bpf_probe_read_user(e->args, len & (EXEC_ARGS_LEN - 1), (void *)arg_start) < 0)
		len = 0;
	e->args[len & (EXEC_ARGS_LEN - 1)] = 0;
	e->args_size = len;
	e->pad = 0;

	bpf_ringbuf_submit(e, wake_flags(&events));
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int handle_exit(struct trace_event_raw_sched_process_template *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct exec_event *e;
	__u64 id = bpf_get_current_pid_tgid(), *start, duration = 0;
	__u32 pid = id >> 32;

	/* only whole-process exits, not thread exits */
	if (pid != (__u32)id)
		return 0;
	if (target_tgid)
		bpf_map_delete_elem(&descendants, &pid);
	start = bpf_map_lookup_elem(&exec_start, &pid);
	if (!start)
		return 0;
	duration = bpf_ktime_get_boot_ns() - *start;
	bpf_map_delete_elem(&exec_start, &pid);
	if (min_duration_ns && duration < min_duration_ns)
		return 0;

	e = RESERVE_OR_DROP(events, sizeof(*e));
	if (!e)
		return 0;
	fill_common(e, task);
	e->kind = EXEC_EVENT_EXIT;
	e->duration_ns = duration;
	e->exit_code = (BPF_CORE_READ(task, exit_code) >> 8) & 0xff;
	e->args_truncated = 0;
	e->args_size = 0;
	e->pad = 0;
	e->filename[0] = 0;
	e->args[0] = 0;
	bpf_ringbuf_submit(e, wake_flags(&events));
	return 0;
}

/* a process forked by a followed one is followed from birth, even if its parent exits first */
SEC("raw_tp/sched_process_fork")
int handle_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 parent_tgid, child_tgid;
	__u8 yes = 1;

	if (!target_tgid)
		return 0;
	parent_tgid = BPF_CORE_READ(parent, tgid);
	child_tgid = BPF_CORE_READ(child, tgid);
	/* a new thread of a process: followed or not along with it */
	if (child_tgid == parent_tgid)
		return 0;
	if (follows_target(parent, parent_tgid))
		bpf_map_update_elem(&descendants, &child_tgid, &yes, BPF_ANY);
	return 0;
}
