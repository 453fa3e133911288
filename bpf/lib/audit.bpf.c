// SPDX-License-Identifier: GPL-2.0
/*
 * Security audit events from the exec tracepoint and the exit tracepoints of the audited
 * syscalls (their arguments are read from the task's saved registers at exit, so one program per
 * syscall sees both the arguments and the result). The rules of `ruleset` and its maps decide in
 * the kernel what is reported: an event they drop never reaches the ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "fd_file.h"
#include "periscope.h"
#include "audit.h"

char LICENSE[] SEC("license") = "GPL";

#define AT_FDCWD -100
#define AF_INET 2
#define AF_INET6 10
#define PTRACE_TRACEME 0
#define PTRACE_ATTACH 16
#define PTRACE_SEIZE 0x4206
#define BPF_PROG_LOAD_CMD 5

/* path components walked up to the root, and mount crossings on the way */
#define PATH_DEPTH 32
#define MOUNT_DEPTH 8
/* room for a directory (< AUDIT_PATH_LEN) followed by a user path (<= AUDIT_PATH_LEN) */
#define WORK_LEN 1024

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} events SEC(".maps");
RECORD(events, struct audit_event);

DROP_COUNTER;

/* Periscope's own processes (filled by the runtime before attaching): never audited */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} self_tgids SEC(".maps");

/* entry 0: the rule set; all zero (nothing reported) until a plugin claims it */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct audit_ruleset);
} ruleset SEC(".maps");

/* per rule field, value -> the rules whose condition on that field the value meets */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} uid_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, char[AUDIT_COMM_LEN]);
	__type(value, __u64);
} comm_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} pid_rules SEC(".maps");

/* by pid namespace inode number (`readlink /proc/<pid>/ns/pid`) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} ns_rules SEC(".maps");

/* executables: whole paths, the terminating NUL included in the prefix */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct audit_path_key);
	__type(value, __u64);
} exe_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct audit_path_key);
	__type(value, __u64);
} path_rules SEC(".maps");

/* opens are reported only under these prefixes */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct audit_path_key);
	__type(value, __u8);
} sensitive_paths SEC(".maps");

/* an event is built here, judged by the rules, and only then copied to the ring */
struct scratch {
	struct audit_event event;
	struct audit_path_key key;
	char user[AUDIT_PATH_LEN];
	char work[WORK_LEN];
	const unsigned char *names[PATH_DEPTH];
	__u32 lens[PATH_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_space SEC(".maps");

/* the fields of a syscalls:sys_exit_* record */
struct sys_exit_args {
	__u64 common;
	long nr;
	long ret;
};

/* v & mask, in an instruction of its own: the verifier then knows the bound the compiler might drop */
#define BOUNDED(v, mask)                                        \
	({                                                      \
		__u64 __v = (v);                                \
		asm volatile("%0 &= " #mask : "+r"(__v));       \
		__v;                                            \
	})

static __always_inline struct audit_ruleset *rules(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ruleset, &zero);
}

/* the scratch space when `kind` is reported and the caller is not Periscope */
static __always_inline struct scratch *begin(struct audit_ruleset *rs, __u32 kind)
{
	__u32 zero = 0, tgid = bpf_get_current_pid_tgid() >> 32;

	if (!rs || !(rs->kinds & (1U << kind)))
		return NULL;
	if (bpf_map_lookup_elem(&self_tgids, &tgid))
		return NULL;
	return bpf_map_lookup_elem(&scratch_space, &zero);
}

/* the syscall's arguments as the task passed them (x86-64: rdi, rsi, rdx, r10, r8) */
static __always_inline struct pt_regs *user_regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

#define ARG0(regs) BPF_CORE_READ(regs, di)
#define ARG1(regs) BPF_CORE_READ(regs, si)
#define ARG2(regs) BPF_CORE_READ(regs, dx)
#define ARG3(regs) BPF_CORE_READ(regs, r10)

/*
 * The exit program of a syscall, whose event `event` makes from the tracepoint's context (ctx)
 * and the syscall's arguments in the saved user registers (regs)
 */
#define AUDIT_EXIT(syscall, event)                                  \
	SEC("tracepoint/syscalls/sys_exit_" #syscall)               \
	int exit_##syscall(struct sys_exit_args *ctx)               \
	{                                                           \
		struct pt_regs *regs = user_regs();                 \
		return event;                                       \
	}

static __always_inline __u32 pid_ns_of(struct task_struct *task)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid upid = {};

	bpf_probe_read_kernel(&upid, sizeof(upid), (void *)pid + bpf_core_field_offset(struct pid, numbers) + (level & 31) * sizeof(struct upid));
	return BPF_CORE_READ(upid.ns, ns.inum);
}

static __always_inline struct audit_event *start_event(struct scratch *sc, __u32 kind, __u32 syscall, long ret)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct audit_event *e = &sc->event;
	__u64 id = bpf_get_current_pid_tgid();

	e->kind = kind;
	e->syscall = syscall;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = BPF_CORE_READ(task, cred, uid.val);
	e->gid = BPF_CORE_READ(task, cred, gid.val);
	e->euid = BPF_CORE_READ(task, cred, euid.val);
	e->egid = BPF_CORE_READ(task, cred, egid.val);
	e->pid_ns = pid_ns_of(task);
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->timestamp_ns = bpf_ktime_get_boot_ns();
	e->ret = ret;
	e->arg0 = 0;
	e->arg1 = 0;
	e->arg2 = 0;
	e->flags = 0;
	e->family = 0;
	e->local_port = 0;
	e->peer_port = 0;
	e->pad = 0;
	e->args_size = 0;
	__builtin_memset(e->local_addr, 0, sizeof(e->local_addr));
	__builtin_memset(e->peer_addr, 0, sizeof(e->peer_addr));
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->path[0] = 0;
	e->path2[0] = 0;
	return e;
}

static __always_inline struct scratch *scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scratch_space, &zero);
}

/* where a path walk is: the dentry and mount it reached, components found, bytes written */
struct walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	__u32 n;
	__u32 off;
};

/* one step towards the root (bpf_loop callback): a component, or a crossing to the parent mount */
static long walk_up(__u64 index, struct walk *w)
{
	struct scratch *sc = scratch();
	struct dentry *dentry = w->dentry, *parent;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt, *up;
	__u32 n = w->n;

	if (!sc)
		return 1;
	if (dentry == BPF_CORE_READ(vfsmnt, mnt_root)) {
		up = BPF_CORE_READ(mnt, mnt_parent);
		/* the root mount is its own parent */
		if (up == mnt)
			return 1;
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		w->vfsmnt = (void *)up + bpf_core_field_offset(struct mount, mnt);
		return 0;
	}
	if (n >= PATH_DEPTH)
		return 1;
	parent = BPF_CORE_READ(dentry, d_parent);
	/* a pseudo file's dentry (a memfd's, say) is its own parent: its name is all there is */
	if (parent == dentry && n > 0)
		return 1;
	sc->names[n & (PATH_DEPTH - 1)] = BPF_CORE_READ(dentry, d_name.name);
	sc->lens[n & (PATH_DEPTH - 1)] = BPF_CORE_READ(dentry, d_name.len);
	w->n = n + 1;
	w->dentry = parent;
	return parent == dentry;
}

/* writes the index-th component from the root (bpf_loop callback); they were found leaf first */
static long write_down(__u64 index, struct walk *w)
{
	struct scratch *sc = scratch();
	__u32 at, off, len;

	if (!sc || index >= w->n || w->off >= AUDIT_PATH_LEN)
		return 1;
	at = (w->n - 1 - index) & (PATH_DEPTH - 1);
	off = w->off;
	sc->work[BOUNDED(off, 255)] = '/';
	off++;
	len = sc->lens[at];
	if (len > AUDIT_PATH_LEN)
		len = AUDIT_PATH_LEN;
	bpf_probe_read_kernel(&sc->work[BOUNDED(off, 511)], BOUNDED(len, 511), sc->names[at]);
	w->off = off + len;
	return 0;
}

/*
 * Writes the path of (dentry, vfsmnt) from the root of its mount namespace into sc->work; returns
 * its length. A global function: the verifier checks it once, not at every call.
 */
__noinline int dentry_path(struct scratch *sc, __u64 dentry, __u64 vfsmnt)
{
	struct walk w = {
		.dentry = (struct dentry *)dentry,
		.vfsmnt = (struct vfsmount *)vfsmnt,
		.mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt),
	};

	if (!sc)
		return 0;
	bpf_loop(PATH_DEPTH + MOUNT_DEPTH, walk_up, &w, 0);
	bpf_loop(PATH_DEPTH, write_down, &w, 0);
	if (w.off == 0)
		sc->work[w.off++] = '/';
	sc->work[BOUNDED(w.off, 1023)] = 0;
	return w.off;
}

/* copies sc->work into a path field, cut to fit; returns the field's length */
static __always_inline __u32 keep_work(struct scratch *sc, char *dest, __u32 len)
{
	bpf_probe_read_kernel(dest, AUDIT_PATH_LEN, sc->work);
	if (len >= AUDIT_PATH_LEN) {
		dest[AUDIT_PATH_LEN - 1] = 0;
		sc->event.flags |= AUDIT_FLAG_PATH_TRUNCATED;
		return AUDIT_PATH_LEN - 1;
	}
	return len;
}

/* the path field `which` (0: path, 1: path2) */
#define PATH_FIELD(sc, which) ((which) ? (sc)->event.path2 : (sc)->event.path)

/* the path of an open file (NULL: none) into path field `which`; returns its length */
__noinline int file_path(struct scratch *sc, __u64 file_addr, int which)
{
	struct file *file = (struct file *)file_addr;
	__u32 len;

	if (!sc)
		return 0;
	if (!file) {
		PATH_FIELD(sc, which)[0] = 0;
		return 0;
	}
	len = dentry_path(sc, (__u64)BPF_CORE_READ(file, f_path.dentry), (__u64)BPF_CORE_READ(file, f_path.mnt));
	return keep_work(sc, PATH_FIELD(sc, which), len);
}

/*
 * The absolute path a *at() call names (dfd, upath) into path field `which`, the way the kernel
 * resolves it but without following symbolic links or folding `..`; returns its length.
 */
__noinline int resolve(struct scratch *sc, long dfd, __u64 upath, int which)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct dentry *dentry;
	struct vfsmount *mnt;
	__u32 len, skip = 0;
	struct file *file;
	char *dest;
	long n;

	if (!sc)
		return 0;
	dest = PATH_FIELD(sc, which);
	n = bpf_probe_read_user_str(sc->user, sizeof(sc->user), (const char *)upath);
	if (n <= 0) {
		dest[0] = 0;
		return 0;
	}
	if (sc->user[0] == '/') {
		bpf_probe_read_kernel(dest, AUDIT_PATH_LEN, sc->user);
		if (n == AUDIT_PATH_LEN)
			sc->event.flags |= AUDIT_FLAG_PATH_TRUNCATED;
		return n - 1;
	}
	if ((int)dfd == AT_FDCWD) {
		dentry = BPF_CORE_READ(task, fs, pwd.dentry);
		mnt = BPF_CORE_READ(task, fs, pwd.mnt);
	} else {
		file = fd_file((int)dfd);
		if (!file) {
			dest[0] = 0;
			return 0;
		}
		dentry = BPF_CORE_READ(file, f_path.dentry);
		mnt = BPF_CORE_READ(file, f_path.mnt);
	}
	len = dentry_path(sc, (__u64)dentry, (__u64)mnt);
	if (len >= AUDIT_PATH_LEN)
		return keep_work(sc, dest, len);
	/* an empty path (AT_EMPTY_PATH) names dfd itself */
	if (sc->user[0] != 0) {
		if (sc->user[0] == '.' && sc->user[1] == '/')
			skip = 2;
		else if (sc->user[0] == '.' && sc->user[1] == 0)
			skip = 1;
		if (len > 1 && n - 1 > skip)
			sc->work[BOUNDED(len++, 1023)] = '/';
		bpf_probe_read_kernel_str(&sc->work[BOUNDED(len, 511)], AUDIT_PATH_LEN, &sc->user[skip & 3]);
		len += n - 1 - skip;
	}
	return keep_work(sc, dest, len);
}

/* the rule bits of a path trie that match path (len bytes) */
static __always_inline __u64 path_match(struct scratch *sc, void *trie, const char *path, __u32 len, bool exact)
{
	__u64 *bits;

	bpf_probe_read_kernel(sc->key.path, AUDIT_PATH_LEN, path);
	/* an exact key's prefix takes in its NUL */
	sc->key.prefixlen = (exact ? len + 1 : len) * 8;
	bits = bpf_map_lookup_elem(trie, &sc->key);
	return bits ? *bits : 0;
}

static __always_inline __u64 field_match(void *map, void *key)
{
	__u64 *bits = bpf_map_lookup_elem(map, key);

	return bits ? *bits : 0;
}

/*
 * Whether the rules keep the event: none of the exclude rules that apply to its kind matches it,
 * and one of the other rules of its kind does, if there are any. The path rules look at `paths`
 * of the event's path fields (0: none, 1: path, 2: path and path2, a rename's), len and len2 long.
 */
__noinline int kept(struct scratch *sc, struct audit_ruleset *rs, int paths, __u32 len, __u32 len2)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct audit_event *e;
	__u64 applies, includes, m, bits;
	__u32 exe_len;

	if (!sc || !rs)
		return 0;
	e = &sc->event;
	applies = rs->kind_rules[e->kind & (AUDIT_KIND_SLOTS - 1)];
	includes = applies & ~rs->exclude;
	m = applies;
	if (!applies)
		return 1;
	if (m & ~rs->uid_any)
		m &= rs->uid_any | field_match(&uid_rules, &e->uid);
	if (m & ~rs->comm_any)
		m &= rs->comm_any | field_match(&comm_rules, e->comm);
	if (m & ~rs->pid_any)
		m &= rs->pid_any | field_match(&pid_rules, &e->pid);
	if (m & ~rs->ns_any)
		m &= rs->ns_any | field_match(&ns_rules, &e->pid_ns);
	if (m & ~rs->path_any) {
		bits = 0;
		if (paths >= 1)
			bits = path_match(sc, &path_rules, e->path, len, false);
		if (paths >= 2)
			bits |= path_match(sc, &path_rules, e->path2, len2, false);
		m &= rs->path_any | bits;
	}
	if (m & ~rs->exe_any) {
		exe_len = dentry_path(sc, (__u64)BPF_CORE_READ(task, mm, exe_file, f_path.dentry), (__u64)BPF_CORE_READ(task, mm, exe_file, f_path.mnt));
		if (exe_len >= AUDIT_PATH_LEN)
			exe_len = AUDIT_PATH_LEN - 1;
		sc->work[BOUNDED(exe_len, 1023)] = 0;
		m &= rs->exe_any | path_match(sc, &exe_rules, sc->work, exe_len, true);
	}
	if (m & rs->exclude)
		return 0;
	return !includes || (m & includes);
}

static __always_inline void submit(struct scratch *sc)
{
	if (bpf_ringbuf_output(&events, &sc->event, sizeof(sc->event), wake_flags(&events)))
		count_drop(&dropped);
}

/* exec: the new image's argv, executable, working directory, and whether it gained privileges */
SEC("raw_tp/sched_process_exec")
int handle_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	struct audit_ruleset *rs = rules();
	struct audit_event *e;
	struct scratch *sc;
	struct dentry *exe;
	unsigned long arg_start, arg_end, size;
	__u32 len, gained, zero = 0, tgid = bpf_get_current_pid_tgid() >> 32;
	char name[8] = {};

	if (!rs || bpf_map_lookup_elem(&self_tgids, &tgid))
		return 0;
	gained = BPF_CORE_READ_BITFIELD_PROBED(bprm, secureexec);
	/* an exec that gains privileges is a privilege change too */
	if (!(rs->kinds & (1U << AUDIT_EXEC)) && !(gained && (rs->kinds & (1U << AUDIT_SETID))))
		return 0;
	sc = bpf_map_lookup_elem(&scratch_space, &zero);
	if (!sc)
		return 0;
	e = start_event(sc, AUDIT_EXEC, AUDIT_SYS_EXECVE, 0);
	if (gained)
		e->flags |= AUDIT_FLAG_PRIVILEGE_GAIN;

	exe = BPF_CORE_READ(bprm, file, f_path.dentry);
	if (BPF_CORE_READ(exe, d_inode, __i_nlink) == 0)
		e->flags |= AUDIT_FLAG_EXE_DELETED;
	bpf_probe_read_kernel(name, 6, BPF_CORE_READ(exe, d_name.name));
	if (name[0] == 'm' && name[1] == 'e' && name[2] == 'm' && name[3] == 'f' && name[4] == 'd' && name[5] == ':')
		e->flags = (e->flags & ~AUDIT_FLAG_EXE_DELETED) | AUDIT_FLAG_EXE_MEMFD;
	len = file_path(sc, (__u64)BPF_CORE_READ(bprm, file), 0);
	keep_work(sc, e->path2, dentry_path(sc, (__u64)BPF_CORE_READ(task, fs, pwd.dentry), (__u64)BPF_CORE_READ(task, fs, pwd.mnt)));

	/* argv from the new image's stack: NUL-separated strings */
	arg_start = BPF_CORE_READ(task, mm, arg_start);
	arg_end = BPF_CORE_READ(task, mm, arg_end);
	size = arg_end - arg_start;
	if (size > AUDIT_ARGS_LEN - 1) {
		size = AUDIT_ARGS_LEN - 1;
		e->flags |= AUDIT_FLAG_ARGS_TRUNCATED;
	}
	if (bpf_probe_read_user(e->args, BOUNDED(size, 1023), (void *)arg_start) < 0)
		size = 0;
	e->args_size = size;

	if (!kept(sc, rs, 1, len, 0))
		return 0;
	submit(sc);
	return 0;
}

/* the common end of a path event: rules, then the ring */
static __always_inline int finish_path(struct scratch *sc, struct audit_ruleset *rs, __u32 len, __u32 len2, bool two)
{
	if (!kept(sc, rs, two ? 2 : 1, len, len2))
		return 0;
	submit(sc);
	return 0;
}

/* the event of a syscall on one path (dfd, path), with one numeric argument */
static __always_inline int path_event(struct sys_exit_args *ctx, __u32 kind, __u32 syscall, long dfd, const char *upath, __u64 arg0)
{
	struct audit_ruleset *rs = rules();
	struct scratch *sc = begin(rs, kind);
	struct audit_event *e;
	__u32 len;

	if (!sc)
		return 0;
	e = start_event(sc, kind, syscall, ctx->ret);
	len = resolve(sc, dfd, (__u64)upath, 0);
	e->arg0 = arg0;
	return finish_path(sc, rs, len, 0, false);
}

/* the event of a syscall on an open file descriptor */
static __always_inline int fd_event(struct sys_exit_args *ctx, __u32 kind, __u32 syscall, long fd, __u64 arg0, __u64 arg1)
{
	struct audit_ruleset *rs = rules();
	struct scratch *sc = begin(rs, kind);
	struct audit_event *e;
	__u32 len;

	if (!sc)
		return 0;
	e = start_event(sc, kind, syscall, ctx->ret);
	len = file_path(sc, (__u64)fd_file(fd), 0);
	e->arg0 = arg0;
	e->arg1 = arg1;
	return finish_path(sc, rs, len, 0, false);
}

AUDIT_EXIT(unlink, path_event(ctx, AUDIT_UNLINK, AUDIT_SYS_UNLINK, AT_FDCWD, (const char *)ARG0(regs), 0))
AUDIT_EXIT(unlinkat, path_event(ctx, AUDIT_UNLINK, AUDIT_SYS_UNLINKAT, ARG0(regs), (const char *)ARG1(regs), ARG2(regs)))
AUDIT_EXIT(rmdir, path_event(ctx, AUDIT_UNLINK, AUDIT_SYS_RMDIR, AT_FDCWD, (const char *)ARG0(regs), 0))

static __always_inline int rename_event(struct sys_exit_args *ctx, __u32 syscall, long olddfd, const char *oldpath, long newdfd, const char *newpath, __u64 flags)
{
	struct audit_ruleset *rs = rules();
	struct scratch *sc = begin(rs, AUDIT_RENAME);
	struct audit_event *e;
	__u32 len, len2;

	if (!sc)
		return 0;
	e = start_event(sc, AUDIT_RENAME, syscall, ctx->ret);
	len = resolve(sc, olddfd, (__u64)oldpath, 0);
	len2 = resolve(sc, newdfd, (__u64)newpath, 1);
	e->arg0 = flags;
	return finish_path(sc, rs, len, len2, true);
}

AUDIT_EXIT(rename, rename_event(ctx, AUDIT_SYS_RENAME, AT_FDCWD, (const char *)ARG0(regs), AT_FDCWD, (const char *)ARG1(regs), 0))
AUDIT_EXIT(renameat, rename_event(ctx, AUDIT_SYS_RENAMEAT, ARG0(regs), (const char *)ARG1(regs), ARG2(regs), (const char *)ARG3(regs), 0))
AUDIT_EXIT(renameat2, rename_event(ctx, AUDIT_SYS_RENAMEAT2, ARG0(regs), (const char *)ARG1(regs), ARG2(regs), (const char *)ARG3(regs), BPF_CORE_READ(regs, r8)))
AUDIT_EXIT(chmod, path_event(ctx, AUDIT_CHMOD, AUDIT_SYS_CHMOD, AT_FDCWD, (const char *)ARG0(regs), ARG1(regs) & 07777))
AUDIT_EXIT(fchmod, fd_event(ctx, AUDIT_CHMOD, AUDIT_SYS_FCHMOD, (int)ARG0(regs), ARG1(regs) & 07777, 0))
AUDIT_EXIT(fchmodat, path_event(ctx, AUDIT_CHMOD, AUDIT_SYS_FCHMODAT, ARG0(regs), (const char *)ARG1(regs), ARG2(regs) & 07777))
AUDIT_EXIT(fchmodat2, path_event(ctx, AUDIT_CHMOD, AUDIT_SYS_FCHMODAT2, ARG0(regs), (const char *)ARG1(regs), ARG2(regs) & 07777))

static __always_inline int chown_event(struct sys_exit_args *ctx, __u32 syscall, long dfd, const char *upath, __u64 uid, __u64 gid)
{
	struct audit_ruleset *rs = rules();
	struct scratch *sc = begin(rs, AUDIT_CHOWN);
	struct audit_event *e;
	__u32 len;

	if (!sc)
		return 0;
	e = start_event(sc, AUDIT_CHOWN, syscall, ctx->ret);
	len = resolve(sc, dfd, (__u64)upath, 0);
	e->arg0 = (__u32)uid;
	e->arg1 = (__u32)gid;
	return finish_path(sc, rs, len, 0, false);
}

AUDIT_EXIT(chown, chown_event(ctx, AUDIT_SYS_CHOWN, AT_FDCWD, (const char *)ARG0(regs), ARG1(regs), ARG2(regs)))
AUDIT_EXIT(lchown, chown_event(ctx, AUDIT_SYS_LCHOWN, AT_FDCWD, (const char *)ARG0(regs), ARG1(regs), ARG2(regs)))
AUDIT_EXIT(fchownat, chown_event(ctx, AUDIT_SYS_FCHOWNAT, ARG0(regs), (const char *)ARG1(regs), ARG2(regs), ARG3(regs)))
AUDIT_EXIT(fchown, fd_event(ctx, AUDIT_CHOWN, AUDIT_SYS_FCHOWN, (int)ARG0(regs), (__u32)ARG1(regs), (__u32)ARG2(regs)))

/* an open under a sensitive path: every open passes here, so the trie is asked before the event is built */
static __always_inline int open_event(struct sys_exit_args *ctx, __u32 syscall, long dfd, const char *upath, __u64 flags)
{
	struct audit_ruleset *rs = rules();
	struct scratch *sc = begin(rs, AUDIT_OPEN);
	struct audit_event *e;
	__u32 len;

	if (!sc)
		return 0;
	len = resolve(sc, dfd, (__u64)upath, 0);
	bpf_probe_read_kernel(sc->key.path, AUDIT_PATH_LEN, sc->event.path);
	sc->key.prefixlen = len * 8;
	if (!bpf_map_lookup_elem(&sensitive_paths, &sc->key))
		return 0;
	/* the rare sensitive open pays for the event (which starts empty) and a second resolve */
	e = start_event(sc, AUDIT_OPEN, syscall, ctx->ret);
	len = resolve(sc, dfd, (__u64)upath, 0);
	e->arg0 = flags;
	return finish_path(sc, rs, len, 0, false);
}

AUDIT_EXIT(open, open_event(ctx, AUDIT_SYS_OPEN, AT_FDCWD, (const char *)ARG0(regs), (__u32)ARG1(regs)))
AUDIT_EXIT(openat, open_event(ctx, AUDIT_SYS_OPENAT, ARG0(regs), (const char *)ARG1(regs), (__u32)ARG2(regs)))

/* openat2's flags: its struct open_how begins with them */
static __always_inline __u64 open_how_flags(struct pt_regs *regs)
{
	__u64 flags = 0;

	bpf_probe_read_user(&flags, sizeof(flags), (void *)ARG2(regs));
	return flags;
}

AUDIT_EXIT(openat2, open_event(ctx, AUDIT_SYS_OPENAT2, ARG0(regs), (const char *)ARG1(regs), open_how_flags(regs)))

/* a change of ids (or capabilities): the ids asked for in arg0..arg2 */
static __always_inline int setid_event(struct sys_exit_args *ctx, __u32 syscall, __u64 arg0, __u64 arg1, __u64 arg2)
{
	struct audit_ruleset *rs = rules();
	struct scratch *sc = begin(rs, AUDIT_SETID);
	struct audit_event *e;

	if (!sc)
		return 0;
	e = start_event(sc, AUDIT_SETID, syscall, ctx->ret);
	e->arg0 = arg0;
	e->arg1 = arg1;
	e->arg2 = arg2;
	if (!kept(sc, rs, 0, 0, 0))
		return 0;
	submit(sc);
	return 0;
}

AUDIT_EXIT(setuid, setid_event(ctx, AUDIT_SYS_SETUID, (__u32)ARG0(regs), 0, 0))
AUDIT_EXIT(setgid, setid_event(ctx, AUDIT_SYS_SETGID, (__u32)ARG0(regs), 0, 0))
AUDIT_EXIT(setreuid, setid_event(ctx, AUDIT_SYS_SETREUID, (__u32)ARG0(regs), (__u32)ARG1(regs), 0))
AUDIT_EXIT(setregid, setid_event(ctx, AUDIT_SYS_SETREGID, (__u32)ARG0(regs), (__u32)ARG1(regs), 0))
AUDIT_EXIT(setresuid, setid_event(ctx, AUDIT_SYS_SETRESUID, (__u32)ARG0(regs), (__u32)ARG1(regs), (__u32)ARG2(regs)))
AUDIT_EXIT(setresgid, setid_event(ctx, AUDIT_SYS_SETRESGID, (__u32)ARG0(regs), (__u32)ARG1(regs), (__u32)ARG2(regs)))

/* capset: the effective, permitted and inheritable sets asked for, 64 bits each */
static __always_inline int capset_event(struct sys_exit_args *ctx, struct pt_regs *regs)
{
	__u32 data[6] = {};

	bpf_probe_read_user(data, sizeof(data), (void *)ARG1(regs));
	return setid_event(ctx, AUDIT_SYS_CAPSET, data[0] | (__u64)data[3] << 32, data[1] | (__u64)data[4] << 32, data[2] | (__u64)data[5] << 32);
}

AUDIT_EXIT(capset, capset_event(ctx, regs))

/* local and peer address of a socket's sock (or only the local end: peer_too false) */
static __always_inline bool sock_addresses(struct audit_event *e, struct file *file, bool peer_too)
{
	struct socket *sock;
	struct sock *sk;
	__u16 family;

	if (file_type(file) != S_IFSOCK)
		return false;
	sock = (struct socket *)BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(sock, sk);
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return false;
	e->family = family;
	e->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (family == AF_INET)
		bpf_core_read(e->local_addr, 4, &sk->__sk_common.skc_rcv_saddr);
	else
		bpf_core_read(e->local_addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
	if (!peer_too)
		return true;
	e->peer_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET)
		bpf_core_read(e->peer_addr, 4, &sk->__sk_common.skc_daddr);
	else
		bpf_core_read(e->peer_addr, 16, &sk->__sk_common.skc_v6_daddr);
	return true;
}

/* connect on an IPv4 or IPv6 socket: the address asked for, and the local end the kernel chose */
SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct sys_exit_args *ctx)
{
	struct pt_regs *regs = user_regs();
	struct audit_ruleset *rs = rules();
	struct scratch *sc = begin(rs, AUDIT_CONNECT);
	struct audit_event *e;
	__u16 family = 0, port = 0;
	void *addr;

	if (!sc)
		return 0;
	addr = (void *)ARG1(regs);
	bpf_probe_read_user(&family, sizeof(family), addr);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	e = start_event(sc, AUDIT_CONNECT, AUDIT_SYS_CONNECT, ctx->ret);
	sock_addresses(e, fd_file((int)ARG0(regs)), false);
	e->family = family;
	bpf_probe_read_user(&port, sizeof(port), addr + 2);
	e->peer_port = bpf_ntohs(port);
	/* sockaddr_in's address follows the port; sockaddr_in6's the 4-byte flow label */
	if (family == AF_INET)
		bpf_probe_read_user(e->peer_addr, 4, addr + 4);
	else
		bpf_probe_read_user(e->peer_addr, 16, addr + 8);
	if (!kept(sc, rs, 0, 0, 0))
		return 0;
	submit(sc);
	return 0;
}

/* an accepted IPv4 or IPv6 connection, from its new socket; failed accepts (EAGAIN) are not told */
static __always_inline int accept_event(struct sys_exit_args *ctx, __u32 syscall)
{
	struct audit_ruleset *rs = rules();
	struct scratch *sc;
	struct audit_event *e;

	if (ctx->ret < 0)
		return 0;
	sc = begin(rs, AUDIT_ACCEPT);
	if (!sc)
		return 0;
	e = start_event(sc, AUDIT_ACCEPT, syscall, ctx->ret);
	if (!sock_addresses(e, fd_file(ctx->ret), true))
		return 0;
	if (!kept(sc, rs, 0, 0, 0))
		return 0;
	submit(sc);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct sys_exit_args *ctx)
{
	return accept_event(ctx, AUDIT_SYS_ACCEPT);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct sys_exit_args *ctx)
{
	return accept_event(ctx, AUDIT_SYS_ACCEPT4);
}

/* ptrace requests that start tracing (attach, seize, traceme); the peeks and pokes that follow are not told */
SEC("tracepoint/syscalls/sys_exit_ptrace")
int exit_ptrace(struct sys_exit_args *ctx)
{
	struct pt_regs *regs = user_regs();
	long request = ARG0(regs);
	struct audit_ruleset *rs;
	struct scratch *sc;
	struct audit_event *e;

	if (request != PTRACE_ATTACH && request != PTRACE_SEIZE && request != PTRACE_TRACEME)
		return 0;
	rs = rules();
	sc = begin(rs, AUDIT_PTRACE);
	if (!sc)
		return 0;
	e = start_event(sc, AUDIT_PTRACE, AUDIT_SYS_PTRACE, ctx->ret);
	e->arg0 = request;
	e->arg1 = (__u32)ARG1(regs);
	if (!kept(sc, rs, 0, 0, 0))
		return 0;
	submit(sc);
	return 0;
}

/* bpf(BPF_PROG_LOAD): the program's type and name as asked for, and the id it got */
SEC("tracepoint/syscalls/sys_exit_bpf")
int exit_bpf(struct sys_exit_args *ctx)
{
	struct pt_regs *regs = user_regs();
	struct audit_ruleset *rs;
	struct scratch *sc;
	struct audit_event *e;
	struct bpf_prog *prog;
	struct file *file;
	void *attr;
	__u32 type = 0;

	if (ARG0(regs) != BPF_PROG_LOAD_CMD)
		return 0;
	rs = rules();
	sc = begin(rs, AUDIT_BPF);
	if (!sc)
		return 0;
	e = start_event(sc, AUDIT_BPF, AUDIT_SYS_BPF, ctx->ret);
	attr = (void *)ARG1(regs);
	bpf_probe_read_user(&type, sizeof(type), attr);
	e->arg0 = type;
	/* prog_name: 16 bytes at offset 48 of union bpf_attr */
	if (ARG2(regs) >= 64)
		bpf_probe_read_user_str(e->path2, 16, attr + 48);
	if (ctx->ret >= 0) {
		file = fd_file(ctx->ret);
		prog = file ? (struct bpf_prog *)BPF_CORE_READ(file, private_data) : NULL;
		if (prog)
			e->arg1 = BPF_CORE_READ(prog, aux, id);
	}
	if (!kept(sc, rs, 0, 0, 0))
		return 0;
	submit(sc);
	return 0;
}
