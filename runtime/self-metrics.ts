/**
 * The runtime's self-metrics: what each BPF object delivered and lost, what each of its programs
 * cost in the kernel, and what each plugin handled, dropped and cost. The exporter registers its
 * own (queues, the runtime's CPU and RSS); these come from the parts only the runtime owns, the bus
 * and the plugin manager. Every value is a running total or a level read at collection time, so
 * nothing is counted twice.
 *
 * Every metric is listed in README.md (Self-metrics).
 *
 * A program's run time is spent in the kernel on behalf of the traced processes, so it is not in
 * Periscope's own `process.cpu.time`: the two together are what Periscope costs. The kernel counts
 * it only while its BPF stats are on; the runtime turns them on for as long as it runs
 * (startProgramStats) and leaves the program metrics out when it cannot.
 */
import { readFileSync } from 'node:fs'
import type { Bus } from './bus.ts'
import type { Logger } from './plugins/log.ts'
import type { PluginStats } from './plugins/host.ts'
import type { PluginManager } from './plugins/manager.ts'
import type { SelfMetricPoint } from './telemetry/metrics.ts'

/** `reason` attribute values, in the exporter's snake_case (`periscope.exporter.dropped{reason}`). */
const dropReasons: Record<keyof PluginStats['droppedBy'], string> = {
  queueFull: 'queue_full',
  rateLimit: 'rate_limit',
  cpuLimit: 'cpu_limit',
  failure: 'failure',
  unsubscribed: 'unsubscribed',
  shutdown: 'shutdown',
}

export function objectSelfMetrics(bus: Bus): SelfMetricPoint[] {
  const points: SelfMetricPoint[] = []
  for (const { name, stats } of bus.listObjects()) {
    const attributes = { 'bpf.object': name }
    points.push(
      { name: 'periscope.bpf.events.received', kind: 'counter', value: stats.received, unit: '{event}', description: 'Records read from the object\'s ring and perf buffers', attributes },
      { name: 'periscope.bpf.events.dropped', kind: 'counter', value: stats.dropped, unit: '{event}', description: 'Records lost in the kernel: ring buffer reserve failures and perf buffer losses', attributes },
    )
    if (stats.listenerErrors !== undefined) {
      points.push({ name: 'periscope.bpf.listener.errors', kind: 'counter', value: stats.listenerErrors, unit: '{batch}', description: 'Batches of the object\'s streams on which a subscriber threw (the other subscribers still received them)', attributes })
    }
  }
  return points
}

export function pluginSelfMetrics(manager: PluginManager): SelfMetricPoint[] {
  const points: SelfMetricPoint[] = []
  for (const { name, stats } of manager.list()) {
    // a file whose first build failed has no plugin name yet, and has done no work
    if (name === undefined) continue
    const plugin = { plugin: name }
    points.push(
      { name: 'periscope.plugin.events.handled', kind: 'counter', value: stats.handled, unit: '{event}', description: 'Records the plugin\'s handlers ran on', attributes: plugin },
      ...Object.entries(dropReasons).map(([key, reason]): SelfMetricPoint => ({
        name: 'periscope.plugin.events.dropped',
        kind: 'counter',
        value: stats.droppedBy[key as keyof PluginStats['droppedBy']],
        unit: '{event}',
        description: 'Records the plugin did not handle, by reason',
        attributes: { ...plugin, reason },
      })),
      { name: 'periscope.plugin.cpu.time', kind: 'counter', value: stats.cpuTimeMs / 1000, unit: 's', description: 'CPU time of the plugin\'s isolates, across versions', attributes: plugin },
      { name: 'periscope.plugin.memory.usage', kind: 'updown', value: stats.heapBytes, unit: 'By', description: 'Heap of the plugin\'s current isolate', attributes: plugin },
    )
  }
  return points
}

export interface ProgramStats {
  /** Whether the kernel counts program runs now: turned on here, or by the kernel.bpf_stats_enabled sysctl. */
  readonly counting: boolean
  close(): void
}

/**
 * Turns the kernel's BPF run-time stats on until close() (the kernel turns them off when the last
 * holder lets go, or with this process), unless `wanted` is false (config
 * self_metrics.bpf_program_stats). Call it while still root: it needs CAP_SYS_ADMIN. When the
 * kernel refuses, says so once and what to do; the program metrics are then left out, unless the
 * sysctl has the stats on anyway.
 */
export async function startProgramStats(log: Logger, wanted = true): Promise<ProgramStats> {
  if (!wanted) return { counting: sysctlStatsOn(), close() {} }
  const { enableRunTimeStats } = await import('./bpf/stats.ts')
  try {
    const stats = enableRunTimeStats()
    return { counting: true, close: () => stats.close() }
  } catch (error) {
    const bySysctl = sysctlStatsOn()
    if (!bySysctl) log.warn(`${(error as Error).message}; periscope.bpf.program.run.count and run.time are not exported`)
    return { counting: bySysctl, close() {} }
  }
}

function sysctlStatsOn(): boolean {
  try {
    return readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() === '1'
  } catch {
    return false
  }
}

export function programSelfMetrics(bus: Bus, stats: ProgramStats): SelfMetricPoint[] {
  if (!stats.counting) return []
  const points: SelfMetricPoint[] = []
  for (const { object, program, runTimeNs, runCount } of bus.programStats()) {
    const attributes = { 'bpf.object': object, 'bpf.program': program }
    points.push(
      { name: 'periscope.bpf.program.run.count', kind: 'counter', value: runCount, unit: '{run}', description: 'Times the kernel ran the program while Periscope ran', attributes },
      { name: 'periscope.bpf.program.run.time', kind: 'counter', value: runTimeNs / 1e9, unit: 's', description: 'Time spent in the program while Periscope ran, in the processes that triggered it (not in Periscope\'s process.cpu.time)', attributes },
    )
  }
  return points
}
