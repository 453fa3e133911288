/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What an object could not store because a map was full (or the kernel could not allocate an
 * entry), counted per kind: OVERFLOW_COUNTER(map, kinds) defines the per-CPU array `map` of
 * `kinds` counters, which user space sums, and count_overflow(kind), which adds one.
 */
#ifndef PERISCOPE_OVERFLOW_COUNTER_H
#define PERISCOPE_OVERFLOW_COUNTER_H

#include <bpf/bpf_helpers.h>

#define OVERFLOW_COUNTER(map, kinds)                                       \
	struct {                                                           \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                   \
		__uint(max_entries, kinds);                                \
		__type(key, __u32);                                        \
		__type(value, __u64);                                      \
	} map SEC(".maps");                                                \
                                                                           \
	static __always_inline void count_overflow(__u32 kind)             \
	{                                                                  \
		__u64 *count = bpf_map_lookup_elem(&map, &kind);           \
                                                                           \
		if (count)                                                 \
			*count += 1;                                       \
	}

#endif
