/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef GENERIC_H
#define GENERIC_H

/* how many tracepoints one generic object can serve at once (one config slot each) */
#define GENERIC_MAX_PROBES 64
/* largest raw tracepoint record copied; longer records are cut and flagged */
#define GENERIC_MAX_DATA 4096
/* the tracefs common fields (common_type, common_flags, common_preempt_count, common_pid) */
#define GENERIC_COMMON_HEADER 8
/* user-space strings (`const char *` fields) copied per record */
#define GENERIC_MAX_STRINGS 2
/* bytes of each copied string, its NUL included: bpftrace's default BPFTRACE_STRLEN, so str()
 * of a longer string shows the 63 bytes bpftrace shows */
#define GENERIC_STRING_SIZE 64
/* where in generic_record.data the stacks of a record start, after `size` bytes and `strings` */
#define GENERIC_STACKS_AT(size, strings) (((size) + (strings) * GENERIC_STRING_SIZE + 7) & ~7)

/* generic_probe_config.filters: which of comm and uid the kernel compares; as
 * generic_count_config.needs, which of them (uid and gid for GENERIC_FILTER_UID) its keys read */
#define GENERIC_FILTER_COMM 1
#define GENERIC_FILTER_UID 2

/* per-probe settings, selected by the attach cookie (the slot index) */
struct generic_probe_config {
	/* bytes of the raw record to copy, counted from the start of the tracefs format (the
	 * 8-byte common header, which arrives zeroed, then the fields) */
	__u32 record_size;
	/* 0 for every process, else only this tgid */
	__u32 tgid;
	/* only this uid, when filters has GENERIC_FILTER_UID */
	__u32 uid;
	__u32 filters;
	/* only tasks of this comm (NUL-padded, as the kernel's), when filters has GENERIC_FILTER_COMM */
	char comm[16];
	/* record offsets of pointer fields to copy the user-space string of; 0 ends the list */
	__u16 string_offsets[GENERIC_MAX_STRINGS];
	/* bit i: string i is a `__data_loc char[]` field instead, whose text the kernel keeps in the
	 * record itself (past its fixed part, so not in the copy of record_size bytes) */
	__u32 string_data_locs;
	/* EVENT_STACK_KERNEL and EVENT_STACK_USER (bpf/include/event_stacks.h): the stacks to append
	 * to each record (bpftrace's kstack and ustack); 0 for none */
	__u32 stacks;
};

/* count() statements of one slot counted in the kernel, and key expressions per statement */
#define GENERIC_MAX_COUNTS 4
#define GENERIC_MAX_KEY_PARTS 4
/* bytes of each key part in generic_count_key: a comm, or an integer's little-endian bytes */
#define GENERIC_KEY_PART_SIZE 16

/* generic_count_config.kinds: what one key part holds; GENERIC_KEY_NONE ends a statement's key */
#define GENERIC_KEY_NONE 0
#define GENERIC_KEY_COMM 1
#define GENERIC_KEY_PID 2
#define GENERIC_KEY_TID 3
#define GENERIC_KEY_UID 4
#define GENERIC_KEY_GID 5
#define GENERIC_KEY_CPU 6
/* `sizes[i]` bytes (1 to 8) of the raw record at `offsets[i]`: an integer field of the format */
#define GENERIC_KEY_FIELD 7

/*
 * A slot that counts in the kernel (counts > 0) sends no records: each event that passes the
 * slot's filters adds 1, on its CPU, to each statement's count. Statement i of the slot counts
 * under the counter slot * GENERIC_MAX_COUNTS + i: in `totals[counter]` when it has no key
 * (`@ = count()`), else in the `counts` entry of generic_count_key { counter, key }. Part j of
 * its key is kinds/sizes/offsets[i * GENERIC_MAX_KEY_PARTS + j].
 */
struct generic_count_config {
	__u32 counts;
	/* GENERIC_FILTER_COMM and GENERIC_FILTER_UID: what the keys read besides pid and tid
	 * (each costs a helper call per event, as long as the rest of the count) */
	__u32 needs;
	__u8 kinds[GENERIC_MAX_COUNTS * GENERIC_MAX_KEY_PARTS];
	__u8 sizes[GENERIC_MAX_COUNTS * GENERIC_MAX_KEY_PARTS];
	__u16 offsets[GENERIC_MAX_COUNTS * GENERIC_MAX_KEY_PARTS];
};

struct generic_count_key {
	__u32 counter;
	__u32 pad;
	/* part j at j * GENERIC_KEY_PART_SIZE, zero-padded; parts past the key stay zero */
	__u8 parts[GENERIC_MAX_KEY_PARTS * GENERIC_KEY_PART_SIZE];
};

struct generic_record {
	addr64 cookie;
	__u64 timestamp_ns;
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u32 cpu;
	/* bytes of the raw record in data */
	__u32 size;
	/* 1 when the configured record_size was above GENERIC_MAX_DATA and the record was cut */
	__u32 truncated;
	/* GENERIC_STRING_SIZE-byte strings after the raw record, one per string_offsets entry (an
	 * unreadable pointer gives an empty string, as in bpftrace) */
	__u32 strings;
	char comm[16];
	/* the tracepoint's raw record, as described by its tracefs format file (the common header
	 * zeroed), then the strings, then, when the slot asks for stacks, a struct stack_sample
	 * (bpf/lib/stacks.h) at the next multiple of 8 (GENERIC_STACKS_AT) up to the record's end */
	__u8 data[];
};

#endif
