/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A per-CPU buffer to build a struct stack_sample in, so that the ring gets only its filled bytes
 * (the header and the stack actually copied, bpf_ringbuf_output) rather than the room a
 * reservation must leave for the deepest copy: a burst of samples then fits in the ring several
 * times over. A program can be preempted on its CPU (PREEMPT_RCU; a sleepable task work), so the
 * buffer is taken with an exchange: a program that finds it taken drops its sample (counted).
 *
 * @example
 *   SAMPLE_BUFFER_MAP(sample_buffer);
 *   s = take_sample_buffer(&sample_buffer);
 *   if (!s) { count_drop(&dropped); return 0; }
 *   ... fill s, with at most SAMPLE_BUFFER_MAX_BYTES of stack ...
 *   if (send_sample_buffer(&samples, s)) count_drop(&dropped);
 */
#ifndef SAMPLE_BUFFER_H
#define SAMPLE_BUFFER_H

#include "stack_sample.h"

/* the most stack a buffered sample holds (a per-CPU value is at most 32 KB) */
#define SAMPLE_BUFFER_MAX_BYTES 16384

struct sample_buffer {
	/* 1 while a program fills it (64 bits: the width BPF's exchange has without -mcpu=v3) */
	__u64 busy;
	__u8 bytes[STACK_SAMPLE_BYTES(SAMPLE_BUFFER_MAX_BYTES)];
};

#define SAMPLE_BUFFER_MAP(name)                                \
	struct {                                               \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);       \
		__uint(max_entries, 1);                        \
		__type(key, __u32);                            \
		__type(value, struct sample_buffer);           \
	} name SEC(".maps")

/* this CPU's buffer, as a sample to fill; NULL while a program this one preempted holds it */
static __always_inline struct stack_sample *take_sample_buffer(void *map)
{
	struct sample_buffer *buffer;
	__u32 zero = 0;

	buffer = bpf_map_lookup_elem(map, &zero);
	if (!buffer || __sync_lock_test_and_set(&buffer->busy, 1))
		return 0;
	return (struct stack_sample *)buffer->bytes;
}

/* sends the sample's header and filled stack bytes, and lets the buffer go; the ring's error */
static __always_inline long send_sample_buffer(void *ring, struct stack_sample *s)
{
	struct sample_buffer *buffer = (struct sample_buffer *)((__u8 *)s - __builtin_offsetof(struct sample_buffer, bytes));
	__u32 size = s->stack_size;
	long err;

	if (size > SAMPLE_BUFFER_MAX_BYTES)
		size = SAMPLE_BUFFER_MAX_BYTES;
	err = bpf_ringbuf_output(ring, s, sizeof(*s) + size, 0);
	buffer->busy = 0;
	return err;
}

#endif
