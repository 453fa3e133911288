/**
 * What the file-io plugin needs to read the `fileio` object: the constants of bpf/lib/fileio.h
 * (checked against the header by test/unit/fileio-constants.test.ts), its BTF-generated codecs,
 * and the latency histogram's boundaries. Pure TypeScript, bundled into plugins.
 */
export { decodeFileioCounts, decodeFileioProcess, encodeFileioPath, type FileioCounts, type FileioProcess } from '../../bpf/lib/fileio.types.ts'

/** `enum fileio_op`: the index of a call's kind in the counts' arrays. */
export const FILEIO_READ = 0
export const FILEIO_WRITE = 1
export const FILEIO_FSYNC = 2
export const FILEIO_FDATASYNC = 3
export const FILEIO_OPS = 4

/** `enum fileio_overflow`: indexes of the `overflows` map, what a full map (or a long path) could not store. */
export const FILEIO_OVERFLOW_IN_FLIGHT = 0
export const FILEIO_OVERFLOW_PROCESSES = 1
export const FILEIO_OVERFLOW_TARGET_INODES = 2
export const FILEIO_OVERFLOW_PATH = 3
export const FILEIO_OVERFLOWS = 4

/** Files that can be named for per-file counts, and the bytes of a path with its NUL. */
export const FILEIO_MAX_TARGETS = 64
export const FILEIO_PATH_LEN = 256

/** Latency buckets per op: log2 buckets of microseconds. */
export const FILEIO_LATENCY_BUCKETS = 24

/**
 * The latency histogram's boundaries in seconds, 2^0 .. 2^22 µs: bucket 0 is (-inf, 1 µs], bucket
 * k is (2^(k-1), 2^k] µs, the last everything above 2^22 µs (4.2 s). The kernel buckets exactly so
 * (by nanoseconds rounded up to whole microseconds).
 */
export const fileioLatencyBoundaries: readonly number[] = Array.from({ length: FILEIO_LATENCY_BUCKETS - 1 }, (_, k) => 2 ** k / 1e6)
