/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A file's absolute path, walked from its dentry up to the global root by probe reads. Since
 * Linux 6.18.44 (at least) the verifier marks vma->vm_file and mm->exe_file untrusted, and
 * bpf_d_path takes only trusted paths, so the iterators that print a mapped library's or an
 * executable's path walk it themselves, as the libraries ring always did.
 */
#ifndef PERISCOPE_FILE_PATH_H
#define PERISCOPE_FILE_PATH_H

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

/* the longest path written, with its NUL; a power of two, for the masks below */
#define FILE_PATH_LEN 256
/* path components followed up to the root */
#define FILE_PATH_DEPTH 16
#define FILE_PATH_NAME_MAX 255

/* room for one walk: the path is built right to left in walk, then copied to path */
struct file_path_buffer {
	__u8 walk[2 * FILE_PATH_LEN];
	char path[FILE_PATH_LEN];
};

/* per-CPU room for walked_path() */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct file_path_buffer);
} path_buffer SEC(".maps");

/*
 * The file's path from the global root, crossing mount points, into out (FILE_PATH_LEN bytes,
 * NUL-terminated), built in walk (2 * FILE_PATH_LEN bytes); false when it is deeper or longer.
 */
static __always_inline bool file_path(struct file *file, char *out, __u8 *walk)
{
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry), *parent;
	struct vfsmount *vfsmnt = BPF_CORE_READ(file, f_path.mnt);
	struct mount *mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt), *up;
	const unsigned char *name;
	int pos = FILE_PATH_LEN, i;
	__u32 len, at;

	for (i = 0; i < FILE_PATH_DEPTH; i++) {
		if (dentry == BPF_CORE_READ(vfsmnt, mnt_root)) {
			up = BPF_CORE_READ(mnt, mnt_parent);
			/* the root of the mount tree */
			if (up == mnt)
				break;
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = up;
			vfsmnt = (void *)up + bpf_core_field_offset(struct mount, mnt);
			continue;
		}
		parent = BPF_CORE_READ(dentry, d_parent);
		/* the root of a file system mounted nowhere we came from */
		if (dentry == parent)
			break;
		len = BPF_CORE_READ(dentry, d_name.len);
		name = BPF_CORE_READ(dentry, d_name.name);
		if (len > FILE_PATH_NAME_MAX)
			return false;
		pos -= len + 1;
		if (pos < 0)
			return false;
		at = pos & (FILE_PATH_LEN - 1);
		walk[at] = '/';
		bpf_probe_read_kernel(walk + at + 1, len, name);
		dentry = parent;
	}
	if (i == FILE_PATH_DEPTH || pos == FILE_PATH_LEN)
		return false;
	len = FILE_PATH_LEN - pos;
	if (len > FILE_PATH_LEN - 1)
		return false;
	bpf_probe_read_kernel(out, len, walk + (pos & (FILE_PATH_LEN - 1)));
	out[len] = 0;
	return true;
}

/* the file's path in this CPU's path_buffer (valid until the next walk on this CPU), or NULL */
static __always_inline const char *walked_path(struct file *file)
{
	__u32 zero = 0;
	struct file_path_buffer *buffer = bpf_map_lookup_elem(&path_buffer, &zero);

	if (!buffer || !file_path(file, buffer->path, buffer->walk))
		return NULL;
	return buffer->path;
}

#endif
