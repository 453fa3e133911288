// SPDX-License-Identifier: GPL-2.0
/*
 * CPU samples with user stacks to unwind in user space: a perf_event program (attached on every
 * CPU at a frequency) sends, for each sample of a thread, its user registers, a copy of its user
 * stack from sp up (at most stack_bytes: perf's --call-graph dwarf way) and its kernel stack
 * (bpf/include/stack_sample.h). Kernel threads send their kernel stack alone; the idle task is
 * not sampled.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "periscope.h"
#include "stacks.h"
#include "stack_sample.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * 2 MB: a sample reserves 12.9 KB (the record, an 8 KB stack copy and a page), and the runtime
 * drains every 250 ms. At 19 Hz a 2-CPU host sent 35 samples/s (450 KB/s, 115 KB a drain), so
 * the ring holds 4.5 s of samples; at 99 Hz (2.5 MB/s) wakeup_bytes wakes the reader at 512 KB
 * and 1.5 MB (0.6 s) is left for it to come. Losses are counted (periscope.profile.samples.lost).
 * Each MB here is a MB of the runtime's RSS: the kernel fills the reader's page tables at mmap.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} samples SEC(".maps");
RECORD(samples, struct stack_sample);

DROP_COUNTER;

/*
 * the processes to sample (tgid -> 1), when filter[0] is 1; plugins claim both entries
 * (PluginMap.claim), so the filter holds while any of them wants it
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} target_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} filter SEC(".maps");

/* the process to sample (its tgid); 0 samples every process (or those of target_pids) */
const volatile __u32 target_tgid = 0;
/* only tasks of this uid, when target_uid_set (a one-liner's `uid ==` filter) */
const volatile __u32 target_uid = 0;
const volatile bool target_uid_set = false;
/* only tasks of this name, when target_comm_set: its 16 bytes as the kernel keeps them (NUL-padded),
 * as two little-endian words (a one-liner's `comm ==` filter) */
const volatile __u64 target_comm_lo = 0;
const volatile __u64 target_comm_hi = 0;
const volatile bool target_comm_set = false;
/* the most stack bytes copied per sample, up to STACK_MAX_BYTES */
const volatile __u32 stack_bytes = 8192;
/*
 * wake the reader only once the ring holds this many bytes (0: at every sample). The runtime
 * drains stack rings on a timer (runtime/plugins/host.ts), so a wakeup per sample, which costs the
 * runtime more than unwinding the sample, is saved; this many bytes (about 40 samples of 8 KB
 * stacks) wake it early when samples come fast
 */
const volatile __u64 wakeup_bytes = 512 * 1024;

SEC("perf_event")
int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
	__u64 limit = stack_bytes > STACK_MAX_BYTES ? STACK_MAX_BYTES : stack_bytes;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 zero = 0, *filtered;
	struct stack_sample *s;

	/* the idle task */
	if ((__u32)bpf_get_current_pid_tgid() == 0)
		return 0;
	if (target_tgid && tgid != target_tgid)
		return 0;
	if (target_uid_set && (__u32)bpf_get_current_uid_gid() != target_uid)
		return 0;
	if (target_comm_set) {
		__u64 comm[2] = {};

		bpf_get_current_comm(comm, sizeof(comm));
		if (comm[0] != target_comm_lo || comm[1] != target_comm_hi)
			return 0;
	}
	filtered = bpf_map_lookup_elem(&filter, &zero);
	if (filtered && *filtered && !bpf_map_lookup_elem(&target_pids, &tgid))
		return 0;

	/* reserve sample from ringbuf */
	s = RESERVE_OR_DROP(samples, STACK_SAMPLE_BYTES(limit));
	if (!s)
		return 0;
	fill_stack_sample(ctx, s, limit, 1);
	bpf_ringbuf_submit(s, wakeup_bytes ? wake_flags_past(&samples, wakeup_bytes) : 0);
	return 0;
}
