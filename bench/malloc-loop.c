/*
 * malloc and free on demand (bench/offcpu-alloc-overhead.bench.ts), on CPU 0: for each line
 * "<calls>" on stdin, that many malloc(64) + free pairs; prints the wall and CPU ns per pair (the
 * uprobes' traps and programs are charged to the process's CPU time).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* where each block goes before its free, so the compiler keeps the pair */
void *volatile last;

int main(void)
{
	cpu_set_t cpus;
	long calls;

	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
	while (scanf("%ld", &calls) == 1) {
		struct timespec t0, t1, c0, c1;

		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (long i = 0; i < calls; i++) {
			last = malloc(64);
			free(last);
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
		printf("%.1f %.1f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / calls,
		       ((c1.tv_sec - c0.tv_sec) * 1e9 + (c1.tv_nsec - c0.tv_nsec)) / calls);
		fflush(stdout);
	}
	return 0;
}
