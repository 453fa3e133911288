/**
 * Gives the C heap's free pages back to the kernel (native/src/heap_trim.cc): once start-up is
 * over, then every 10 s. glibc returns only the top of its heap by itself, so memory freed below
 * a live allocation stays in the RSS: start-up's transient allocations (libbpf's parse of the
 * kernel's BTF, the feature probes) are about 10 MB of a runtime with no plugin, and a plugin
 * stopped or reloaded frees its isolate's share the same way, and so do the first exports. A trim
 * takes 0.1 to 1 ms (a 40 MB heap), 0.01% of a CPU at this period.
 */
import type { NativeAddon } from './bpf/native.ts'

const TRIM_PERIOD_MS = 10_000

export function startHeapTrimming(native: Pick<NativeAddon, 'trimHeap'>): { stop(): void } {
  native.trimHeap()
  const timer = setInterval(() => native.trimHeap(), TRIM_PERIOD_MS)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}
