/**
 * What the offcpu-profile plugin needs to configure the `offcpu` object: the constants of
 * bpf/lib/offcpu.h (checked against the header by test/unit/offcpu-constants.test.ts) and its
 * BTF-generated options codec. Pure TypeScript, bundled into plugins.
 */
export { encodeOffcpuOptions, OFFCPU_OPTIONS_SIZE } from '../../bpf/lib/offcpu.types.ts'

/** `enum offcpu_observe`: whom `options.observe` watches. */
export const OFFCPU_OBSERVE_NONE = 0
export const OFFCPU_OBSERVE_TARGETS = 1
export const OFFCPU_OBSERVE_ALL = 2

/** `enum offcpu_overflow`: indexes of the `overflows` map, long blocks the kernel could not send. */
export const OFFCPU_OVERFLOW_THREADS = 0
export const OFFCPU_OVERFLOW_SCHEDULE = 1
export const OFFCPU_OVERFLOW_UNSEEN_END = 2
export const OFFCPU_OVERFLOWS = 3
