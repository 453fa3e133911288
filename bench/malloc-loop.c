/*
 * malloc and free on demand (bench/offcpu-alloc-overhead.bench.ts), on CPU 0: for each line
 * "<calls>" on stdin, that many malloc(64) + free pairs; prints the ns per pair.
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
		struct timespec t0, t1;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (long i = 0; i < calls; i++) {
			last = malloc(64);
			free(last);
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("%.1f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / calls);
		fflush(stdout);
	}
	return 0;
}
