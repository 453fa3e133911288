// SPDX-License-Identifier: GPL-2.0
/*
 * Allocation stack samples of target processes from uprobes on their libc's malloc, calloc,
 * realloc and free, attached at run time per pid (plugins' ctx.attach). A thread's allocations
 * are sampled by bytes: a countdown of random gaps of sample_bytes on average, each gap ending in
 * an allocation makes it a sample weighing sample_bytes (so the weights of a stack add up to its
 * bytes, on average, whatever the sizes); sample_bytes 0 samples every allocation at its size.
 * A sample is a struct stack_sample (`value` = its weight) taken at the allocation's return, whose
 * stack starts at the caller of malloc. A sampled block stays in `live` until freed, so that user
 * space reads the bytes in use per stack from it, naming each block's sample by (tid, timestamp_ns).
 *
 * A separate object from `alloc` (the allocation metrics): its own uprobes on the same functions
 * share the kernel's breakpoints, and the metrics never pay for the stacks.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "periscope.h"
#include "sample_buffer.h"
#include "libc_mappings.h"
#include "overflow_counter.h"
#include "alloc_stacks.h"

char LICENSE[] SEC("license") = "GPL";

/* the most stack bytes copied per sample, up to SAMPLE_BUFFER_MAX_BYTES */
const volatile __u32 stack_bytes = 8192;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} samples SEC(".maps");
RECORD(samples, struct stack_sample);

DROP_COUNTER;

/* entry 0; all zero (every allocation sampled) until user space claims it */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct alloc_stacks_options);
} options SEC(".maps");

/*
 * The outermost call a thread is in (glibc's realloc may call malloc and free through the same
 * addresses: those see depth above 0), and its sampling countdown.
 */
struct in_call {
	__u64 size;
	__u64 old_address;
	/* bytes until the next sample; armed once the first gap was drawn */
	__s64 countdown;
	__u32 depth;
	__u32 armed;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct in_call);
} in_call SEC(".maps");

/*
 * sampled blocks not freed yet: preallocated (about 90 bytes each, 6 MB of kernel memory). An
 * element allocated as it comes is taken from a per-CPU cache that the kernel refills later,
 * with an allocation that may not wait: on a loaded machine 1,852 of some 21,000 inserts failed,
 * each a block missing from the bytes in use.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, struct alloc_stacks_block);
	__type(value, struct alloc_stacks_live);
} live SEC(".maps");

/* where a sample is built, so that the ring gets only its filled bytes */
SAMPLE_BUFFER_MAP(sample_buffer);

/* processes with sampled blocks, whose exit forgets them */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} sampled_processes SEC(".maps");

OVERFLOW_COUNTER(overflows, ALLOC_STACKS_OVERFLOWS);

/* a random gap in [1, 2 * mean]: a mean of `mean` bytes between samples */
static __always_inline __s64 next_gap(__u64 mean)
{
	return (__s64)(bpf_get_prandom_u32() % (2 * mean)) + 1;
}

/* the random gaps a countdown adds before it turns to the mean for an allocation that spans more */
#define ALLOC_STACKS_MAX_GAPS 64

/*
 * what an allocation of `size` weighs as a sample: 0 when it is not one. The bytes allocated are
 * one line cut by gaps; an allocation weighs a mean-sized gap for each gap end it covers, so that
 * a stack's weights add up to its bytes on average.
 */
static __always_inline __u64 sample_weight(struct in_call *call, __u64 size)
{
	struct alloc_stacks_options *opts;
	__u64 mean, ends = 0;
	__u32 zero = 0;

	opts = bpf_map_lookup_elem(&options, &zero);
	if (!opts)
		return 0;
	mean = opts->sample_bytes;
	if (mean == 0)
		return size;
	if (mean > (1ULL << 31))
		mean = 1ULL << 31;
	if (!call->armed) {
		call->countdown = next_gap(mean);
		call->armed = 1;
	}
	call->countdown -= size;
	/* the gaps that end in this allocation, and the next gap's end past it */
	for (int i = 0; i < ALLOC_STACKS_MAX_GAPS && call->countdown <= 0; i++) {
		call->countdown += next_gap(mean);
		ends++;
	}
	if (call->countdown <= 0) {
		__u64 more = (__u64)(-call->countdown) / mean + 1;

		ends += more;
		call->countdown += more * mean;
	}
	return ends * mean;
}

/* entry of malloc, calloc or realloc: remembers the outermost call's size (and realloc's block) */
static __always_inline int enter_call(__u64 size, __u64 old_address)
{
	struct in_call *call = bpf_task_storage_get(&in_call, bpf_get_current_task_btf(), NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (!call) {
		count_overflow(ALLOC_STACKS_OVERFLOW_IN_FLIGHT);
		return 0;
	}
	if (call->depth++ > 0)
		return 0;
	call->size = size;
	call->old_address = old_address;
	return 0;
}

static __always_inline void forget_block(__u32 tgid, __u64 address)
{
	struct alloc_stacks_block key = { .tgid = tgid, .address = address };

	bpf_map_delete_elem(&live, &key);
}

/* sends the allocation's sample and remembers its block until it is freed */
static __always_inline void sample(struct pt_regs *ctx, __u32 tgid, __u64 address, __u64 weight)
{
	__u64 limit = stack_bytes > SAMPLE_BUFFER_MAX_BYTES ? SAMPLE_BUFFER_MAX_BYTES : stack_bytes;
	struct alloc_stacks_block key = { .tgid = tgid, .address = address };
	struct alloc_stacks_live block = { .weight = weight };
	struct stack_sample *s;
	__u8 yes = 1;

	s = take_sample_buffer(&sample_buffer);
	if (!s) {
		count_drop(&dropped);
		return;
	}
	fill_stack_sample(ctx, s, limit, weight);
	block.timestamp_ns = s->timestamp_ns;
	block.tid = s->tid;
	if (send_sample_buffer(&samples, s)) {
		count_drop(&dropped);
		return;
	}
	if (bpf_map_update_elem(&live, &key, &block, BPF_ANY)) {
		count_overflow(ALLOC_STACKS_OVERFLOW_LIVE);
		return;
	}
	bpf_map_update_elem(&sampled_processes, &tgid, &yes, BPF_ANY);
}

/* return of malloc, calloc or realloc: samples the outermost call by what it returned */
static __always_inline int exit_call(struct pt_regs *ctx, __u64 address)
{
	struct in_call *call = bpf_task_storage_get(&in_call, bpf_get_current_task_btf(), NULL, 0);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 weight;

	/* a return whose entry came before the probes, or a nested call's */
	if (!call || call->depth == 0 || --call->depth > 0)
		return 0;
	/* realloc(p, 0) frees p and returns NULL; otherwise p stays when the new block could not be had */
	if (call->old_address && (address || call->size == 0))
		forget_block(tgid, call->old_address);
	if (!address || call->size == 0)
		return 0;
	weight = sample_weight(call, call->size);
	if (weight)
		sample(ctx, tgid, address, weight);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(malloc_enter, __u64 size)
{
	return enter_call(size, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(malloc_exit, __u64 address)
{
	return exit_call(ctx, address);
}

SEC("uprobe")
int BPF_KPROBE(calloc_enter, __u64 nmemb, __u64 size)
{
	/* an overflowing product fails in calloc, which returns NULL: not sampled */
	return enter_call(nmemb * size, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(calloc_exit, __u64 address)
{
	return exit_call(ctx, address);
}

SEC("uprobe")
int BPF_KPROBE(realloc_enter, __u64 old_address, __u64 size)
{
	return enter_call(size, old_address);
}

SEC("uretprobe")
int BPF_KRETPROBE(realloc_exit, __u64 address)
{
	return exit_call(ctx, address);
}

SEC("uprobe")
int BPF_KPROBE(free_enter, __u64 address)
{
	struct in_call *call = bpf_task_storage_get(&in_call, bpf_get_current_task_btf(), NULL, 0);

	/* free(NULL) does nothing; a free inside realloc is realloc's */
	if (!address || (call && call->depth > 0))
		return 0;
	forget_block(bpf_get_current_pid_tgid() >> 32, address);
	return 0;
}

static long forget_process_block(struct bpf_map *map, struct alloc_stacks_block *key, struct alloc_stacks_live *block, __u32 *tgid)
{
	if (key->tgid == *tgid)
		bpf_map_delete_elem(map, key);
	return 0;
}

/* a sampled process's blocks go at its exit */
SEC("tracepoint/sched/sched_process_exit")
int handle_exit(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (!last_thread_exiting() || !bpf_map_lookup_elem(&sampled_processes, &tgid))
		return 0;
	bpf_for_each_map_elem(&live, forget_process_block, &tgid, 0);
	bpf_map_delete_elem(&sampled_processes, &tgid);
	return 0;
}
