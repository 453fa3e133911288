/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef AUDIT_H
#define AUDIT_H

#define AUDIT_COMM_LEN 16
#define AUDIT_PATH_LEN 256
#define AUDIT_ARGS_LEN 1024
#define AUDIT_ADDR_LEN 16
/* rules are bits of a __u64 */
#define AUDIT_MAX_RULES 64
#define AUDIT_KIND_SLOTS 16

/* `kind`, and the bit (1 << kind) of kinds and rule masks */
enum audit_kind {
	AUDIT_EXEC = 1,
	AUDIT_UNLINK = 2,
	AUDIT_RENAME = 3,
	AUDIT_CHMOD = 4,
	AUDIT_CHOWN = 5,
	AUDIT_OPEN = 6,
	AUDIT_SETID = 7,
	AUDIT_CONNECT = 8,
	AUDIT_ACCEPT = 9,
	AUDIT_PTRACE = 10,
	AUDIT_BPF = 11,
};

/* `syscall`: which call of its kind the event comes from */
enum audit_syscall {
	AUDIT_SYS_EXECVE = 1,
	AUDIT_SYS_UNLINK = 2,
	AUDIT_SYS_UNLINKAT = 3,
	AUDIT_SYS_RMDIR = 4,
	AUDIT_SYS_RENAME = 5,
	AUDIT_SYS_RENAMEAT = 6,
	AUDIT_SYS_RENAMEAT2 = 7,
	AUDIT_SYS_CHMOD = 8,
	AUDIT_SYS_FCHMOD = 9,
	AUDIT_SYS_FCHMODAT = 10,
	AUDIT_SYS_FCHMODAT2 = 11,
	AUDIT_SYS_CHOWN = 12,
	AUDIT_SYS_FCHOWN = 13,
	AUDIT_SYS_LCHOWN = 14,
	AUDIT_SYS_FCHOWNAT = 15,
	AUDIT_SYS_OPEN = 16,
	AUDIT_SYS_OPENAT = 17,
	AUDIT_SYS_OPENAT2 = 18,
	AUDIT_SYS_SETUID = 19,
	AUDIT_SYS_SETGID = 20,
	AUDIT_SYS_SETREUID = 21,
	AUDIT_SYS_SETREGID = 22,
	AUDIT_SYS_SETRESUID = 23,
	AUDIT_SYS_SETRESGID = 24,
	AUDIT_SYS_CAPSET = 25,
	AUDIT_SYS_CONNECT = 26,
	AUDIT_SYS_ACCEPT = 27,
	AUDIT_SYS_ACCEPT4 = 28,
	AUDIT_SYS_PTRACE = 29,
	AUDIT_SYS_BPF = 30,
};

/* `flags` */
#define AUDIT_FLAG_ARGS_TRUNCATED 1
/* exec: the executable had no link left (deleted), or is a memfd */
#define AUDIT_FLAG_EXE_DELETED 2
#define AUDIT_FLAG_EXE_MEMFD 4
/* exec: the kernel gave the new image privileges its caller lacked (setuid/setgid bit, file caps) */
#define AUDIT_FLAG_PRIVILEGE_GAIN 8
/* a path longer than its field, cut short */
#define AUDIT_FLAG_PATH_TRUNCATED 16

/*
 * One audit event. Numeric arguments by kind:
 *  - exec: none;
 *  - unlink: arg0 = unlinkat's flags (AT_REMOVEDIR);
 *  - rename: arg0 = renameat2's flags;
 *  - chmod: arg0 = mode;
 *  - chown: arg0 = uid, arg1 = gid (as passed; -1 = unchanged);
 *  - open: arg0 = open flags;
 *  - setid: the ids passed, arg0..arg2 (-1 = unchanged); capset: effective, permitted, inheritable;
 *  - ptrace: arg0 = request, arg1 = target pid;
 *  - bpf: arg0 = program type, arg1 = the new program's id (0 if the load failed);
 * connect/accept fill family, ports and addresses; path is path or old path, path2 the new
 * path of a rename, the working directory of an exec, the program name of a bpf load.
 */
struct audit_event {
	__u32 kind;
	__u32 syscall;
	__u32 pid;
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u32 egid;
	__u32 pid_ns;
	__u64 cgroup_id;
	__u64 timestamp_ns;
	/* the syscall's return value (negative errno on failure); 0 for exec */
	__s64 ret;
	__u64 arg0;
	__u64 arg1;
	__u64 arg2;
	__u32 flags;
	__u16 family;
	__u16 local_port;
	__u16 peer_port;
	__u16 pad;
	/* exec only: bytes of args filled */
	__u32 args_size;
	__u8 local_addr[AUDIT_ADDR_LEN];
	__u8 peer_addr[AUDIT_ADDR_LEN];
	char comm[AUDIT_COMM_LEN];
	char path[AUDIT_PATH_LEN];
	char path2[AUDIT_PATH_LEN];
	strings_t args[AUDIT_ARGS_LEN];
};

/*
 * The rule set, entry 0 of `ruleset`: which kinds are on, and for each rule (a bit) which
 * conditions it has. A rule matches an event when it applies to the event's kind and, for each
 * field it names, the field's map holds the event's value with the rule's bit. A field's `any`
 * mask has the bits of rules that do not name it.
 */
struct audit_ruleset {
	/* bits 1 << kind of the kinds reported */
	__u32 kinds;
	__u32 pad;
	/* rules that drop what they match; the others keep only what they match, for their kinds */
	__u64 exclude;
	__u64 uid_any;
	__u64 comm_any;
	__u64 pid_any;
	__u64 ns_any;
	__u64 exe_any;
	__u64 path_any;
	/* per kind, the rules that apply to it */
	__u64 kind_rules[AUDIT_KIND_SLOTS];
};

/* key of the path tries (path rules, executable rules, sensitive paths): prefix length in bits */
struct audit_path_key {
	__u32 prefixlen;
	char path[AUDIT_PATH_LEN];
};

#endif
