// SPDX-License-Identifier: GPL-2.0
/*
 * The loopback generator: each test run of `generate` writes args->count numbered 64-byte
 * records to the ring buffer. Benchmarks and the no-gap reload test drive it from user space
 * (bpf_prog_test_run), so the producer rate is limited only by the kernel.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "periscope.h"
#include "loopgen.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} events SEC(".maps");
RECORD(events, struct loopgen_event);

DROP_COUNTER;

/* the next sequence number; shared by all CPUs */
__u64 next_seq = 0;

static long emit_one(__u64 index, void *ctx)
{
	struct loopgen_event *e;

	e = RESERVE_OR_DROP(events, sizeof(*e));
	if (!e)
		return 0;
	e->seq = __sync_fetch_and_add(&next_seq, 1);
	e->timestamp_ns = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->pad = 0;
	__builtin_memset(e->payload, 0, sizeof(e->payload));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("syscall")
int generate(struct loopgen_args *args)
{
	bpf_loop(args->count, emit_one, NULL, 0);
	return 0;
}
