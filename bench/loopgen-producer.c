// SPDX-License-Identifier: Apache-2.0
/*
 * The producer of the ring buffer throughput benchmark (ringbuf-throughput.bench.ts): runs
 * loopgen's `generate` program by id, pinned to one CPU. It is a separate process so that the
 * producer's CPU time never counts against the consumer under test, and a long-lived one,
 * driven over stdin, so that the benchmark never forks during a measurement (a fork makes the
 * consumer's memory copy-on-write, and its next writes fault).
 *
 *   loopgen-producer <prog-id> <cpu>
 *   stdin, one request a line:  <records-per-run> <duration-ms>
 *   stdout, one answer a line:  {"attempted":N,"startNs":T,"endNs":T}
 * A request runs `generate` back to back for duration-ms (at least once).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/types.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "../bpf/lib/loopgen.h"

static __u64 monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct loopgen_args args = { 0 };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));
	unsigned long long duration_ms;
	__u64 start, deadline, end, runs;
	cpu_set_t cpus;
	int prog_fd;

	if (argc != 3) {
		fprintf(stderr, "usage: %s <prog-id> <cpu>\n", argv[0]);
		return 2;
	}
	CPU_ZERO(&cpus);
	CPU_SET(atoi(argv[2]), &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus) != 0)
		fprintf(stderr, "loopgen-producer: cannot pin to CPU %s: %s; running unpinned\n", argv[2], strerror(errno));
	prog_fd = bpf_prog_get_fd_by_id(atoi(argv[1]));
	if (prog_fd < 0) {
		fprintf(stderr, "loopgen-producer: open program id %s: %s\n", argv[1], strerror(errno));
		return 1;
	}

	while (scanf("%u %llu", &args.count, &duration_ms) == 2) {
		runs = 0;
		start = monotonic_ns();
		deadline = start + duration_ms * 1000000ull;
		do {
			if (bpf_prog_test_run_opts(prog_fd, &opts) != 0) {
				fprintf(stderr, "loopgen-producer: test run: %s\n", strerror(errno));
				return 1;
			}
			runs++;
		} while (monotonic_ns() < deadline);
		end = monotonic_ns();
		printf("{\"attempted\":%llu,\"startNs\":%llu,\"endNs\":%llu}\n",
		       (unsigned long long)(runs * args.count), (unsigned long long)start, (unsigned long long)end);
		fflush(stdout);
	}
	close(prog_fd);
	return 0;
}
