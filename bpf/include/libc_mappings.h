/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The `libc_mappings` task_vma iterator of the objects that put uprobes on a process's libc
 * (alloc, alloc_stacks): user space runs it for a pid (ctx.iterate) to learn which file to
 * attach to. Include it in one object file: it defines the program (and file_path.h its path buffer).
 */
#ifndef PERISCOPE_LIBC_MAPPINGS_H
#define PERISCOPE_LIBC_MAPPINGS_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "file_path.h"

/* include/linux/mm.h */
#define LIBC_MAPPINGS_VM_EXEC 0x00000004

/* "<path>\n" for each file a process maps executable whose name starts with "libc.so" or "libc-" */
SEC("iter/task_vma")
int libc_mappings(struct bpf_iter__task_vma *ctx)
{
	struct vm_area_struct *vma = ctx->vma;
	struct file *file;
	const unsigned char *name;
	char prefix[6] = {};
	const char *path;

	if (!vma || !ctx->task || !(vma->vm_flags & LIBC_MAPPINGS_VM_EXEC))
		return 0;
	file = vma->vm_file;
	if (!file)
		return 0;
	name = file->f_path.dentry->d_name.name;
	bpf_probe_read_kernel(prefix, sizeof(prefix) - 1, name);
	if (prefix[0] != 'l' || prefix[1] != 'i' || prefix[2] != 'b' || prefix[3] != 'c' || (prefix[4] != '.' && prefix[4] != '-'))
		return 0;
	path = walked_path(file);
	if (!path)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%s\n", path);
	return 0;
}

#endif
