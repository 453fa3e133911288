// SPDX-License-Identifier: GPL-2.0
/*
 * syscall-overhead.bench.ts: a program that does nothing, on a system call nothing else on the host
 * makes often (getppid), to measure what a syscall tracepoint costs by itself and what the
 * kernel's BPF stats add to each program run.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	return 0;
}
