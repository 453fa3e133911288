/**
 * What the alloc-profile plugin needs to read the `alloc_stacks` object: the constants of
 * bpf/lib/alloc_stacks.h (checked against the header by test/unit/alloc-stacks-constants.test.ts).
 * Pure TypeScript, bundled into plugins.
 */

/** `enum alloc_stacks_overflow`: indexes of the `overflows` map, what a bounded map could not store. */
export const ALLOC_STACKS_OVERFLOW_LIVE = 0
export const ALLOC_STACKS_OVERFLOW_IN_FLIGHT = 1
export const ALLOC_STACKS_OVERFLOWS = 2
