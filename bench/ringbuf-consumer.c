// SPDX-License-Identifier: Apache-2.0
/*
 * The C baseline of the ring buffer throughput benchmark (ringbuf-throughput.bench.ts): a plain
 * libbpf consumer of loopgen's ring, opened by map id, doing the same per-record work as the JS
 * consumer (read seq, check that it follows the previous one). It prints {"ready":true} once the
 * map is open, then waits for stdin, so the benchmark can start it (a fork) before measuring;
 * it subscribes to the ring on the first line:
 *   live:    ring_buffer__poll until SIGUSR1, then consume what is left;
 *   backlog: one ring_buffer__consume per line (the ring was filled meanwhile), each answered
 *            with {"events","wallNs"}, until stdin closes. A "warm" line is consumed untimed
 *            (it warms this process as the JS consumer's first drain warms it); only the consume
 *            calls of "drain" lines count in cpuNs.
 * At the end it prints {"events","gaps","cpuNs","lastEventNs"} as one JSON line; events counts
 * the warm-up records too.
 *
 *   ringbuf-consumer <map-id> <cpu> live|backlog
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/types.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "../bpf/lib/loopgen.h"

struct tally {
	__u64 events;
	__u64 gaps;
	__u64 next_seq;
	__u64 last_event_ns;
};

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

static __u64 clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct tally *tally = ctx;
	const struct loopgen_event *e = data;

	(void)size;
	/* the first record of a run sets the expected sequence */
	if (tally->events != 0 && e->seq != tally->next_seq)
		tally->gaps++;
	tally->next_seq = e->seq + 1;
	tally->events++;
	return 0;
}

/* polls until SIGUSR1; returns the CPU time spent */
static __u64 consume_live(struct ring_buffer *rb, struct tally *tally)
{
	struct sigaction stop = { .sa_handler = on_stop };
	__u64 start, events_before;
	int n;

	/* no SA_RESTART: the signal must end a blocked epoll_wait */
	sigaction(SIGUSR1, &stop, NULL);
	start = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	while (!stopping) {
		events_before = tally->events;
		n = ring_buffer__poll(rb, 1000);
		if (n < 0 && n != -EINTR) {
			fprintf(stderr, "ringbuf-consumer: ring_buffer__poll: %s\n", strerror(-n));
			exit(1);
		}
		if (tally->events != events_before)
			tally->last_event_ns = clock_ns(CLOCK_MONOTONIC);
	}
	/* what the producer wrote before it finished and the stop signal came */
	events_before = tally->events;
	ring_buffer__consume(rb);
	if (tally->events != events_before)
		tally->last_event_ns = clock_ns(CLOCK_MONOTONIC);
	return clock_ns(CLOCK_PROCESS_CPUTIME_ID) - start;
}

/* one consume for the line already read and one per further line; returns the CPU time of the
 * "drain" ones */
static __u64 consume_backlog(struct ring_buffer *rb, struct tally *tally, char *line, size_t size)
{
	__u64 spent = 0, start, wall_start;

	do {
		wall_start = clock_ns(CLOCK_MONOTONIC);
		start = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
		ring_buffer__consume(rb);
		if (strncmp(line, "warm", 4) != 0)
			spent += clock_ns(CLOCK_PROCESS_CPUTIME_ID) - start;
		tally->last_event_ns = clock_ns(CLOCK_MONOTONIC);
		printf("{\"events\":%llu,\"wallNs\":%llu}\n", (unsigned long long)tally->events,
		       (unsigned long long)(tally->last_event_ns - wall_start));
		fflush(stdout);
	} while (fgets(line, size, stdin));
	return spent;
}

int main(int argc, char **argv)
{
	struct tally tally = { 0 };
	struct ring_buffer *rb;
	char line[64];
	cpu_set_t cpus;
	__u64 spent;
	int map_fd;

	if (argc != 4 || (strcmp(argv[3], "live") != 0 && strcmp(argv[3], "backlog") != 0)) {
		fprintf(stderr, "usage: %s <map-id> <cpu> live|backlog\n", argv[0]);
		return 2;
	}
	CPU_ZERO(&cpus);
	CPU_SET(atoi(argv[2]), &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus) != 0)
		fprintf(stderr, "ringbuf-consumer: cannot pin to CPU %s: %s; running unpinned\n", argv[2], strerror(errno));

	map_fd = bpf_map_get_fd_by_id(atoi(argv[1]));
	if (map_fd < 0) {
		fprintf(stderr, "ringbuf-consumer: open map id %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	printf("{\"ready\":true}\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 0;
	rb = ring_buffer__new(map_fd, on_record, &tally, NULL);
	if (!rb) {
		fprintf(stderr, "ringbuf-consumer: ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}

	spent = strcmp(argv[3], "live") == 0 ? consume_live(rb, &tally) : consume_backlog(rb, &tally, line, sizeof(line));

	printf("{\"events\":%llu,\"gaps\":%llu,\"cpuNs\":%llu,\"lastEventNs\":%llu}\n",
	       (unsigned long long)tally.events, (unsigned long long)tally.gaps,
	       (unsigned long long)spent, (unsigned long long)tally.last_event_ns);
	ring_buffer__free(rb);
	close(map_fd);
	return 0;
}
