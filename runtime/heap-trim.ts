/**
 * Gives the C heap's free pages back to the kernel (native/src/heap_trim.cc): once start-up is
 * over, then every minute. glibc returns only the top of its heap by itself, so memory freed below
 * a live allocation stays in the RSS: start-up's transient allocations (libbpf's parse of the
 * kernel's BTF, the feature probes) are about 10 MB of a runtime with no plugin, and a plugin
 * stopped or reloaded frees its isolate's share the same way. A trim of the default plugins' heap
 * takes under a millisecond.
 */
import type { NativeAddon } from './bpf/native.ts'

const TRIM_PERIOD_MS = 60_000

export function startHeapTrimming(native: Pick<NativeAddon, 'trimHeap'>, periodMs = TRIM_PERIOD_MS): { stop(): void } {
  native.trimHeap()
  const timer = setInterval(() => native.trimHeap(), periodMs)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}
