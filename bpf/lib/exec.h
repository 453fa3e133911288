/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef EXEC_H
#define EXEC_H

#define EXEC_COMM_LEN 16
#define EXEC_FILENAME_LEN 256
#define EXEC_ARGS_LEN 1024

enum exec_event_kind {
	EXEC_EVENT_EXEC = 1,
	EXEC_EVENT_EXIT = 2,
};

struct exec_event {
	__u32 kind;
	__u32 pid;
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u64 timestamp_ns;
	/* exit only: how long the process lived */
	__u64 duration_ns;
	__s32 exit_code;
	/* exec only: bytes of args filled, and whether args was cut short */
	__u32 args_size;
	__u32 args_truncated;
	__u32 pad;
	char comm[EXEC_COMM_LEN];
	char filename[EXEC_FILENAME_LEN];
	strings_t args[EXEC_ARGS_LEN];
};

#endif
