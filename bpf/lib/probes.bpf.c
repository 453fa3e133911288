// SPDX-License-Identifier: GPL-2.0
/*
 * Attach tests for the feature probes: runtime/bpf/features.ts loads one program at a time
 * (autoload off for the rest) and tries to attach it, because a kernel may build a program
 * type yet refuse to load or attach it (kprobes compiled out, fentry refused by policy).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("kprobe/do_unlinkat")
int probe_kprobe(void *ctx)
{
	return 0;
}

SEC("fentry/do_unlinkat")
int BPF_PROG(probe_fentry)
{
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(probe_tp_btf)
{
	return 0;
}

SEC("raw_tp/sched_process_fork")
int probe_raw_tp(void *ctx)
{
	return 0;
}

SEC("tracepoint/sched/sched_process_fork")
int probe_tracepoint(void *ctx)
{
	return 0;
}

SEC("uprobe")
int probe_uprobe(void *ctx)
{
	return 0;
}

/* loaded with expected attach type BPF_TRACE_UPROBE_MULTI, which libbpf 1.1 has no section for */
SEC("uprobe")
int probe_uprobe_multi(void *ctx)
{
	return 0;
}

SEC("perf_event")
int probe_perf_event(void *ctx)
{
	return 0;
}

SEC("cgroup_skb/ingress")
int probe_cgroup_skb(void *ctx)
{
	return 1;
}

SEC("tc")
int probe_tc(void *ctx)
{
	return 0;
}
