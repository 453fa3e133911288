/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef SYSCALL_TABLE_H
#define SYSCALL_TABLE_H

/* syscall numbers the table holds: x86-64 has ~470; numbers beyond are counted, not stored */
#define SYSCALL_TABLE_SIZE 1024
#define SYSCALL_MAX_ARGS 6
#define SYSCALL_NAME_LEN 64
#define SYSCALL_ARG_TYPE_LEN 64
#define SYSCALL_ARG_NAME_LEN 32

/* one syscall as the kernel's ftrace metadata describes it, stored at its number */
struct syscall_entry {
	/* "sys_read"; empty for a number no syscall metadata names */
	char name[SYSCALL_NAME_LEN];
	__u32 arg_count;
	__u32 pad;
	/* "const char *", "unsigned int"; the order of the arguments */
	char arg_types[SYSCALL_MAX_ARGS][SYSCALL_ARG_TYPE_LEN];
	char arg_names[SYSCALL_MAX_ARGS][SYSCALL_ARG_NAME_LEN];
};

#endif
