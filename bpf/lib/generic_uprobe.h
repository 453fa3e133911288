/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef GENERIC_UPROBE_H
#define GENERIC_UPROBE_H

/* how many uprobes and uretprobes one object serves at once (one config slot each) */
#define GENERIC_UPROBE_MAX_PROBES 512
/* the argument registers recorded: arg0..arg5, x86-64's integer argument registers */
#define GENERIC_UPROBE_ARGS 6

/* per-probe settings, selected by the attach cookie (the slot index) */
struct generic_uprobe_config {
	/* 0 for every process, else only this tgid */
	__u32 tgid;
	/* never this tgid (the tracer's own process); 0 for none */
	__u32 exclude_tgid;
	/* EVENT_STACK_KERNEL and EVENT_STACK_USER (bpf/include/event_stacks.h): the stacks to append
	 * to each record (bpftrace's kstack and ustack); 0 for none */
	__u32 stacks;
};

struct generic_uprobe_record {
	addr64 cookie;
	__u64 timestamp_ns;
	__u32 pid;
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u32 cpu;
	__u32 pad;
	char comm[16];
	/* the argument registers at a uprobe; zero at a uretprobe */
	addr64 args[GENERIC_UPROBE_ARGS];
	/* the return value register at a uretprobe; zero at a uprobe */
	addr64 retval;
	/* when the slot asks for stacks, a struct stack_sample (bpf/lib/stacks.h) up to the record's end */
	__u8 stacks[];
};

#endif
