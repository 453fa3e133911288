/**
 * The C workload of known allocations (test/e2e/fixtures/alloc-workload.c), built with the system
 * cc, and what each of its steps leaves in the counts. Shared by the alloc object's test and the
 * allocations plugin's.
 */
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../', import.meta.url))

/** Builds the workload into `dir`; the caller removes `dir`. */
export function buildAllocWorkload(dir: string): string {
  const binary = join(dir, 'alloc-workload')
  // -O0 -fno-builtin: the compiler may drop a malloc whose block is never used
  execFileSync('cc', ['-O0', '-fno-builtin', '-Wall', '-Werror', '-Wl,-z,now', '-o', binary, join(root, 'test/e2e/fixtures/alloc-workload.c')])
  return binary
}

/** Counts after step 1: calls by function (malloc, calloc, realloc, free) and bytes. */
export const afterStep1 = {
  calls: [5, 1, 4, 1],
  failures: 1,
  // malloc 100 + 2000 + 64 + 1 MiB, calloc 10 * 30, realloc 1000 + 50 + 2 MiB
  allocated: 100 + 2000 + 300 + 1000 + 50 + 64 + (1 << 20) + (2 << 20),
  // realloc moved a (100), shrank g to nothing (64) and moved h (1 MiB); free(b) (2000)
  freed: 100 + 64 + (1 << 20) + 2000,
  unknownFrees: 0,
}
/** Bytes in use after step 1: c, d, e and h. */
export const inUseAfterStep1 = 300 + 1000 + 50 + (2 << 20)
/** After step 2 everything is freed, and the block from before the probes is an unknown free. */
export const afterStep2 = { ...afterStep1, calls: [5, 1, 4, 6], freed: afterStep1.allocated, unknownFrees: 1 }
