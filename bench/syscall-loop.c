// SPDX-License-Identifier: Apache-2.0
/*
 * The workload of the syscall overhead benchmark (syscall-overhead.bench.ts): tight loops of one
 * system call, timed here, so that nothing but the calls is measured. Periscope's BPF programs run
 * inside these calls, in this process, so their cost shows in the time per call. A long-lived
 * process driven over stdin: the benchmark never forks or execs during a measurement (an exec is
 * an event for Periscope's process plugins).
 *
 *   syscall-loop <read-bytes>
 *   stdin, one request a line:  read <calls>   |   write <calls>   |   getpid <calls>   |   getppid <calls>
 *   stdout, one answer a line:  {"wallNs":N,"cpuNs":N}
 * `read` reads <read-bytes> from /dev/zero per call, `write` writes as many to /dev/null;
 * `getpid` and `getppid` call the system call itself (syscall(2)), never a cached value. cpuNs is
 * this process's CPU time over the loop.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long clock_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: syscall-loop <read-bytes>\n");
		return 2;
	}
	size_t bytes = strtoul(argv[1], NULL, 10);
	char *buffer = calloc(1, bytes > 0 ? bytes : 1);
	int zero = open("/dev/zero", O_RDONLY), null = open("/dev/null", O_WRONLY);
	if (zero < 0 || null < 0 || buffer == NULL) {
		perror("syscall-loop: open /dev/zero and /dev/null");
		return 1;
	}
	char line[128], call[32];
	long calls;
	while (fgets(line, sizeof line, stdin) != NULL) {
		if (sscanf(line, "%31s %ld", call, &calls) != 2 || calls <= 0) {
			fprintf(stderr, "syscall-loop: bad request: %s", line);
			return 2;
		}
		int is_read = strcmp(call, "read") == 0, is_write = strcmp(call, "write") == 0;
		long nr = strcmp(call, "getpid") == 0 ? SYS_getpid : strcmp(call, "getppid") == 0 ? SYS_getppid : -1;
		if (!is_read && !is_write && nr < 0) {
			fprintf(stderr, "syscall-loop: unknown call %s (read, write, getpid or getppid)\n", call);
			return 2;
		}
		long long wall = clock_ns(CLOCK_MONOTONIC), cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
		if (is_read) {
			for (long i = 0; i < calls; i++) {
				if (read(zero, buffer, bytes) != (ssize_t)bytes) {
					perror("syscall-loop: read /dev/zero");
					return 1;
				}
			}
		} else if (is_write) {
			for (long i = 0; i < calls; i++) {
				if (write(null, buffer, bytes) != (ssize_t)bytes) {
					perror("syscall-loop: write /dev/null");
					return 1;
				}
			}
		} else {
			for (long i = 0; i < calls; i++) syscall(nr);
		}
		cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu;
		wall = clock_ns(CLOCK_MONOTONIC) - wall;
		printf("{\"wallNs\":%lld,\"cpuNs\":%lld}\n", wall, cpu);
		fflush(stdout);
	}
	return 0;
}
