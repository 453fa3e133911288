/**
 * Gives the runtime's free memory back to the kernel: once start-up is over, then every 10 s.
 *
 * - Dead buffers first. Record batches and export payloads are buffers outside V8's heap, and
 *   those that lived through two young collections (a batch waits in a plugin's queue) are freed
 *   only by a full collection, which V8 starts when its own heap grows, not theirs. 30 s into an
 *   idle run of the default plugins, 18 to 33 MB of them were dead, 25 to 32 MB of RSS. So when
 *   that memory grew by 8 MB since the last full collection, the trim starts with one: 10 to 20 ms
 *   for the runtime's heap, at most once a period.
 * - Then the C heap's free pages (native/src/heap_trim.cc). glibc returns only the top of its heap
 *   by itself, so memory freed below a live allocation stays in the RSS: start-up's transient
 *   allocations (libbpf's parse of the kernel's BTF, the feature probes) are about 10 MB of a
 *   runtime with no plugin, and a plugin stopped or reloaded frees its isolate's share the same
 *   way, and so do the first exports. A trim takes 0.1 to 1 ms (a 40 MB heap).
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { NativeAddon } from './bpf/native.ts'

const TRIM_PERIOD_MS = 10_000
/** Growth of memory outside V8's heap since the last full collection that makes a trim collect first. */
const COLLECT_AFTER_BYTES = 8 * 1024 * 1024

let collector: (() => void) | undefined

/**
 * V8's full collection, without --expose-gc for every context: the flag is on only while this
 * function's context is made, so plugin isolates get no gc() of their own. One context serves
 * every caller (the trim, the collection at exit).
 */
export function fullCollection(): () => void {
  if (collector !== undefined) return collector
  setFlagsFromString('--expose-gc')
  try {
    collector = runInNewContext('gc') as () => void
    return collector
  } finally {
    setFlagsFromString('--no-expose-gc')
  }
}

/** One trim: a full collection when memory outside V8's heap grew by COLLECT_AFTER_BYTES, then the C heap's (what the collection freed is given back by the next trim). */
export function heapTrimmer(native: Pick<NativeAddon, 'trimHeap'>): () => void {
  const collect = fullCollection()
  // the lowest seen since the last collection: V8's own collections lower it too, and a sweeper
  // thread frees what a collection found dead a little after it
  let floor = process.memoryUsage().external
  return () => {
    const external = process.memoryUsage().external
    floor = Math.min(floor, external)
    if (external - floor > COLLECT_AFTER_BYTES) {
      collect()
      floor = process.memoryUsage().external
    }
    native.trimHeap()
  }
}

export function startHeapTrimming(native: Pick<NativeAddon, 'trimHeap'>): { stop(): void } {
  const trim = heapTrimmer(native)
  trim()
  const timer = setInterval(trim, TRIM_PERIOD_MS)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}
