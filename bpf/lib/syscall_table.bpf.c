// SPDX-License-Identifier: GPL-2.0
/*
 * The syscall table of the running kernel, read from the kernel itself (runtime/kernel/
 * syscall-table.ts runs it once). Every SYSCALL_DEFINE leaves a struct syscall_metadata (name,
 * argument types and names) to which ftrace wrote, at boot, the number under which
 * sys_call_table holds that syscall, and each syscalls:sys_enter_* trace event points to its
 * metadata (`data`). Neither sys_call_table nor the lists of trace events are in /proc/kallsyms
 * without CONFIG_KALLSYMS_ALL (and the section that lists the metadata is init data, freed after
 * boot), so the way in is a file: the host opens the `enable` file of one sys_enter_* event in
 * tracefs, whose inode holds the event's trace_event_file, and this task_file iterator, run over
 * the host's own process, finds that file by its descriptor and walks from it the list of every
 * event's trace_event_file. The list is walked without the kernel's event_mutex: an event added
 * or removed meanwhile (a module loading) may cut the walk short, never fault it.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "periscope.h"
#include "syscall_table.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SYSCALL_TABLE_SIZE);
	__type(key, __u32);
	__type(value, struct syscall_entry);
} syscalls SEC(".maps");

/* the descriptor of the sys_enter_* `enable` file the host opened */
const volatile __s32 event_fd = -1;

/* trace events walked, and syscall events whose number is outside the table */
__u32 walked = 0;
__u32 outside = 0;

/* the walk's bound: a kernel has ~2,500 trace events, modules add some */
#define MAX_EVENTS 65536

struct walk {
	struct list_head *first;
	struct list_head *at;
	struct trace_event_class *syscall_class;
};

static __always_inline void copy_metadata(struct syscall_metadata *meta)
{
	struct syscall_entry *entry;
	const char **types, **names;
	const char *text;
	__u32 nr, count;

	nr = (__u32)BPF_CORE_READ(meta, syscall_nr);
	entry = bpf_map_lookup_elem(&syscalls, &nr);
	if (!entry) {
		outside++;
		return;
	}
	bpf_probe_read_kernel_str(entry->name, sizeof(entry->name), BPF_CORE_READ(meta, name));
	count = (__u32)BPF_CORE_READ(meta, nb_args);
	entry->arg_count = count;
	types = BPF_CORE_READ(meta, types);
	names = BPF_CORE_READ(meta, args);
	for (int i = 0; i < SYSCALL_MAX_ARGS; i++) {
		if (i >= count)
			break;
		if (!bpf_probe_read_kernel(&text, sizeof(text), &types[i]))
			bpf_probe_read_kernel_str(entry->arg_types[i], sizeof(entry->arg_types[i]), text);
		if (!bpf_probe_read_kernel(&text, sizeof(text), &names[i]))
			bpf_probe_read_kernel_str(entry->arg_names[i], sizeof(entry->arg_names[i]), text);
	}
}

/* one step of the walk: the next event on the list, copied when it is a syscall entry event */
static long visit_event(__u64 index, struct walk *walk)
{
	struct list_head *at = walk->at;
	struct list_head *next = BPF_CORE_READ(at, next);
	struct trace_event_file *event;
	struct trace_event_call *call;

	if (!next || next == walk->first)
		return 1;
	walk->at = next;
	walked++;
	/* the list's head is no event: what lies where its class would be is never the syscall class */
	event = container_of(next, struct trace_event_file, list);
	call = BPF_CORE_READ(event, event_call);
	if (call && BPF_CORE_READ(call, class) == walk->syscall_class)
		copy_metadata(BPF_CORE_READ(call, data));
	return 0;
}

SEC("iter/task_file")
int read_syscall_table(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct trace_event_file *event;
	struct trace_event_call *call;
	struct walk walk = {};

	if (!file || ctx->fd != event_fd)
		return 0;
	/* an enable file's inode holds its event's trace_event_file */
	event = BPF_CORE_READ(file, f_inode, i_private);
	call = BPF_CORE_READ(event, event_call);
	if (!event || !call)
		return 0;
	walk.syscall_class = BPF_CORE_READ(call, class);
	walk.first = &event->list;
	walk.at = walk.first;
	copy_metadata(BPF_CORE_READ(call, data));
	bpf_loop(MAX_EVENTS, visit_event, &walk, 0);
	BPF_SEQ_PRINTF(ctx->meta->seq, "events %u outside %u\n", walked, outside);
	return 0;
}
