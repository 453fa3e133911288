/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef GENERIC_H
#define GENERIC_H

/* how many tracepoints one generic object can serve at once (one config slot each) */
#define GENERIC_MAX_PROBES 64
/* largest raw tracepoint record copied; longer records are cut and flagged */
#define GENERIC_MAX_DATA 4096
/* the tracefs common fields (common_type, common_flags, common_preempt_count, common_pid) */
#define GENERIC_COMMON_HEADER 8

/* per-probe settings, selected by the attach cookie (the slot index) */
struct generic_probe_config {
	/* bytes of the raw record to copy, counted from the start of the tracefs format (the
	 * 8-byte common header, which arrives zeroed, then the fields) */
	__u32 record_size;
	/* 0 for every process, else only this tgid */
	__u32 tgid;
};

struct generic_record {
	addr64 cookie;
	__u64 timestamp_ns;
	__u32 pid;
	__u32 tid;
	__u32 cpu;
	/* bytes of data that follow */
	__u32 size;
	/* 1 when the configured record_size was above GENERIC_MAX_DATA and the record was cut */
	__u32 truncated;
	__u32 pad;
	char comm[16];
	/* the tracepoint's raw record, as described by its tracefs format file; the common header
	 * is zeroed */
	__u8 data[];
};

#endif
