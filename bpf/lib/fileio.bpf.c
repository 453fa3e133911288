// SPDX-License-Identifier: GPL-2.0
/*
 * File I/O per process from the syscall tracepoints, counted in the kernel: read and write calls
 * (read, write, pread64, pwrite64, readv, writev, preadv, pwritev, preadv2, pwritev2), their
 * bytes and latency, and fsync/fdatasync, on regular files only (a socket, pipe or device is not
 * file I/O). User space reads the `processes` map on its interval; a process's last counts come
 * on the `exits` ring when it exits or execs, and its entry goes. Files the user names
 * (`target_paths`) are also counted per file, in `file_stats`.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "fd_file.h"
#include "overflow_counter.h"
#include "periscope.h"
#include "fileio.h"

char LICENSE[] SEC("license") = "GPL";

/* mounts and directories a path walk crosses before it gives up (counted in FILEIO_OVERFLOW_PATH) */
#define PATH_WALK_DEPTH 32

struct in_flight {
	__u64 start_ns;
	__u32 op;
	/* index in target_paths' values, or -1 */
	__s32 target;
};

/* per thread: a task's storage costs no hash on the hot exit path, and goes with the thread */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct in_flight);
} in_flight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct fileio_process);
} processes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} exits SEC(".maps");
RECORD(exits, struct fileio_process);

DROP_COUNTER;

OVERFLOW_COUNTER(overflows, FILEIO_OVERFLOWS);

/* Periscope's own processes, written by the runtime before the links attach */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} self_tgids SEC(".maps");

/* files to count one by one: path -> index in file_stats, claimed by user space */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FILEIO_MAX_TARGETS);
	__type(key, struct fileio_path);
	__type(value, __u32);
} target_paths SEC(".maps");

/* entry 0: how many target_paths there are, so opens cost nothing when there are none */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target_count SEC(".maps");

/*
 * the inodes of target files, found when they are opened (or by the open_targets iterator); not
 * an LRU, whose evictions would go uncounted: a file the map has no room for is counted in
 * overflows, and the plugin empties the map when it (re)starts
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct fileio_inode);
	__type(value, __u32);
} target_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FILEIO_MAX_TARGETS);
	__type(key, __u32);
	__type(value, struct fileio_counts);
} file_stats SEC(".maps");

/* a path is built right to left in the first half, then copied NUL-padded into key */
struct path_scratch {
	char walk[FILEIO_PATH_LEN * 2];
	struct fileio_path key;
	__u32 start;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_scratch);
} path_scratch SEC(".maps");

/* a process's counters start from these zeroes (in .bss: nothing writes them, and .rodata would make them a setting) */
struct fileio_process empty_process = {};

static __always_inline bool targets_named(void)
{
	__u32 zero = 0;
	__u32 *count = bpf_map_lookup_elem(&target_count, &zero);

	return count && *count;
}

static __always_inline void inode_of(struct file *file, struct fileio_inode *key)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);

	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->pad = 0;
	key->ino = BPF_CORE_READ(inode, i_ino);
}

static __always_inline __s32 target_of(struct file *file)
{
	struct fileio_inode key;
	__u32 *index;

	if (!targets_named())
		return -1;
	inode_of(file, &key);
	index = bpf_map_lookup_elem(&target_inodes, &key);
	return index ? (__s32)*index : -1;
}

/*
 * The absolute path of a dentry on a mount (a struct path's two halves) from the global root,
 * mount points crossed, NUL-padded in the per-CPU scratch's key; 0, or -1 when it is longer than
 * FILEIO_PATH_LEN - 1 or deeper than the walk. A global function, so the verifier walks its loop
 * once rather than at every caller's every state.
 */
__noinline int path_from_root(__u64 dentry_addr, __u64 vfsmount_addr)
{
	__u32 zero = 0, start, size;
	struct path_scratch *scratch = bpf_map_lookup_elem(&path_scratch, &zero);
	struct dentry *dentry = (struct dentry *)dentry_addr, *parent;
	/* struct mount holds the vfsmount: its offset relocated for this kernel */
	struct mount *mnt = (void *)vfsmount_addr - bpf_core_field_offset(struct mount, mnt), *mnt_parent;
	struct qstr name;
	int depth;

	if (!scratch)
		return -1;
	/*
	 * the path ends at walk[FILEIO_PATH_LEN] and grows leftwards from there; its start is kept in
	 * memory, not a register, so the verifier sees every iteration alike and prunes
	 */
	scratch->start = FILEIO_PATH_LEN;
	for (depth = 0; depth < PATH_WALK_DEPTH; depth++) {
		if (dentry == BPF_CORE_READ(mnt, mnt.mnt_root)) {
			mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
			/* the global root's mount is its own parent */
			if (mnt_parent == mnt)
				break;
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = mnt_parent;
			continue;
		}
		parent = BPF_CORE_READ(dentry, d_parent);
		if (parent == dentry)
			break;
		name = BPF_CORE_READ(dentry, d_name);
		start = *(volatile __u32 *)&scratch->start;
		/* one more byte for the '/' and one left for the key's NUL */
		if (name.len == 0 || name.len + 2 > start)
			goto overflow;
		start -= name.len + 1;
		*(volatile __u32 *)&scratch->start = start;
		bpf_probe_read_kernel(&scratch->walk[(start + 1) & (FILEIO_PATH_LEN - 1)], name.len & (FILEIO_PATH_LEN - 1), name.name);
		scratch->walk[start & (FILEIO_PATH_LEN - 1)] = '/';
		dentry = parent;
	}
	if (depth == PATH_WALK_DEPTH)
		goto overflow;
	__builtin_memset(&scratch->key, 0, sizeof(scratch->key));
	start = *(volatile __u32 *)&scratch->start;
	if (start >= FILEIO_PATH_LEN) {
		scratch->key.path[0] = '/';
		return 0;
	}
	/* start >= 1 (a NUL's room was kept), so the mask only shows the verifier the bound */
	size = (FILEIO_PATH_LEN - start) & (FILEIO_PATH_LEN - 1);
	bpf_probe_read_kernel(scratch->key.path, size, &scratch->walk[start & (FILEIO_PATH_LEN - 1)]);
	return 0;
overflow:
	count_overflow(FILEIO_OVERFLOW_PATH);
	return -1;
}

/* the current process's counters, created on its first call with its comm and executable */
static __always_inline struct fileio_process *current_process(__u32 tgid)
{
	struct fileio_process *process = bpf_map_lookup_elem(&processes, &tgid);
	struct task_struct *task;
	struct path_scratch *scratch;
	struct file *exe;
	__u32 zero = 0;

	if (process)
		return process;
	if (bpf_map_update_elem(&processes, &tgid, &empty_process, BPF_NOEXIST) && bpf_map_lookup_elem(&processes, &tgid) == NULL) {
		count_overflow(FILEIO_OVERFLOW_PROCESSES);
		return NULL;
	}
	process = bpf_map_lookup_elem(&processes, &tgid);
	if (!process)
		return NULL;
	process->pid = tgid;
	process->created_ns = bpf_ktime_get_boot_ns();
	task = bpf_get_current_task_btf();
	/* the process's name, not the thread's that made the first call ("worker-3") */
	bpf_probe_read_kernel_str(process->comm, sizeof(process->comm), task->group_leader->comm);
	exe = BPF_CORE_READ(task, mm, exe_file);
	if (exe && path_from_root((__u64)BPF_CORE_READ(exe, f_path.dentry), (__u64)BPF_CORE_READ(exe, f_path.mnt)) == 0 &&
	    (scratch = bpf_map_lookup_elem(&path_scratch, &zero)))
		__builtin_memcpy(process->executable, scratch->key.path, sizeof(process->executable));
	return process;
}

/* bucket of a latency: the smallest k with ns <= 2^k us, FILEIO_LATENCY_BUCKETS - 1 above them all */
static __always_inline __u32 latency_bucket(__u64 ns)
{
	__u64 us = (ns + 999) / 1000, v;
	__u32 k = 0;

	if (us <= 1)
		return 0;
	/* ceil(log2(us)) = floor(log2(us - 1)) + 1 */
	v = us - 1;
	if (v >> 32) { v >>= 32; k += 32; }
	if (v >> 16) { v >>= 16; k += 16; }
	if (v >> 8) { v >>= 8; k += 8; }
	if (v >> 4) { v >>= 4; k += 4; }
	if (v >> 2) { v >>= 2; k += 2; }
	if (v >> 1) { k += 1; }
	k += 1;
	return k < FILEIO_LATENCY_BUCKETS - 1 ? k : FILEIO_LATENCY_BUCKETS - 1;
}

static __always_inline void account(struct fileio_counts *counts, __u32 op, long ret, __u64 latency_ns)
{
	op &= FILEIO_OPS - 1;
	__sync_fetch_and_add(&counts->ops[op], 1);
	if (ret < 0)
		__sync_fetch_and_add(&counts->errors[op], 1);
	else if (op <= FILEIO_WRITE)
		__sync_fetch_and_add(&counts->bytes[op], ret);
	__sync_fetch_and_add(&counts->latency_sum_ns[op], latency_ns);
	__sync_fetch_and_add(&counts->latency_buckets[op * FILEIO_LATENCY_BUCKETS + latency_bucket(latency_ns)], 1);
}

/* entry of a call on fd: remembers its start when fd is a file this op counts */
static __always_inline int enter_call(int fd, __u32 op)
{
	struct file *file = fd_file(fd);
	__u32 tgid, mode = file_type(file);
	struct in_flight *call;

	/* a directory is synced after a rename or create, to make it last */
	if (mode != S_IFREG && !(op >= FILEIO_FSYNC && mode == S_IFDIR))
		return 0;
	tgid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_map_lookup_elem(&self_tgids, &tgid))
		return 0;
	call = bpf_task_storage_get(&in_flight, bpf_get_current_task_btf(), NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!call) {
		count_overflow(FILEIO_OVERFLOW_IN_FLIGHT);
		return 0;
	}
	call->op = op;
	call->target = target_of(file);
	call->start_ns = bpf_ktime_get_ns();
	return 0;
}

/* return of a call: adds it to its process's counters and its target file's */
static __always_inline int exit_call(long ret)
{
	struct in_flight *call = bpf_task_storage_get(&in_flight, bpf_get_current_task_btf(), NULL, 0);
	struct fileio_process *process;
	struct fileio_counts *file;
	__u64 latency;
	__u32 op, target;
	__s32 index;

	/* a thread's storage stays between its calls: start_ns 0 says no counted call is in flight */
	if (!call || !call->start_ns)
		return 0;
	latency = bpf_ktime_get_ns() - call->start_ns;
	call->start_ns = 0;
	op = call->op;
	index = call->target;
	process = current_process(bpf_get_current_pid_tgid() >> 32);
	if (process)
		account(&process->counts, op, ret, latency);
	if (index >= 0) {
		target = index;
		file = bpf_map_lookup_elem(&file_stats, &target);
		if (file)
			account(file, op, ret, latency);
	}
	return 0;
}

#define FILE_CALL(syscall, op)                                                  \
	SEC("tracepoint/syscalls/sys_enter_" #syscall)                          \
	int enter_##syscall(struct trace_event_raw_sys_enter *ctx)              \
	{                                                                       \
		return enter_call(ctx->args[0], op);                            \
	}                                                                       \
	SEC("tracepoint/syscalls/sys_exit_" #syscall)                           \
	int exit_##syscall(struct trace_event_raw_sys_exit *ctx)                \
	{                                                                       \
		return exit_call(ctx->ret);                                     \
	}

FILE_CALL(read, FILEIO_READ)
FILE_CALL(pread64, FILEIO_READ)
FILE_CALL(readv, FILEIO_READ)
FILE_CALL(preadv, FILEIO_READ)
FILE_CALL(preadv2, FILEIO_READ)
FILE_CALL(write, FILEIO_WRITE)
FILE_CALL(pwrite64, FILEIO_WRITE)
FILE_CALL(writev, FILEIO_WRITE)
FILE_CALL(pwritev, FILEIO_WRITE)
FILE_CALL(pwritev2, FILEIO_WRITE)
FILE_CALL(fsync, FILEIO_FSYNC)
FILE_CALL(fdatasync, FILEIO_FDATASYNC)

/* a regular file just opened as fd: remembered as a target when its path is one */
static __always_inline int opened(long fd)
{
	struct file *file;
	struct path_scratch *scratch;
	struct fileio_path *path;
	struct fileio_inode inode;
	__u32 *index, zero = 0;

	if (fd < 0 || !targets_named())
		return 0;
	file = fd_file(fd);
	if (file_type(file) != S_IFREG)
		return 0;
	if (path_from_root((__u64)BPF_CORE_READ(file, f_path.dentry), (__u64)BPF_CORE_READ(file, f_path.mnt)))
		return 0;
	scratch = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!scratch)
		return 0;
	path = &scratch->key;
	inode_of(file, &inode);
	index = bpf_map_lookup_elem(&target_paths, path);
	if (!index) {
		/* an inode number reused by another file is not the target's any more */
		bpf_map_delete_elem(&target_inodes, &inode);
		return 0;
	}
	if (bpf_map_update_elem(&target_inodes, &inode, index, BPF_ANY))
		count_overflow(FILEIO_OVERFLOW_TARGET_INODES);
	return 0;
}

#define OPEN_CALL(syscall)                                               \
	SEC("tracepoint/syscalls/sys_exit_" #syscall)                    \
	int exit_##syscall(struct trace_event_raw_sys_exit *ctx)         \
	{                                                                \
		return opened(ctx->ret);                                 \
	}

OPEN_CALL(open)
OPEN_CALL(openat)
OPEN_CALL(openat2)
OPEN_CALL(creat)

/* hands a process's last counts to user space and forgets it */
static __always_inline void flush_process(__u32 tgid)
{
	struct fileio_process *process = bpf_map_lookup_elem(&processes, &tgid), *last;

	if (!process)
		return;
	/*
	 * the record is sent last, so whoever reads it finds the entry gone; of threads ending
	 * together, only the one whose delete removed the entry sends it
	 */
	last = RESERVE_OR_DROP(exits, sizeof(*last));
	if (last)
		bpf_probe_read_kernel(last, sizeof(*last), process);
	if (bpf_map_delete_elem(&processes, &tgid)) {
		if (last)
			bpf_ringbuf_discard(last, 0);
		return;
	}
	if (last)
		bpf_ringbuf_submit(last, wake_flags(&exits));
}

/* the whole process's counts go at its last thread's exit (a thread's in_flight storage goes with it) */
SEC("tracepoint/sched/sched_process_exit")
int handle_exit(void *ctx)
{
	if (last_thread_exiting())
		flush_process(bpf_get_current_pid_tgid() >> 32);
	return 0;
}

/* the counts so far belong to the image (comm, executable) the process leaves */
SEC("tracepoint/sched/sched_process_exec")
int handle_exec(void *ctx)
{
	flush_process(bpf_get_current_pid_tgid() >> 32);
	return 0;
}

/* files the user names that were open before Periscope started (or before they were named) */
SEC("iter/task_file")
int open_targets(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	struct fileio_path *path;
	struct fileio_inode inode;
	__u32 zero = 0, *index;
	struct path_scratch *scratch = bpf_map_lookup_elem(&path_scratch, &zero);

	if (!file || !task || !scratch || (file->f_inode->i_mode & S_IFMT) != S_IFREG)
		return 0;
	/* d_path leaves what it built past the NUL: the key is copied, NUL-padded, from there */
	if (bpf_d_path((struct path *)&file->f_path, scratch->walk, FILEIO_PATH_LEN) < 0)
		return 0;
	__builtin_memset(&scratch->key, 0, sizeof(scratch->key));
	bpf_probe_read_kernel_str(scratch->key.path, sizeof(scratch->key.path), scratch->walk);
	path = &scratch->key;
	index = bpf_map_lookup_elem(&target_paths, path);
	if (!index)
		return 0;
	inode_of(file, &inode);
	if (bpf_map_update_elem(&target_inodes, &inode, index, BPF_ANY)) {
		count_overflow(FILEIO_OVERFLOW_TARGET_INODES);
		return 0;
	}
	BPF_SEQ_PRINTF(ctx->meta->seq, "%u %s\n", task->tgid, path->path);
	return 0;
}
