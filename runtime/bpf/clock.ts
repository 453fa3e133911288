/**
 * Kernel records carry CLOCK_BOOTTIME (`bpf_ktime_get_boot_ns`), which counts from boot and
 * includes suspend; telemetry wants Unix-epoch time. The offset between the two clocks is
 * measured once, then every conversion is one addition.
 */
import { native } from './native.ts'

const CLOCK_REALTIME = 0
const CLOCK_BOOTTIME = 7
const SAMPLES = 64

let measured: number | undefined

/**
 * Unix-epoch ns minus boot-clock ns, measured the first time it is asked for. Each sample reads
 * the wall clock, the boot clock and the wall clock again; the sample whose two wall readings lie
 * closest together bounds the boot reading best, and its midpoint is taken. The result is a number
 * (exact to 256 ns at today's epoch values, finer than a probe's own skew), as span times are.
 * A wall-clock step after the measurement (NTP, an operator) is not followed.
 */
export function bootToWallOffsetNs(): number {
  measured ??= measureOffset()
  return measured
}

function measureOffset(): number {
  let bestGap = BigInt(Number.MAX_SAFE_INTEGER)
  let best = 0n
  for (let i = 0; i < SAMPLES; i++) {
    const before = native.clockGettime(CLOCK_REALTIME)
    const boot = native.clockGettime(CLOCK_BOOTTIME)
    const after = native.clockGettime(CLOCK_REALTIME)
    const gap = after - before
    if (gap >= 0n && gap < bestGap) {
      bestGap = gap
      best = before + gap / 2n - boot
    }
  }
  return Number(best)
}

/** The boot clock now, in ns (for tests and for records made in user space). */
export function bootTimeNs(): bigint {
  return native.clockGettime(CLOCK_BOOTTIME)
}
