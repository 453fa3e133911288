// SPDX-License-Identifier: GPL-2.0
/*
 * One uprobe and one uretprobe program for any user-space function: each hit is a record of
 * who ran it (pid, tid, uid, gid, comm, cpu, time), the argument registers at entry or the
 * return value at return. Attach them to any number of functions, each with a cookie naming its
 * slot in probe_config (pid filter, and the tracer's own pid left out); the REPL's bpftrace
 * uprobes (repl/bpftrace/uprobes.ts) read the records.
 *
 * A slot may also append the hit's kernel and user stacks (bpftrace's kstack and ustack;
 * bpf/include/event_stacks.h says how and what it costs). Such a record is assembled in a per-CPU
 * buffer and copied out at its length; a slot without stacks reserves its fixed-size record in
 * the ring buffer directly, as before.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "periscope.h"
#include "generic_uprobe.h"
#include "event_stacks.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");
RECORD(events, struct generic_uprobe_record);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GENERIC_UPROBE_MAX_PROBES);
	__type(key, __u32);
	__type(value, struct generic_uprobe_config);
} probe_config SEC(".maps");

/* records with stacks are assembled here: too large for the BPF stack, and of variable length */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[sizeof(struct generic_uprobe_record) + EVENT_STACKS_MAX]);
} scratch SEC(".maps");

DROP_COUNTER;

/* fills a record of this hit: who, when, and the argument registers or the return value */
static __always_inline void fill_record(struct pt_regs *ctx, struct generic_uprobe_record *rec, __u64 cookie, __u64 id, bool retprobe)
{
	__u64 ids = bpf_get_current_uid_gid();

	rec->cookie = cookie;
	rec->timestamp_ns = bpf_ktime_get_boot_ns();
	rec->pid = id >> 32;
	rec->tid = (__u32)id;
	rec->uid = (__u32)ids;
	rec->gid = ids >> 32;
	rec->cpu = bpf_get_smp_processor_id();
	rec->pad = 0;
	bpf_get_current_comm(rec->comm, sizeof(rec->comm));
	if (retprobe) {
		__builtin_memset(rec->args, 0, sizeof(rec->args));
		rec->retval = PT_REGS_RC(ctx);
		return;
	}
	rec->args[0] = PT_REGS_PARM1(ctx);
	rec->args[1] = PT_REGS_PARM2(ctx);
	rec->args[2] = PT_REGS_PARM3(ctx);
	rec->args[3] = PT_REGS_PARM4(ctx);
	rec->args[4] = PT_REGS_PARM5(ctx);
	/* Debian 12's libbpf has no PT_REGS_PARM6: x86-64 passes the sixth argument in r9 */
	rec->args[5] = ctx->r9;
	rec->retval = 0;
}

static __always_inline int record_hit(struct pt_regs *ctx, bool retprobe)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 slot = (__u32)cookie, zero = 0, length;
	struct generic_uprobe_config *config;
	struct generic_uprobe_record *rec;
	__u64 id;

	config = bpf_map_lookup_elem(&probe_config, &slot);
	if (!config)
		return 0;
	id = bpf_get_current_pid_tgid();
	if (config->tgid && config->tgid != id >> 32)
		return 0;
	if (config->exclude_tgid == id >> 32)
		return 0;
	if (!config->stacks) {
		rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
		if (!rec) {
			count_drop(&dropped);
			return 0;
		}
		fill_record(ctx, rec, cookie, id, retprobe);
		bpf_ringbuf_submit(rec, 0);
		return 0;
	}
	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return 0;
	fill_record(ctx, rec, cookie, id, retprobe);
	length = event_stacks(ctx, (struct stack_sample *)rec->stacks, config->stacks, rec->pid, rec->tid);
	if (bpf_ringbuf_output(&events, rec, sizeof(*rec) + length, 0))
		count_drop(&dropped);
	return 0;
}

SEC("uprobe")
int generic_uprobe(struct pt_regs *ctx)
{
	return record_hit(ctx, false);
}

SEC("uretprobe")
int generic_uretprobe(struct pt_regs *ctx)
{
	return record_hit(ctx, true);
}
