/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Conventions every object in bpf/lib follows, read by the build's decoder generator
 * (scripts/build/generate-types.ts):
 *  - RECORD(map, type) names the struct a ring or perf buffer carries, so the struct lands in
 *    the object's BTF and the generator can pair map and type;
 *  - DROP_COUNTER and RESERVE_OR_DROP count failed reserves in the `dropped` map, which the
 *    runtime reads and exports;
 *  - addr64 fields decode as bigint (addresses, cookies); plain __u64 decodes as number;
 *  - a strings_t array holds NUL-separated strings (argv) and decodes as string[], exactly
 *    (empty strings included) when a sibling __u32 <name>_size says how many bytes are filled;
 *  - a char array decodes as a string cut at its first NUL; a trailing flexible __u8 array
 *    decodes as the record's remaining bytes.
 */
#ifndef PERISCOPE_H
#define PERISCOPE_H

typedef __u64 addr64;
typedef char strings_t;

#ifdef __BPF__
#define RECORD(map, type) type *const __periscope_record_##map __attribute__((used)) = 0

#define DROP_COUNTER                                  \
	struct {                                      \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); \
		__uint(max_entries, 1);               \
		__type(key, __u32);                   \
		__type(value, __u64);                 \
	} dropped SEC(".maps")

/*
 * At sched_process_exit: whether the exiting task is its process's last thread, when a process's
 * state goes. signal->live is counted down before that tracepoint, to 0 at the last thread.
 */
static __always_inline bool last_thread_exiting(void)
{
	return bpf_get_current_task_btf()->signal->live.counter == 0;
}

static __always_inline void count_drop(void *dropped_map)
{
	__u32 zero = 0;
	__u64 *count = bpf_map_lookup_elem(dropped_map, &zero);

	if (count)
		*count += 1;
}

/*
 * The flags to submit a record to `ring` with so that its reader is woken only while the ring's
 * backlog is `bytes` or more: FORCE then, since a plain submit wakes only a reader that has
 * consumed all before the record (so never one with a backlog), and NO_WAKEUP below, where the
 * reader's idle drain (the native RingBuffer's timer) takes the records. A wake-up is an irq_work
 * (an IPI), measured at 10 to 35 µs a record in this VM.
 */
static __always_inline __u64 wake_flags_past(void *ring, __u64 bytes)
{
	return bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/*
 * wake_flags_past a sixteenth of the ring, for the process lifecycle objects: a wake-up was 90% of
 * their programs' cost (exec's handle_exec: 37.0 µs a run with one per record, 2.7 µs without).
 * A quiet ring's record waits for the reader's 100 ms drain at most; a burst is read as it comes,
 * with 15/16 of the ring left for the reader's latency.
 */
static __always_inline __u64 wake_flags(void *ring)
{
	return wake_flags_past(ring, bpf_ringbuf_query(ring, BPF_RB_RING_SIZE) / 16);
}

/* reserve a record, counting the drop when the ring is full */
#define RESERVE_OR_DROP(ring, size)                                  \
	({                                                           \
		void *__rec = bpf_ringbuf_reserve(&(ring), (size), 0); \
		if (!__rec)                                          \
			count_drop(&dropped);                        \
		__rec;                                               \
	})
#endif

#endif
