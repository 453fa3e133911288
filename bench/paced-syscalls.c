// SPDX-License-Identifier: Apache-2.0
/*
 * The load of the one-liner benchmark (repl-oneliner.bench.ts): getppid() at a set rate, so a
 * tracer counting system calls sees a known number of events at a known rate. Waits for a line
 * on stdin (the tracers attach first), then, every millisecond or so, makes the calls due by
 * then (rate x time since the start) for <milliseconds>, and prints how many calls it made and
 * how long that took. When the calls cannot keep the pace (a tracer slowing each call), it makes
 * fewer than asked: the rate it reached is calls / wall time.
 *
 *   paced-syscalls <calls-per-second> <milliseconds>
 *   stdout: {"calls":N,"wallNs":N}
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: paced-syscalls <calls-per-second> <milliseconds>\n");
		return 2;
	}
	long rate = strtol(argv[1], NULL, 10), milliseconds = strtol(argv[2], NULL, 10);
	char line[16];
	if (!fgets(line, sizeof line, stdin))
		return 1;
	long long start = now_ns(), end = start + milliseconds * 1000000LL, now;
	long calls = 0;
	while ((now = now_ns()) < end) {
		/* catch up with the calls due by now, then sleep a millisecond */
		long due = (long)((double)rate * (now - start) / 1e9);
		for (; calls < due && ((calls & 1023) || now_ns() < end); calls++)
			syscall(SYS_getppid);
		struct timespec ms = { 0, 1000000 };
		nanosleep(&ms, NULL);
	}
	printf("{\"calls\":%ld,\"wallNs\":%lld}\n", calls, now_ns() - start);
	return 0;
}
