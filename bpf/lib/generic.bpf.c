// SPDX-License-Identifier: GPL-2.0
/*
 * One tracepoint program that copies any tracepoint's raw record to a ring buffer. Attach it
 * to any number of tracepoints, each with a cookie naming its slot in probe_config; the REPL
 * decodes the bytes with the tracepoint's tracefs format. Each slot may filter on pid, comm and
 * uid, and copy up to two user-space strings its record points to (str() in a one-liner).
 *
 * The process that loaded the object (self_tgid) is always left out: it wakes up to read the
 * ring buffer, so a probe on its own syscalls (sys_exit_read) would feed itself, each record
 * causing another.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "periscope.h"
#include "generic.h"

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

/* records are assembled here: too large for the BPF stack, and the output size is variable */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[sizeof(struct generic_record) + GENERIC_MAX_DATA + GENERIC_MAX_STRINGS * GENERIC_STRING_SIZE]);
} scratch SEC(".maps");

DROP_COUNTER;

/* whether the current task passes the slot's filters; fills rec->comm, pid, tid, uid, gid */
static __always_inline bool passes(const struct generic_probe_config *config, struct generic_record *rec)
{
	__u64 id = bpf_get_current_pid_tgid(), ids;
	__u32 tgid = id >> 32;

	if ((self_tgid && tgid == self_tgid) || (config->tgid && config->tgid != tgid))
		return false;
	ids = bpf_get_current_uid_gid();
	if ((config->filters & GENERIC_FILTER_UID) && config->uid != (__u32)ids)
		return false;
	bpf_get_current_comm(rec->comm, sizeof(rec->comm));
	if ((config->filters & GENERIC_FILTER_COMM) &&
	    (((__u64 *)rec->comm)[0] != ((__u64 *)config->comm)[0] ||
	     ((__u64 *)rec->comm)[1] != ((__u64 *)config->comm)[1]))
		return false;
	rec->pid = tgid;
	rec->tid = (__u32)id;
	rec->uid = (__u32)ids;
	rec->gid = ids >> 32;
	return true;
}

/* copies the strings the slot's pointer fields point to after the raw record's size bytes;
 * returns how many */
static __always_inline __u32 copy_strings(const struct generic_probe_config *config, struct generic_record *rec, __u32 size)
{
	__u32 copied = 0;
	const char *pointer;

	for (int i = 0; i < GENERIC_MAX_STRINGS; i++) {
		__u32 offset = config->string_offsets[i];

		if (!offset || offset > GENERIC_MAX_DATA - sizeof(pointer) || offset + sizeof(pointer) > size)
			break;
		if (bpf_probe_read_kernel(&pointer, sizeof(pointer), rec->data + offset))
			pointer = NULL;
		/* size is at most GENERIC_MAX_DATA, and the scratch buffer has room for every string
		 * after that; a failed read leaves the string zeroed */
		bpf_probe_read_user_str(rec->data + size + i * GENERIC_STRING_SIZE, GENERIC_STRING_SIZE, pointer);
		copied++;
	}
	return copied;
}

SEC("tracepoint")
int generic_tracepoint(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 slot = (__u32)cookie, zero = 0, size;
	struct generic_probe_config *config;
	struct generic_record *rec;

	config = bpf_map_lookup_elem(&probe_config, &slot);
	if (!config)
		return 0;
	rec = bpf_map_lookup_elem(&scratch, &zero);
	if (!rec || !passes(config, rec))
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
	rec->strings = copy_strings(config, rec, size);

	if (bpf_ringbuf_output(&events, rec, sizeof(*rec) + size + rec->strings * GENERIC_STRING_SIZE, 0))
		count_drop(&dropped);
	return 0;
}
