/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef SYSCALLS_H
#define SYSCALLS_H

#define SYSCALLS_COMM_LEN 16
/* syscall numbers counted: x86-64 has ~470; calls of higher numbers (x32) are not counted */
#define SYSCALLS_MAX_NR 512
/* errno values counted by name: the kernel's go up to 133, its internal restart codes to 516 */
#define SYSCALLS_MAX_ERRNO 4095

/* why a process's counts left the kernel (`retired` records) */
enum syscalls_retire_reason {
	SYSCALLS_RETIRE_EXIT = 1,
	/* its counts belong to the image (comm) it leaves */
	SYSCALLS_RETIRE_EXEC = 2,
};

/* what could not be counted as it should, in `overflows` */
enum syscalls_overflow {
	/* a call counted without its process (in `unattributed`): `calls` or `processes` was full */
	SYSCALLS_OVERFLOW_PROCESS_TABLE = 0,
	/* a failed call not counted by errno: `errors` was full */
	SYSCALLS_OVERFLOW_ERRNO_TABLE = 1,
	/* a call of a 32-bit (ia32) task, whose numbers are another table's: not counted */
	SYSCALLS_OVERFLOW_COMPAT = 2,
	SYSCALLS_OVERFLOWS = 3,
};

/* `calls` key: one syscall of one process */
struct syscall_key {
	__u32 tgid;
	__u32 nr;
};

/* `calls` value, and `unattributed` per number: counted since the entry was made */
struct syscall_counts {
	__u64 calls;
	/* calls that returned an error (-4095..-1) */
	__u64 errors;
};

/* `processes` value: a process that has entries in `calls` */
struct syscall_process {
	/* bit nr of used[nr / 64]: the numbers it has an entry for in `calls` */
	__u64 used[SYSCALLS_MAX_NR / 64];
	/* when the entry was made (boot clock): tells a pid's successive images and owners apart */
	__u64 created_ns;
	/* its main thread's comm when the entry was made (the process's image) */
	char comm[SYSCALLS_COMM_LEN];
};

/* `errors` key: failed calls of one syscall with one errno, host-wide */
struct syscall_error_key {
	__u32 nr;
	__u32 error;
};

/* a process's last counts of one syscall, sent when it exits or execs (`retired` ring) */
struct syscall_retired {
	__u32 tgid;
	__u32 nr;
	/* the created_ns of its `processes` entry */
	__u64 created_ns;
	__u64 calls;
	__u64 errors;
	__u32 reason;
	__u32 pad;
	char comm[SYSCALLS_COMM_LEN];
};

#endif
