/**
 * What the processes plugin needs to read the `sched` object: the constants of bpf/lib/sched.h
 * (checked against the header by test/unit/sched-constants.test.ts), its BTF-generated decoders,
 * and the run-queue histogram's boundaries. Pure TypeScript, bundled into plugins.
 */
export { decodeProcStats, decodeRunqHist, type ProcStats, type SchedEvent } from '../../bpf/lib/sched.types.ts'

/** `kind` of sched:events */
export const SCHED_EVENT_START = 1
export const SCHED_EVENT_EXIT = 2
export const SCHED_EVENT_OOM_KILL = 3

/** Indexes of the `overflow` map: what a full map could not store. */
export const OVERFLOW_PROC_STATS = 0
export const OVERFLOW_RUNNABLE_SINCE = 1
export const OVERFLOW_THREAD_FAULTS = 2
export const OVERFLOW_EXIT_REPORTED = 3
export const OVERFLOW_KINDS = 4

/** Slots of `struct runq_hist`: log2 buckets of microseconds. */
export const RUNQ_SLOTS = 27

/**
 * The histogram's boundaries in seconds, 2^0 .. 2^25 µs: slot 0 is (-inf, 1 µs], slot k is
 * (2^(k-1), 2^k] µs, the last slot everything above 2^25 µs. The kernel's buckets are half-open
 * the other way ([2^(k-1), 2^k) µs, in whole µs), which moves only waits of exactly 2^k µs.
 */
export const runqBoundaries: readonly number[] = Array.from({ length: RUNQ_SLOTS - 1 }, (_, k) => 2 ** k / 1e6)
