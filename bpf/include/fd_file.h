/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The open file behind an fd of the current task, and its type, by loads through BTF (a fault
 * reads as 0) rather than helper calls: objects run this on every read and write of every fd, and
 * return early on the fds they do not follow.
 */
#ifndef PERISCOPE_FD_FILE_H
#define PERISCOPE_FD_FILE_H

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

/* include/uapi/linux/stat.h */
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define S_IFDIR 0040000

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

/* the open file behind the current task's fd, or NULL; fd is an int, as the syscalls take it */
static __always_inline struct file *fd_file(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct files_struct *files = task->files;
	struct fdtable *fdt;
	struct rb_node *slot;

	if (!files)
		return NULL;
	fdt = files->fdt;
	if ((unsigned int)fd >= fdt->max_fds)
		return NULL;
	/*
	 * the array's slot is read as an rb_node, whose first member is an unsigned long: a BTF load
	 * that gives the file's address as a number, which global functions take as an argument
	 */
	slot = bpf_rdonly_cast(&fdt->fd[(unsigned int)fd], bpf_core_type_id_kernel(struct rb_node));
	return (struct file *)slot->__rb_parent_color;
}

/* the file's type: its inode's S_IFMT bits (0 for NULL) */
static __always_inline __u32 file_type(struct file *file)
{
	struct file *typed = bpf_rdonly_cast(file, bpf_core_type_id_kernel(struct file));

	return typed->f_inode->i_mode & S_IFMT;
}

#endif
