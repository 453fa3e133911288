// SPDX-License-Identifier: GPL-2.0
/*
 * One tracepoint program that copies any tracepoint's raw record to a ring buffer. Attach it
 * to any number of tracepoints, each with a cookie naming its slot in probe_config; the REPL
 * decodes the bytes with the tracepoint's tracefs format. Each slot may filter on pid, comm and
 * uid, and copy up to two user-space strings its record points to (str() in a one-liner).
 *
 * A slot may count instead (generic_count_config): a one-liner whose probe is only
 * `@map[keys] = count()` statements, with a filter the slot applies whole, counts each event
 * in per-CPU maps (`totals`, `counts`), as bpftrace counts in per-CPU maps, and sends nothing,
 * so a busy tracepoint costs no ring buffer space and no user-space work
 * (repl/bpftrace/kernel-count.ts).
 *
 * A slot may also append the event's kernel and user stacks (bpftrace's kstack and ustack) to
 * its records, after the strings (bpf/include/event_stacks.h says how and what it costs); a slot
 * that asks for none pays nothing.
 *
 * The process that loaded the object (self_tgid) is always left out: it wakes up to read the
 * ring buffer, so a probe on its own syscalls (sys_exit_read) would feed itself, each record
 * causing another.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "periscope.h"
#include "generic.h"
#include "event_stacks.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 self_tgid = 0;

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

/* the furthest the stacks of a record start in its data */
#define GENERIC_STACKS_AT_MAX GENERIC_STACKS_AT(GENERIC_MAX_DATA, GENERIC_MAX_STRINGS)

/* records are assembled here: too large for the BPF stack, and the output size is variable */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[sizeof(struct generic_record) + GENERIC_STACKS_AT_MAX + EVENT_STACKS_MAX]);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GENERIC_MAX_PROBES);
	__type(key, __u32);
	__type(value, struct generic_count_config);
} count_config SEC(".maps");

/* the counts of statements without a key, by counter: no hashing */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GENERIC_MAX_PROBES * GENERIC_MAX_COUNTS);
	__type(key, __u32);
	__type(value, __u64);
} totals SEC(".maps");

/* sized by the loader (KEYS_PER_STATEMENT in kernel-count.ts per keyed statement), and filled
 * as keys come: a key that finds the hash full is counted in `dropped` */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct generic_count_key);
	__type(value, __u64);
} counts SEC(".maps");

DROP_COUNTER;

/*
 * Whether the current task passes the slot's filters; fills rec->pid and tid, and comm, uid and
 * gid when `needs` (GENERIC_FILTER_COMM, GENERIC_FILTER_UID) or the filters ask for them: each
 * is a helper call, which a counting slot makes only for what its keys read.
 */
static __always_inline bool passes(const struct generic_probe_config *config, struct generic_record *rec, __u32 needs)
{
	__u64 id = bpf_get_current_pid_tgid(), ids;
	__u32 tgid = id >> 32;

	if ((self_tgid && tgid == self_tgid) || (config->tgid && config->tgid != tgid))
		return false;
	needs |= config->filters;
	if (needs & GENERIC_FILTER_UID) {
		ids = bpf_get_current_uid_gid();
		if ((config->filters & GENERIC_FILTER_UID) && config->uid != (__u32)ids)
			return false;
		rec->uid = (__u32)ids;
		rec->gid = ids >> 32;
	}
	if (needs & GENERIC_FILTER_COMM) {
		bpf_get_current_comm(rec->comm, sizeof(rec->comm));
		if ((config->filters & GENERIC_FILTER_COMM) &&
		    (((__u64 *)rec->comm)[0] != ((__u64 *)config->comm)[0] ||
		     ((__u64 *)rec->comm)[1] != ((__u64 *)config->comm)[1]))
			return false;
	}
	rec->pid = tgid;
	rec->tid = (__u32)id;
	return true;
}

/* copies the strings of the slot's string fields after the raw record's size bytes: the
 * user-space strings its pointer fields point to, and the text of its __data_loc fields, which
 * follows the record's fixed part in the kernel's copy (ctx); returns how many */
static __always_inline __u32 copy_strings(void *ctx, const struct generic_probe_config *config, struct generic_record *rec, __u32 size)
{
	__u32 copied = 0, loc;
	const char *pointer;

	for (int i = 0; i < GENERIC_MAX_STRINGS; i++) {
		__u32 offset = config->string_offsets[i];
		/* size is at most GENERIC_MAX_DATA, and the scratch buffer has room for every string
		 * after that; a failed read leaves the string zeroed */
		char *to = (char *)rec->data + size + i * GENERIC_STRING_SIZE;

		if (!offset || offset > GENERIC_MAX_DATA - sizeof(pointer))
			break;
		if (config->string_data_locs & (1 << i)) {
			/* (length << 16) | offset from the start of the record */
			if (offset + sizeof(loc) > size || bpf_probe_read_kernel(&loc, sizeof(loc), rec->data + offset))
				break;
			bpf_probe_read_kernel_str(to, GENERIC_STRING_SIZE, (char *)ctx + (loc & 0xffff));
		} else {
			if (offset + sizeof(pointer) > size)
				break;
			if (bpf_probe_read_kernel(&pointer, sizeof(pointer), rec->data + offset))
				pointer = NULL;
			bpf_probe_read_user_str(to, GENERIC_STRING_SIZE, pointer);
		}
		copied++;
	}
	return copied;
}

/* part j of a statement's key, as generic_count_config describes it */
static __always_inline void key_part(void *ctx, const struct generic_count_config *counting, __u32 part, const struct generic_record *rec, __u8 *at)
{
	__u32 size;

	switch (counting->kinds[part]) {
	case GENERIC_KEY_COMM:
		__builtin_memcpy(at, rec->comm, sizeof(rec->comm));
		break;
	case GENERIC_KEY_PID:
		*(__u32 *)at = rec->pid;
		break;
	case GENERIC_KEY_TID:
		*(__u32 *)at = rec->tid;
		break;
	case GENERIC_KEY_UID:
		*(__u32 *)at = rec->uid;
		break;
	case GENERIC_KEY_GID:
		*(__u32 *)at = rec->gid;
		break;
	case GENERIC_KEY_CPU:
		*(__u32 *)at = bpf_get_smp_processor_id();
		break;
	case GENERIC_KEY_FIELD:
		size = counting->sizes[part];
		if (size > 8)
			size = 8;
		bpf_probe_read_kernel(at, size, (const __u8 *)ctx + counting->offsets[part]);
		break;
	}
}

/* adds this event to each of the slot's counted statements */
static __always_inline void count_event(void *ctx, __u32 slot, const struct generic_count_config *counting, const struct generic_record *rec)
{
	struct generic_count_key key;
	__u64 one = 1, *value;

	for (__u32 i = 0; i < GENERIC_MAX_COUNTS && i < counting->counts; i++) {
		__u32 counter = slot * GENERIC_MAX_COUNTS + i;

		if (counting->kinds[i * GENERIC_MAX_KEY_PARTS] == GENERIC_KEY_NONE) {
			value = bpf_map_lookup_elem(&totals, &counter);
			if (value)
				*value += 1;
			continue;
		}
		__builtin_memset(&key, 0, sizeof(key));
		key.counter = counter;
#pragma unroll
		for (__u32 j = 0; j < GENERIC_MAX_KEY_PARTS; j++) {
			if (counting->kinds[i * GENERIC_MAX_KEY_PARTS + j] == GENERIC_KEY_NONE)
				break;
			key_part(ctx, counting, i * GENERIC_MAX_KEY_PARTS + j, rec, key.parts + j * GENERIC_KEY_PART_SIZE);
		}
		/* per-CPU values: no other CPU writes this one, and tracepoint programs do not nest on
		 * a CPU, so a plain increment is exact; BPF_ANY, as another CPU may have inserted the
		 * key since the lookup (this CPU's value is then still 0) */
		value = bpf_map_lookup_elem(&counts, &key);
		if (value)
			*value += 1;
		else if (bpf_map_update_elem(&counts, &key, &one, BPF_ANY))
			count_drop(&dropped);
	}
}

SEC("tracepoint")
int generic_tracepoint(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 slot = (__u32)cookie, zero = 0, size, length, at;
	struct generic_probe_config *config;
	struct generic_count_config *counting;
	struct generic_record *rec;

	config = bpf_map_lookup_elem(&probe_config, &slot);
	if (!config)
		return 0;
	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec)
		return 0;
	counting = bpf_map_lookup_elem(&count_config, &slot);
	if (counting && counting->counts) {
		if (passes(config, rec, counting->needs))
			count_event(ctx, slot, counting, rec);
		return 0;
	}
	if (!passes(config, rec, GENERIC_FILTER_COMM | GENERIC_FILTER_UID))
		return 0;

	size = config->record_size;
	rec->truncated = size > GENERIC_MAX_DATA;
	if (size > GENERIC_MAX_DATA)
		size = GENERIC_MAX_DATA;
	rec->cookie = cookie;
	rec->timestamp_ns = bpf_ktime_get_boot_ns();
	rec->cpu = bpf_get_smp_processor_id();
	rec->size = size;
	/* copy the raw record; size is at most GENERIC_MAX_DATA here, which the verifier sees from
	 * the clamp above (a mask with GENERIC_MAX_DATA - 1 would turn 4096 into 0) */
	bpf_probe_read_kernel(rec->data, size, ctx);
	/* the kernel keeps a pt_regs pointer in the common header while BPF runs: never hand out a
	 * kernel address (pid and tid above say what common_pid would) */
	__builtin_memset(rec->data, 0, GENERIC_COMMON_HEADER);
	rec->strings = copy_strings(ctx, config, rec, size);
	length = size + rec->strings * GENERIC_STRING_SIZE;
	if (config->stacks) {
		at = GENERIC_STACKS_AT(size, rec->strings);
		/* true already: it tells the verifier where the stacks may go */
		if (at > GENERIC_STACKS_AT_MAX)
			return 0;
		length = at + event_stacks(ctx, (struct stack_sample *)(rec->data + at), config->stacks, rec->pid, rec->tid);
	}

	if (bpf_ringbuf_output(&events, rec, sizeof(*rec) + length, 0))
		count_drop(&dropped);
	return 0;
}
