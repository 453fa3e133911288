/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef LOOPGEN_H
#define LOOPGEN_H

/* the argument of one test run of `generate` */
struct loopgen_args {
	__u32 count;
	__u32 pad;
};

/* exactly 64 bytes, the record size the ring buffer benchmark is specified with */
struct loopgen_event {
	__u64 seq;
	__u64 timestamp_ns;
	__u32 cpu;
	__u32 pad;
	__u8 payload[40];
};

#endif
