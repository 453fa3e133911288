// SPDX-License-Identifier: GPL-2.0
/*
 * A CPU-bound load for the profiler benchmark: spins for the given seconds in a call chain a few
 * frames deep (so stacks have something to unwind), then prints the iterations it managed. Its
 * rate against a run without a profiler is what sampling cost the load itself.
 *
 *   busy-loop SECONDS
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t done;
static volatile uint64_t sink;

static void stop(int sig) { (void)sig; done = 1; }

__attribute__((noinline)) static uint64_t mix(uint64_t x) {
	for (int i = 0; i < 1000; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	return x;
}

__attribute__((noinline)) static uint64_t step(uint64_t x) { return mix(x) ^ mix(x + 1); }

__attribute__((noinline)) static uint64_t spin(void) {
	uint64_t iterations = 0, x = 1;
	while (!done) {
		x = step(x);
		iterations++;
	}
	sink = x;
	return iterations;
}

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: busy-loop SECONDS\n");
		return 2;
	}
	signal(SIGALRM, stop);
	alarm((unsigned)atoi(argv[1]));
	printf("%llu\n", (unsigned long long)spin());
	return 0;
}
