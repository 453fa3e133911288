/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef FILEIO_H
#define FILEIO_H

#define FILEIO_COMM_LEN 16
/* paths (executables, target files) from the global root, NUL included */
#define FILEIO_PATH_LEN 256
/* files the user names for per-file metrics */
#define FILEIO_MAX_TARGETS 64
/*
 * latency buckets: bucket 0 is (-inf, 1 us], bucket k is (2^(k-1), 2^k] us for k in 1..22, and
 * the last is above 2^22 us (4.2 s)
 */
#define FILEIO_LATENCY_BUCKETS 24

enum fileio_op {
	FILEIO_READ = 0,
	FILEIO_WRITE = 1,
	FILEIO_FSYNC = 2,
	FILEIO_FDATASYNC = 3,
	FILEIO_OPS = 4,
};

/* what a bounded map could not store, counted in `overflows` */
enum fileio_overflow {
	/* a thread's call in flight, whose storage could not be made: the call is not counted */
	FILEIO_OVERFLOW_IN_FLIGHT = 0,
	/* a process's counters: its calls are not counted */
	FILEIO_OVERFLOW_PROCESSES = 1,
	/* a target file opened: its calls are not counted per file */
	FILEIO_OVERFLOW_TARGET_INODES = 2,
	/* a process's or target's path longer than FILEIO_PATH_LEN or deeper than the walk goes */
	FILEIO_OVERFLOW_PATH = 3,
	FILEIO_OVERFLOWS = 4,
};

/* calls on regular files, counted since the counters were created */
struct fileio_counts {
	__u64 ops[FILEIO_OPS];
	/* calls that returned an error */
	__u64 errors[FILEIO_OPS];
	/* bytes read (FILEIO_READ) and written (FILEIO_WRITE) */
	__u64 bytes[2];
	__u64 latency_sum_ns[FILEIO_OPS];
	/* FILEIO_LATENCY_BUCKETS per op, op after op */
	__u64 latency_buckets[FILEIO_OPS * FILEIO_LATENCY_BUCKETS];
};

/* a process's counters (`processes` map value), and its last counts when it exits or execs (`exits`) */
struct fileio_process {
	struct fileio_counts counts;
	/* when the entry was made (boot clock): tells a pid's successive images and owners apart */
	__u64 created_ns;
	__u32 pid;
	__u32 pad;
	char comm[FILEIO_COMM_LEN];
	char executable[FILEIO_PATH_LEN];
};

/* a file's identity (`target_inodes` key) */
struct fileio_inode {
	__u32 dev;
	__u32 pad;
	__u64 ino;
};

/* `target_paths` key: the absolute path, NUL-padded */
struct fileio_path {
	char path[FILEIO_PATH_LEN];
};

#endif
