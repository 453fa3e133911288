// SPDX-License-Identifier: GPL-2.0
/*
 * One tracepoint program that copies any tracepoint's raw record to a ring buffer. Attach it
 * to any number of tracepoints, each with a cookie naming its slot in probe_config; the REPL
 * decodes the bytes with the tracepoint's tracefs format.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "periscope.h"
#include "generic.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");
RECORD(events, struct generic_record);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GENERIC_MAX_PROBES);
	__type(key, __u32);
	__type(value, struct generic_probe_config);
} probe_config SEC(".maps");

/* records are assembled here: too large for the BPF stack, and the output size is variable */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[sizeof(struct generic_record) + GENERIC_MAX_DATA]);
} scratch SEC(".maps");

DROP_COUNTER;

SEC("tracepoint")
int generic_tracepoint(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 slot = (__u32)cookie, zero = 0, size;
	struct generic_probe_config *config;
	struct generic_record *rec;
	__u64 id;

	config = bpf_map_lookup_elem(&probe_config, &slot);
	if (!config)
		return 0;
	id = bpf_get_current_pid_tgid();
	if (config->tgid && config->tgid != id >> 32)
		return 0;
	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return 0;

	size = config->record_size;
	rec->truncated = size > GENERIC_MAX_DATA;
	if (size > GENERIC_MAX_DATA)
		size = GENERIC_MAX_DATA;
	rec->cookie = cookie;
	rec->timestamp_ns = bpf_ktime_get_boot_ns();
	rec->pid = id >> 32;
	rec->tid = (__u32)id;
	rec->cpu = bpf_get_smp_processor_id();
	rec->size = size;
	rec->pad = 0;
	bpf_get_current_comm(rec->comm, sizeof(rec->comm));
	/* copy the raw record; size is at most GENERIC_MAX_DATA here, which the verifier sees from
	 * the clamp above (a mask with GENERIC_MAX_DATA - 1 would turn 4096 into 0) */
	bpf_probe_read_kernel(rec->data, size, ctx);
	/* the kernel keeps a pt_regs pointer in the common header while BPF runs: never hand out a
	 * kernel address (pid and tid above say what common_pid would) */
	__builtin_memset(rec->data, 0, GENERIC_COMMON_HEADER);

	if (bpf_ringbuf_output(&events, rec, sizeof(*rec) + size, 0))
		count_drop(&dropped);
	return 0;
}
