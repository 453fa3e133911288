// SPDX-License-Identifier: GPL-2.0
/*
 * The loopback generator: each test run of `generate` writes args->count numbered records to the
 * ring buffer, 64 bytes each unless `record_size` asks for more. Benchmarks and the no-gap reload
 * test drive it from user space (bpf_prog_test_run), so the producer rate is limited only by the
 * kernel.
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

/*
 * bytes per record: the loopgen_event, then bytes the generator leaves as the ring holds them (a
 * consumer's cost does not depend on their value), e.g. 1352 to stand in for an exec record
 */
const volatile __u32 record_size = sizeof(struct loopgen_event);

/* the next sequence number; shared by all CPUs */
__u64 next_seq = 0;

static long emit_one(__u64 index, void *ctx)
{
	/* the verifier knows .rodata after load, so the size is a constant here */
	__u32 size = record_size < sizeof(struct loopgen_event) ? sizeof(struct loopgen_event) : record_size;
	struct loopgen_event *e;

	e = RESERVE_OR_DROP(events, size);
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
