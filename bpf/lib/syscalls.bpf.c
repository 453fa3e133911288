// SPDX-License-Identifier: GPL-2.0
/*
 * Syscall counts per process and syscall, and failed calls by errno, counted in the kernel at
 * each syscall's exit (one program on the raw_syscalls exit hook; a syscall that never returns,
 * exit and exit_group, is not counted). User space reads `calls`, `errors` and `unattributed` on
 * its interval. When a process exits or execs, its last counts go on the `retired` ring, one
 * record per syscall it made, and its entries go: memory follows the live processes, and nothing
 * a short-lived process did is lost. What a full map cannot hold is still counted: a call without
 * its process in `unattributed`, and the reason in `overflows`.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "overflow_counter.h"
#include "periscope.h"
#include "syscalls.h"

char LICENSE[] SEC("license") = "GPL";

/* x86's thread_info status bit of a task in a 32-bit syscall */
#define TS_COMPAT 0x0002

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct syscall_key);
	__type(value, struct syscall_counts);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct syscall_process);
} processes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct syscall_error_key);
	__type(value, __u64);
} errors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SYSCALLS_MAX_NR);
	__type(key, __u32);
	__type(value, struct syscall_counts);
} unattributed SEC(".maps");

OVERFLOW_COUNTER(overflows, SYSCALLS_OVERFLOWS);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} retired SEC(".maps");
RECORD(retired, struct syscall_retired);

DROP_COUNTER;

/* the process's entry in `processes`, made with its image's comm on its first call */
static __always_inline struct syscall_process *process_of(__u32 tgid)
{
	struct syscall_process *process = bpf_map_lookup_elem(&processes, &tgid);
	struct syscall_process fresh = {};
	struct task_struct *task;

	if (process)
		return process;
	task = (struct task_struct *)bpf_get_current_task();
	BPF_CORE_READ_STR_INTO(&fresh.comm, task, group_leader, comm);
	fresh.created_ns = bpf_ktime_get_boot_ns();
	bpf_map_update_elem(&processes, &tgid, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&processes, &tgid);
}

/* the process's counts of syscall nr, made (and marked used) on its first call */
static __always_inline struct syscall_counts *counts_of(struct syscall_key *key)
{
	struct syscall_counts *counts = bpf_map_lookup_elem(&calls, key);
	struct syscall_counts zero = {};
	struct syscall_process *process;

	if (counts)
		return counts;
	process = process_of(key->tgid);
	if (!process)
		return NULL;
	/* only the thread that made the entry marks it: an add of a bit set once is an atomic or */
	if (bpf_map_update_elem(&calls, key, &zero, BPF_NOEXIST) == 0)
		__sync_fetch_and_add(&process->used[(key->nr / 64) & (SYSCALLS_MAX_NR / 64 - 1)], 1ULL << (key->nr % 64));
	return bpf_map_lookup_elem(&calls, key);
}

static __always_inline void count_error(__u32 nr, __u32 error)
{
	struct syscall_error_key key = { .nr = nr, .error = error };
	__u64 one = 1, *count = bpf_map_lookup_elem(&errors, &key);

	if (count) {
		__sync_fetch_and_add(count, 1);
		return;
	}
	if (bpf_map_update_elem(&errors, &key, &one, BPF_NOEXIST) == 0)
		return;
	/* another CPU made it meanwhile, or the map is full */
	count = bpf_map_lookup_elem(&errors, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		count_overflow(SYSCALLS_OVERFLOW_ERRNO_TABLE);
}

static __always_inline void count_call(__u64 nr, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct syscall_key key = {};
	struct syscall_counts *counts;
	bool failed = ret < 0 && ret >= -SYSCALLS_MAX_ERRNO;

	/* -1: a call that never ran (skipped by seccomp or a tracer); x32 numbers have a high bit */
	if (nr >= SYSCALLS_MAX_NR)
		return;
	if (BPF_CORE_READ(task, thread_info.status) & TS_COMPAT) {
		count_overflow(SYSCALLS_OVERFLOW_COMPAT);
		return;
	}
	key.tgid = bpf_get_current_pid_tgid() >> 32;
	key.nr = nr;
	counts = counts_of(&key);
	if (counts) {
		__sync_fetch_and_add(&counts->calls, 1);
		if (failed)
			__sync_fetch_and_add(&counts->errors, 1);
	} else {
		__u32 index = nr;

		counts = bpf_map_lookup_elem(&unattributed, &index);
		if (counts) {
			counts->calls++;
			if (failed)
				counts->errors++;
		}
		count_overflow(SYSCALLS_OVERFLOW_PROCESS_TABLE);
	}
	if (failed)
		count_error(nr, -ret);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(btf_sys_exit, struct pt_regs *regs, long ret)
{
	count_call(regs->orig_ax, ret);
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(raw_sys_exit, struct pt_regs *regs, long ret)
{
	count_call(BPF_CORE_READ(regs, orig_ax), ret);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int tp_sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	count_call(ctx->id, ctx->ret);
	return 0;
}

struct retiring {
	__u32 tgid;
	__u32 reason;
	struct syscall_process *process;
};

/* a retiring process's last counts of syscall nr on the ring, and its entry gone */
static __always_inline void retire_syscall(struct retiring *retiring, __u32 nr)
{
	struct syscall_key key = { .tgid = retiring->tgid, .nr = nr };
	struct syscall_counts *counts = bpf_map_lookup_elem(&calls, &key);
	struct syscall_retired *record;

	if (!counts)
		return;
	record = RESERVE_OR_DROP(retired, sizeof(*record));
	if (record) {
		record->tgid = key.tgid;
		record->nr = nr;
		record->created_ns = retiring->process->created_ns;
		record->calls = counts->calls;
		record->errors = counts->errors;
		record->reason = retiring->reason;
		record->pad = 0;
		__builtin_memcpy(record->comm, retiring->process->comm, sizeof(record->comm));
		bpf_ringbuf_submit(record, 0);
	}
	bpf_map_delete_elem(&calls, &key);
}

/* one number of the retiring process: retired when it has an entry */
static long retire_number(__u64 nr, struct retiring *retiring)
{
	if (retiring->process->used[(nr / 64) & (SYSCALLS_MAX_NR / 64 - 1)] & (1ULL << (nr % 64)))
		retire_syscall(retiring, nr);
	return 0;
}

static __always_inline void retire(__u32 reason)
{
	struct retiring retiring = { .tgid = bpf_get_current_pid_tgid() >> 32, .reason = reason };

	retiring.process = bpf_map_lookup_elem(&processes, &retiring.tgid);
	if (!retiring.process)
		return;
	bpf_loop(SYSCALLS_MAX_NR, retire_number, &retiring, 0);
	bpf_map_delete_elem(&processes, &retiring.tgid);
}

/* the whole process's counts go at its last thread */
SEC("tracepoint/sched/sched_process_exit")
int handle_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	if (last_thread_exiting())
		retire(SYSCALLS_RETIRE_EXIT);
	return 0;
}

/* the counts so far belong to the image (comm) the process leaves */
SEC("tracepoint/sched/sched_process_exec")
int handle_exec(void *ctx)
{
	retire(SYSCALLS_RETIRE_EXEC);
	return 0;
}
