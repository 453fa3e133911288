/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef SYSCALL_LOG_H
#define SYSCALL_LOG_H

#define SYSCALL_LOG_COMM_LEN 16
#define SYSCALL_LOG_ARGS 6
/* syscall numbers that can be decoded (`decode` entries); higher ones are logged undecoded */
#define SYSCALL_LOG_MAX_NR 512
/* string arguments (paths, names) copied per call, and their bytes with the NUL */
#define SYSCALL_LOG_STRINGS 2
#define SYSCALL_LOG_STRING_LEN 256

/* `flags` of a record */
enum syscall_log_flag {
	/* a call that does not return (exit, exit_group): logged at its entry, `ret` means nothing */
	SYSCALL_LOG_NO_RETURN = 1,
	/* strings[0] (bit 1) or strings[1] (bit 2) was cut at SYSCALL_LOG_STRING_LEN - 1 bytes */
	SYSCALL_LOG_STRING0_CUT = 2,
	SYSCALL_LOG_STRING1_CUT = 4,
};

/* what could not be logged, in `overflows` */
enum syscall_log_overflow {
	/* a call's entry found `in_flight` full: the call is not logged */
	SYSCALL_LOG_OVERFLOW_IN_FLIGHT = 0,
	SYSCALL_LOG_OVERFLOWS = 1,
};

/* `decode` value per syscall number, claimed by user space from the kernel's syscall table */
struct syscall_log_decode {
	/* 1 + the index of each argument to copy as a string; 0: none */
	__u8 string_args[SYSCALL_LOG_STRINGS];
	/* the call does not return (exit, exit_group) */
	__u8 no_return;
	__u8 pad;
};

/* one call of a target process (`records` ring); also its state between entry and exit */
struct syscall_log_record {
	/* boot clock at the entry */
	__u64 start_ns;
	__u64 duration_ns;
	addr64 args[SYSCALL_LOG_ARGS];
	__s64 ret;
	__u32 pid;
	__u32 tid;
	__u32 nr;
	__u32 flags;
	/* which argument each string is (as in struct syscall_log_decode) */
	__u8 string_args[SYSCALL_LOG_STRINGS];
	__u8 pad[6];
	char comm[SYSCALL_LOG_COMM_LEN];
	char strings[SYSCALL_LOG_STRINGS][SYSCALL_LOG_STRING_LEN];
};

#endif
