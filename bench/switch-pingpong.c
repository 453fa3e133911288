/*
 * Context switches on demand (bench/offcpu-alloc-overhead.bench.ts): two threads pinned to CPU 0
 * hand a byte back and forth over two pipes, so that each hand-over blocks one thread and wakes
 * the other. For each line "<rounds>" on stdin it prints "<wall ns per round> <CPU ns per round>
 * <context switches per round>": the CPU time of both threads, which the programs run on their
 * switches are charged to, whatever else the machine runs meanwhile.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

static int there[2], back[2];

static void pin(void)
{
	cpu_set_t cpus;

	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
}

static void *echo(void *unused)
{
	char c;

	pin();
	while (read(there[0], &c, 1) == 1 && write(back[1], &c, 1) == 1)
		;
	return NULL;
}

static long switches(void)
{
	struct rusage usage;

	getrusage(RUSAGE_SELF, &usage);
	return usage.ru_nvcsw + usage.ru_nivcsw;
}

int main(void)
{
	pthread_t thread;
	long rounds;
	char c = 0;

	if (pipe(there) || pipe(back) || pthread_create(&thread, NULL, echo, NULL))
		return 1;
	pin();
	while (scanf("%ld", &rounds) == 1) {
		struct timespec t0, t1, c0, c1;
		long before = switches();

		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (long i = 0; i < rounds; i++)
			if (write(there[1], &c, 1) != 1 || read(back[0], &c, 1) != 1)
				return 1;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
		printf("%.1f %.1f %.3f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / rounds,
		       ((c1.tv_sec - c0.tv_sec) * 1e9 + (c1.tv_nsec - c0.tv_nsec)) / rounds,
		       (double)(switches() - before) / rounds);
		fflush(stdout);
	}
	return 0;
}
