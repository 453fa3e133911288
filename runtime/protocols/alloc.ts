/**
 * What the allocations plugin needs to read the `alloc` object: the constants of bpf/lib/alloc.h
 * (checked against the header by test/unit/alloc-constants.test.ts) and its BTF-generated
 * decoder. Pure TypeScript, bundled into plugins.
 */
export { decodeAllocStats, type AllocStats } from '../../bpf/lib/alloc.types.ts'

/** `enum alloc_func`: the index of a function in `calls`. */
export const ALLOC_MALLOC = 0
export const ALLOC_CALLOC = 1
export const ALLOC_REALLOC = 2
export const ALLOC_FREE = 3
export const ALLOC_FUNCS = 4

/** `enum alloc_overflow`: indexes of the `overflows` map, what a full map could not store. */
export const ALLOC_OVERFLOW_BLOCKS = 0
export const ALLOC_OVERFLOW_PROCESSES = 1
export const ALLOC_OVERFLOW_IN_FLIGHT = 2
export const ALLOC_OVERFLOWS = 3
