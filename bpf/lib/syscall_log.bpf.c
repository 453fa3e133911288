// SPDX-License-Identifier: GPL-2.0
/*
 * Every syscall of the target processes (`targets`, claimed by user space), one record each on
 * the `records` ring at its exit, with its number, six argument registers, return value and
 * duration. Arguments that `decode` names as strings (paths and names, chosen by user space from
 * the kernel's own syscall table) are copied at the entry, bounded; nothing else the pointers
 * point to (buffers, messages) is read. A call that never returns (exit_group) is sent at its
 * entry. A target leaves `targets` when it exits.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "overflow_counter.h"
#include "periscope.h"
#include "syscall_log.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SYSCALL_LOG_MAX_NR);
	__type(key, __u32);
	__type(value, struct syscall_log_decode);
} decode SEC(".maps");

/* a target thread's call between its entry and its exit, by tid */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct syscall_log_record);
} in_flight SEC(".maps");

/* a zeroed record to start an in_flight entry from: too large for the BPF stack */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct syscall_log_record);
} blank SEC(".maps");

OVERFLOW_COUNTER(overflows, SYSCALL_LOG_OVERFLOWS);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} records SEC(".maps");
RECORD(records, struct syscall_log_record);

DROP_COUNTER;

/* copies the argument `which` names (1-based; 0: none) as a string into slot `slot` */
static __always_inline void copy_string(struct syscall_log_record *call, int slot, __u8 which)
{
	long copied;

	if (which == 0 || which > SYSCALL_LOG_ARGS)
		return;
	call->string_args[slot] = which;
	copied = bpf_probe_read_user_str(call->strings[slot], SYSCALL_LOG_STRING_LEN, (void *)call->args[(which - 1) & 7]);
	if (copied == SYSCALL_LOG_STRING_LEN)
		call->flags |= slot == 0 ? SYSCALL_LOG_STRING0_CUT : SYSCALL_LOG_STRING1_CUT;
}

/* sends a call's record: at its exit, or at its entry for a call that does not return */
static __always_inline void send(struct syscall_log_record *call)
{
	struct syscall_log_record *record = RESERVE_OR_DROP(records, sizeof(*record));

	if (!record)
		return;
	bpf_probe_read_kernel(record, sizeof(*record), call);
	bpf_ringbuf_submit(record, 0);
}

static __always_inline void on_entry(__u64 nr, const unsigned long *regs_args)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id, zero = 0, index = nr;
	struct syscall_log_record *call, *fresh;
	struct syscall_log_decode *how;

	if (!bpf_map_lookup_elem(&targets, &tgid))
		return;
	fresh = bpf_map_lookup_elem(&blank, &zero);
	if (!fresh || bpf_map_update_elem(&in_flight, &tid, fresh, BPF_ANY)) {
		count_overflow(SYSCALL_LOG_OVERFLOW_IN_FLIGHT);
		return;
	}
	call = bpf_map_lookup_elem(&in_flight, &tid);
	if (!call)
		return;
	call->start_ns = bpf_ktime_get_boot_ns();
	call->pid = tgid;
	call->tid = tid;
	call->nr = nr;
	for (int i = 0; i < SYSCALL_LOG_ARGS; i++)
		call->args[i] = regs_args[i];
	bpf_get_current_comm(call->comm, sizeof(call->comm));
	how = bpf_map_lookup_elem(&decode, &index);
	if (!how)
		return;
	copy_string(call, 0, how->string_args[0]);
	copy_string(call, 1, how->string_args[1]);
	if (how->no_return) {
		call->flags |= SYSCALL_LOG_NO_RETURN;
		send(call);
		bpf_map_delete_elem(&in_flight, &tid);
	}
}

static __always_inline void on_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct syscall_log_record *call = bpf_map_lookup_elem(&in_flight, &tid);

	if (!call)
		return;
	call->ret = ret;
	call->duration_ns = bpf_ktime_get_boot_ns() - call->start_ns;
	send(call);
	bpf_map_delete_elem(&in_flight, &tid);
}

/* x86-64 passes syscall arguments in di, si, dx, r10, r8, r9 */
static __always_inline void arguments_of(struct pt_regs *regs, unsigned long *args)
{
	args[0] = BPF_CORE_READ(regs, di);
	args[1] = BPF_CORE_READ(regs, si);
	args[2] = BPF_CORE_READ(regs, dx);
	args[3] = BPF_CORE_READ(regs, r10);
	args[4] = BPF_CORE_READ(regs, r8);
	args[5] = BPF_CORE_READ(regs, r9);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(btf_sys_enter, struct pt_regs *regs, long id)
{
	unsigned long args[SYSCALL_LOG_ARGS] = { regs->di, regs->si, regs->dx, regs->r10, regs->r8, regs->r9 };

	on_entry(id, args);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(btf_sys_exit, struct pt_regs *regs, long ret)
{
	on_exit(ret);
	return 0;
}

SEC("raw_tp/sys_enter")
int BPF_PROG(raw_sys_enter, struct pt_regs *regs, long id)
{
	unsigned long args[SYSCALL_LOG_ARGS];

	arguments_of(regs, args);
	on_entry(id, args);
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(raw_sys_exit, struct pt_regs *regs, long ret)
{
	on_exit(ret);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int tp_sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	unsigned long args[SYSCALL_LOG_ARGS] = { ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3], ctx->args[4], ctx->args[5] };

	on_entry(ctx->id, args);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int tp_sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	on_exit(ctx->ret);
	return 0;
}

/*
 * A thread that exits in a call (killed, or exec from another thread) leaves no entry behind; a
 * target that exits is no target any more, so a process that later gets its pid is not logged.
 */
SEC("tracepoint/sched/sched_process_exit")
int handle_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, tgid = id >> 32;

	bpf_map_delete_elem(&in_flight, &tid);
	if (last_thread_exiting())
		bpf_map_delete_elem(&targets, &tgid);
	return 0;
}
