// SPDX-License-Identifier: GPL-2.0
/*
 * Allocation statistics of target processes from uprobes on their libc's malloc, calloc, realloc
 * and free, attached at run time for each target pid (plugins' ctx.attach): calls, bytes
 * allocated, and bytes in use (blocks allocated while followed and not freed yet, remembered by
 * address in `blocks`). Counted in the kernel per process (`processes`, read on an interval); a
 * process's last counts come on `exits` when it exits, and its entries go.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "periscope.h"
#include "libc_mappings.h"
#include "overflow_counter.h"
#include "alloc.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * The call a thread is in. glibc's realloc may call malloc or free itself (realloc(NULL, n),
 * realloc(p, 0), a block moved out of an mmap), through the same addresses: only the outermost
 * call counts, the others see depth above 0.
 */
struct in_call {
	__u64 size;
	/* realloc's block */
	__u64 old_address;
	__u32 func;
	__u32 depth;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct in_call);
} in_call SEC(".maps");

/* live blocks of every target: about 80 bytes of kernel memory each, allocated as they come */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct alloc_block);
	__type(value, __u64);
} blocks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct alloc_stats);
} processes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} exits SEC(".maps");
RECORD(exits, struct alloc_stats);

DROP_COUNTER;

OVERFLOW_COUNTER(overflows, ALLOC_OVERFLOWS);

/* a process's counters start from these zeroes (in .bss: nothing writes them, and .rodata would make them a setting) */
struct alloc_stats empty_stats = {};

static __always_inline struct alloc_stats *current_stats(__u32 tgid)
{
	struct alloc_stats *stats = bpf_map_lookup_elem(&processes, &tgid);

	if (stats)
		return stats;
	if (bpf_map_update_elem(&processes, &tgid, &empty_stats, BPF_NOEXIST) && !bpf_map_lookup_elem(&processes, &tgid)) {
		count_overflow(ALLOC_OVERFLOW_PROCESSES);
		return NULL;
	}
	stats = bpf_map_lookup_elem(&processes, &tgid);
	if (!stats)
		return NULL;
	stats->pid = tgid;
	stats->created_ns = bpf_ktime_get_boot_ns();
	/* the process's name, not the thread's that made the first call */
	bpf_probe_read_kernel_str(stats->comm, sizeof(stats->comm), bpf_get_current_task_btf()->group_leader->comm);
	return stats;
}

/* entry of malloc, calloc or realloc: remembers the outermost call's size (and realloc's block) */
static __always_inline int enter_call(__u32 func, __u64 size, __u64 old_address)
{
	struct in_call *call = bpf_task_storage_get(&in_call, bpf_get_current_task_btf(), NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (!call) {
		count_overflow(ALLOC_OVERFLOW_IN_FLIGHT);
		return 0;
	}
	if (call->depth++ > 0)
		return 0;
	call->func = func;
	call->size = size;
	call->old_address = old_address;
	return 0;
}

/* a block freed (by free, or by realloc moving or shrinking it): its bytes leave bytes in use */
static __always_inline void release(struct alloc_stats *stats, __u32 tgid, __u64 address)
{
	struct alloc_block key = { .tgid = tgid, .address = address };
	__u64 *size = bpf_map_lookup_elem(&blocks, &key);

	if (!size) {
		__sync_fetch_and_add(&stats->unknown_frees, 1);
		return;
	}
	__sync_fetch_and_add(&stats->freed_bytes, *size);
	bpf_map_delete_elem(&blocks, &key);
}

static __always_inline void remember(struct alloc_stats *stats, __u32 tgid, __u64 address, __u64 size)
{
	struct alloc_block key = { .tgid = tgid, .address = address };

	__sync_fetch_and_add(&stats->allocated_bytes, size);
	if (bpf_map_update_elem(&blocks, &key, &size, BPF_ANY)) {
		count_overflow(ALLOC_OVERFLOW_BLOCKS);
		return;
	}
	__sync_fetch_and_add(&stats->tracked_bytes, size);
}

/* return of malloc, calloc or realloc: counts the outermost call with what it returned */
static __always_inline int exit_call(__u64 address)
{
	struct in_call *call = bpf_task_storage_get(&in_call, bpf_get_current_task_btf(), NULL, 0);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, func;
	struct alloc_stats *stats;

	/* a return whose entry came before the probes, or a nested call's */
	if (!call || call->depth == 0 || --call->depth > 0)
		return 0;
	stats = current_stats(tgid);
	if (!stats)
		return 0;
	func = call->func & (ALLOC_FUNCS - 1);
	__sync_fetch_and_add(&stats->calls[func], 1);
	/* realloc(p, 0) frees p and returns NULL; otherwise p stays when the new block could not be had */
	if (func == ALLOC_REALLOC && call->old_address && (address || call->size == 0))
		release(stats, tgid, call->old_address);
	if (address)
		remember(stats, tgid, address, call->size);
	else if (call->size > 0)
		__sync_fetch_and_add(&stats->failures, 1);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(malloc_enter, __u64 size)
{
	return enter_call(ALLOC_MALLOC, size, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(malloc_exit, __u64 address)
{
	return exit_call(address);
}

SEC("uprobe")
int BPF_KPROBE(calloc_enter, __u64 nmemb, __u64 size)
{
	/* an overflowing product fails in calloc, which returns NULL: counted as a failure */
	return enter_call(ALLOC_CALLOC, nmemb * size, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(calloc_exit, __u64 address)
{
	return exit_call(address);
}

SEC("uprobe")
int BPF_KPROBE(realloc_enter, __u64 old_address, __u64 size)
{
	return enter_call(ALLOC_REALLOC, size, old_address);
}

SEC("uretprobe")
int BPF_KRETPROBE(realloc_exit, __u64 address)
{
	return exit_call(address);
}

SEC("uprobe")
int BPF_KPROBE(free_enter, __u64 address)
{
	struct in_call *call = bpf_task_storage_get(&in_call, bpf_get_current_task_btf(), NULL, 0);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct alloc_stats *stats;

	/* free(NULL) does nothing; a free inside realloc is realloc's */
	if (!address || (call && call->depth > 0))
		return 0;
	stats = current_stats(tgid);
	if (!stats)
		return 0;
	__sync_fetch_and_add(&stats->calls[ALLOC_FREE], 1);
	release(stats, tgid, address);
	return 0;
}

static long forget_block(struct bpf_map *map, struct alloc_block *key, __u64 *size, __u32 *tgid)
{
	if (key->tgid == *tgid)
		bpf_map_delete_elem(map, key);
	return 0;
}

/* a target's last counts go to user space at its exit, and its entries go */
SEC("tracepoint/sched/sched_process_exit")
int handle_exit(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct alloc_stats *stats, *last;

	if (!last_thread_exiting())
		return 0;
	stats = bpf_map_lookup_elem(&processes, &tgid);
	if (!stats)
		return 0;
	/* the record is sent last, so whoever reads it finds the process's entries gone */
	last = RESERVE_OR_DROP(exits, sizeof(*last));
	if (last)
		bpf_probe_read_kernel(last, sizeof(*last), stats);
	bpf_map_delete_elem(&processes, &tgid);
	/* only a followed process's exit walks the blocks: targets are few */
	bpf_for_each_map_elem(&blocks, forget_block, &tgid, 0);
	if (last)
		bpf_ringbuf_submit(last, 0);
	return 0;
}
